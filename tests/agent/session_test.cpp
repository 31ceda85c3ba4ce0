// The I/O-free SPOP session state machine (spoa/protocol/session.hpp) the agent's connections
// drive, without sockets, with the agent tests' frame helpers. tests/protocol/session_test.cpp
// covers it on its own.

#include "spoa/protocol/session.hpp"
#include "agent_test_util.hpp"
#include "spoa/protocol/disconnect.hpp"
#include "spoa/protocol/kv_list.hpp"

namespace spoa::testing {
namespace {

using protocol::session;

class recording_host final : public protocol::session_host {
  public:
    struct notify {
        std::uint64_t stream_id;
        std::uint64_t frame_id;
        std::vector<std::uint8_t> payload;
    };
    void on_notify(std::uint64_t stream_id, std::uint64_t frame_id,
                   protocol::bytes_view payload) override {
        notifies.push_back({stream_id, frame_id, {payload.begin(), payload.end()}});
        if (pause_after_notify) pause = true;
    }
    [[nodiscard]] bool paused() const noexcept override { return pause; }

    std::vector<notify> notifies;
    bool pause = false;
    bool pause_after_notify = false;
};

/// Decodes every frame of `out` (and checks nothing is left over).
std::vector<received_frame> frames_of(const protocol::byte_buffer& out) {
    std::vector<received_frame> frames;
    protocol::bytes_view rest = out.view();
    while (!rest.empty()) {
        protocol::frame f;
        const auto r = protocol::decode_frame(rest, 0xFFFFFFFFu, f);
        REQUIRE(r.status == protocol::decode_status::ok);
        received_frame rf;
        rf.type = f.type;
        rf.flags = f.flags;
        rf.stream_id = f.stream_id;
        rf.frame_id = f.frame_id;
        rf.payload.assign(f.payload.begin(), f.payload.end());
        rf.raw.assign(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(r.size));
        frames.push_back(std::move(rf));
        rest = rest.subspan(r.size);
    }
    return frames;
}

struct fixture {
    protocol::session_settings settings;
    recording_host host;
    protocol::byte_buffer out;
    session s{settings, host, out};

    std::size_t feed(const std::vector<std::uint8_t>& bytes) { return s.feed(bytes); }
};

std::vector<std::uint8_t> hello_frame(const hello_options& h = {}) {
    return encode_frame(1, fin, 0, 0, hello_payload(h));
}

std::vector<std::uint8_t> concat(std::initializer_list<std::vector<std::uint8_t>> parts) {
    std::vector<std::uint8_t> all;
    for (const auto& p : parts)
        all.insert(all.end(), p.begin(), p.end());
    return all;
}

}  // namespace

TEST_CASE("session: a HELLO fed one byte at a time needs more until complete", "[session]") {
    fixture fx;
    hello_options h;
    h.max_frame_size = 2000;
    const auto hello = hello_frame(h);
    CHECK(fx.s.frame_limit() == 16380);
    for (std::size_t n = 1; n < hello.size(); ++n) {
        INFO("prefix of " << n << " bytes");
        const std::vector<std::uint8_t> prefix(hello.begin(),
                                               hello.begin() + static_cast<std::ptrdiff_t>(n));
        CHECK(fx.feed(prefix) == 0);
        CHECK(fx.s.needed() == (n < 4 ? 0 : hello.size()));
        CHECK(fx.out.empty());
        CHECK(fx.s.current() == session::state::wait_hello);
    }
    CHECK(fx.feed(hello) == hello.size());
    CHECK(fx.s.current() == session::state::running);
    CHECK(fx.s.frame_limit() == 2000);
    CHECK(fx.s.engine_id() == "8e6a5d2c-1f3b-4c7d-9a0e-2b4f6d8c0a1e");
    CHECK(fx.s.negotiated().pipelining);
    CHECK(fx.s.negotiated().fragmentation);
    const auto frames = frames_of(fx.out);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type == ft::agent_hello);
    CHECK(frames[0].kv_uint("max-frame-size") == 2000);
}

TEST_CASE("session: several frames in one input are all handled, in order", "[session]") {
    fixture fx;
    const auto p1 = notify_payload(one_arg("a", "1"));
    const auto p2 = notify_payload(one_arg("b", "2"));
    const auto input = concat({hello_frame(), encode_frame(3, fin, 1, 1, p1),
                               encode_frame(3, fin, 3, 1, p2), from_hex("00 00 00")});
    // The trailing partial length prefix is left for the next call.
    CHECK(fx.feed(input) == input.size() - 3);
    REQUIRE(fx.host.notifies.size() == 2);
    CHECK(fx.host.notifies[0].stream_id == 1);
    CHECK(fx.host.notifies[0].payload == p1);
    CHECK(fx.host.notifies[1].stream_id == 3);
    CHECK(fx.host.notifies[1].payload == p2);
}

TEST_CASE("session: a paused host stops the feed before the next frame", "[session]") {
    fixture fx;
    REQUIRE(fx.feed(hello_frame()) > 0);
    fx.host.pause_after_notify = true;
    const auto n1 = encode_frame(3, fin, 1, 1, {});
    const auto n2 = encode_frame(3, fin, 1, 2, {});
    const auto input = concat({n1, n2});
    CHECK(fx.feed(input) == n1.size());
    CHECK(fx.host.notifies.size() == 1);
    // Still paused: nothing consumed.
    CHECK(fx.feed(n2) == 0);
    fx.host.pause = false;
    fx.host.pause_after_notify = false;
    CHECK(fx.feed(n2) == n2.size());
    REQUIRE(fx.host.notifies.size() == 2);
    CHECK(fx.host.notifies[1].frame_id == 2);
}

TEST_CASE("session: a protocol error is sticky", "[session]") {
    fixture fx;
    REQUIRE(fx.feed(hello_frame()) > 0);
    fx.out.clear();
    const auto input =
        concat({from_hex("00 00 00 07 04 00 00 00 01 01 01"), encode_frame(3, fin, 1, 1, {})});
    // Everything is consumed (dropped) once closing.
    CHECK(fx.feed(input) == input.size());
    CHECK(fx.s.current() == session::state::closing);
    CHECK(fx.s.why_closing() == session::close_reason::protocol_error);
    CHECK(fx.s.last_error() == protocol::error::unknown_frame_type);
    CHECK(fx.s.sent_status() == protocol::status_code::invalid_frame);
    CHECK(fx.host.notifies.empty());
    auto frames = frames_of(fx.out);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].status() == 4);

    // Later input, a second fail() or disconnect(): nothing more is written.
    const auto more = encode_frame(3, fin, 1, 2, {});
    CHECK(fx.feed(more) == more.size());
    fx.s.fail(protocol::error::truncated);
    fx.s.disconnect(protocol::status_code::normal, "bye", session::close_reason::local);
    CHECK(frames_of(fx.out).size() == 1);
    CHECK(fx.s.last_error() == protocol::error::unknown_frame_type);
    CHECK(fx.host.notifies.empty());
}

TEST_CASE("session: refused handshake, peer disconnect, health check, local disconnect",
          "[session]") {
    SECTION("refused") {
        fixture fx;
        hello_options h;
        h.supported_versions = "1.0";
        CHECK(fx.feed(hello_frame(h)) > 0);
        CHECK(fx.s.current() == session::state::closing);
        CHECK(fx.s.why_closing() == session::close_reason::refused);
        CHECK(fx.s.last_error() == protocol::error::unsupported_version);
        CHECK(fx.s.sent_status() == protocol::status_code::unsupported_version);
        const auto frames = frames_of(fx.out);
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].status() == 8);
    }
    SECTION("peer disconnect (example V9)") {
        fixture fx;
        REQUIRE(fx.feed(hello_frame()) > 0);
        fx.out.clear();
        fx.feed(from_hex(
            "00 00 00 31 02 00 00 00 01 00 00 0b 73 74 61 74 75 73 2d 63 6f 64 65 03 02 07 6d 65 "
            "73 73 61 67 65 08 12 61 20 74 69 6d 65 6f 75 74 20 6f 63 63 75 72 72 65 64"));
        CHECK(fx.s.why_closing() == session::close_reason::peer_disconnect);
        CHECK(fx.s.peer_status() == 2);
        CHECK(fx.s.peer_message() == "a timeout occurred");
        const auto frames = frames_of(fx.out);
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].status() == 0);
        CHECK(frames[0].kv_string("message") == "normal");
    }
    SECTION("unparsable peer disconnect is still answered with 0") {
        fixture fx;
        REQUIRE(fx.feed(hello_frame()) > 0);
        fx.out.clear();
        fx.feed(encode_frame(2, fin, 0, 0, {}));
        CHECK(fx.s.why_closing() == session::close_reason::peer_disconnect);
        CHECK(fx.s.peer_status() == 99);
        CHECK(frames_of(fx.out).at(0).status() == 0);
    }
    SECTION("health check") {
        fixture fx;
        CHECK(fx.feed(hello_frame(hello_options::healthcheck_hello())) > 0);
        CHECK(fx.s.current() == session::state::closing);
        CHECK(fx.s.why_closing() == session::close_reason::healthcheck);
        const auto frames = frames_of(fx.out);
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type == ft::agent_hello);
        CHECK(frames[0].kv_string("capabilities") == "fragmentation");
    }
    SECTION("local disconnect") {
        fixture fx;
        REQUIRE(fx.feed(hello_frame()) > 0);
        fx.out.clear();
        fx.s.disconnect(protocol::status_code::timeout, "idle", session::close_reason::local);
        fx.s.disconnect(protocol::status_code::normal, "again", session::close_reason::local);
        CHECK(fx.s.why_closing() == session::close_reason::local);
        CHECK(fx.s.sent_status() == protocol::status_code::timeout);
        const auto frames = frames_of(fx.out);
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].status() == 2);
        CHECK(frames[0].kv_string("message") == "idle");
    }
}

TEST_CASE("session: fragments are reassembled into one on_notify, aborts are counted",
          "[session]") {
    fixture fx;
    REQUIRE(fx.feed(hello_frame()) > 0);
    const auto payload = notify_payload(one_arg("msg", std::string(100, 'q')));
    const auto input = concat({
        encode_frame(3, 0, 7, 9, std::span(payload).first(10)),
        encode_frame(0, 0, 7, 9, std::span(payload).subspan(10, 50)),
        encode_frame(0, fin, 7, 9, std::span(payload).subspan(60)),
        encode_frame(3, 0, 7, 10, std::span(payload).first(10)),
        encode_frame(0, fin | abort, 7, 10, {}),
    });
    CHECK(fx.feed(input) == input.size());
    REQUIRE(fx.host.notifies.size() == 1);
    CHECK(fx.host.notifies[0].stream_id == 7);
    CHECK(fx.host.notifies[0].frame_id == 9);
    CHECK(fx.host.notifies[0].payload == payload);
    CHECK(fx.s.aborted_fragments() == 1);
    CHECK(fx.s.current() == session::state::running);
}

TEST_CASE("session: the frame limit is ours before HELLO and the negotiated one after",
          "[session]") {
    fixture fx;
    fx.settings.capabilities.max_frame_size = 1024;
    CHECK(fx.s.frame_limit() == 1024);
    // 1025 before HELLO: too big.
    CHECK(fx.feed(from_hex("00 00 04 01")) == 4);
    CHECK(fx.s.sent_status() == protocol::status_code::frame_too_big);

    fixture fy;
    fy.settings.capabilities.max_frame_size = 1024;
    hello_options h;
    h.max_frame_size = 300;
    REQUIRE(fy.feed(hello_frame(h)) > 0);
    CHECK(fy.s.frame_limit() == 300);
    CHECK(fy.feed(from_hex("00 00 01 2d")) == 4);  // 301
    CHECK(fy.s.sent_status() == protocol::status_code::frame_too_big);
}

}  // namespace spoa::testing
