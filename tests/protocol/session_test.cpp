// The sans-I/O session (spoa/protocol/session.hpp) on bytes in memory: handshake decisions
// (protocol/README.md §6), NOTIFYs handed to the host, fragment reassembly (§9), DISCONNECT (§7),
// every malformed input's AGENT-DISCONNECT status (§7.2) and the frame limit (§2). No sockets:
// bytes in, the frames the session wrote and its decisions out.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "malformed_cases.hpp"
#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/disconnect.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/hello.hpp"
#include "spoa/protocol/kv_list.hpp"
#include "spoa/protocol/session.hpp"
#include "test_support.hpp"

using namespace spoa::protocol;
using spoa::test::bytes;
using spoa::test::concat;
using spoa::test::decode_one;
using spoa::test::from_hex;
using spoa::test::make_frame;
using spoa::test::to_hex;
using spoa::test::view;

namespace {

constexpr std::string_view engine = "8e6a5d2c-1f3b-4c7d-9a0e-2b4f6d8c0a1e";

class recording_host final : public session_host {
  public:
    struct delivered {
        std::uint64_t stream_id;
        std::uint64_t frame_id;
        bytes payload;
    };

    void on_notify(std::uint64_t stream_id, std::uint64_t frame_id, bytes_view payload) override {
        notifies.push_back({stream_id, frame_id, bytes(payload.begin(), payload.end())});
        if (pause_after_notify) pause = true;
    }
    [[nodiscard]] bool paused() const noexcept override { return pause; }
    [[nodiscard]] bool refuse_healthcheck() const noexcept override {
        ++refuse_asked;
        return refuse;
    }

    std::vector<delivered> notifies;
    bool pause = false;
    bool pause_after_notify = false;
    bool refuse = false;
    mutable int refuse_asked = 0;
};

struct fixture {
    session_settings settings;
    recording_host host;
    byte_buffer out;
    session s{settings, host, out};

    std::size_t feed(const bytes& input) { return s.feed(view(input)); }
    [[nodiscard]] bytes written() const { return bytes(out.data(), out.data() + out.size()); }
};

struct hello_fields {
    std::string versions = "2.0";
    std::uint32_t max_frame_size = haproxy_default_max_frame_size;
    std::string capabilities = "pipelining";
    std::string engine_id = std::string(engine);
    bool healthcheck = false;
};

bytes hello_frame(const hello_fields& h = {}) {
    byte_buffer payload;
    encode_kv(payload, "supported-versions", typed_value::string(h.versions));
    encode_kv(payload, "max-frame-size", typed_value::uint32(h.max_frame_size));
    encode_kv(payload, "capabilities", typed_value::string(h.capabilities));
    if (h.healthcheck) encode_kv(payload, "healthcheck", typed_value::boolean(true));
    if (!h.engine_id.empty()) encode_kv(payload, "engine-id", typed_value::string(h.engine_id));
    return make_frame(frame_type::haproxy_hello, frame_flags::fin, 0, 0, payload.view());
}

bytes notify_frame(std::uint64_t sid, std::uint64_t fid, const bytes& payload,
                   std::uint32_t flags = frame_flags::fin) {
    return make_frame(frame_type::notify, flags, sid, fid, view(payload));
}

bytes unset_frame(std::uint64_t sid, std::uint64_t fid, const bytes& payload,
                  std::uint32_t flags = 0) {
    return make_frame(frame_type::unset, flags, sid, fid, view(payload));
}

/// The exact AGENT-DISCONNECT the session must write.
bytes agent_disconnect(status_code status, std::string_view message) {
    byte_buffer out;
    encode_disconnect(out, frame_type::agent_disconnect, status, message);
    return bytes(out.data(), out.data() + out.size());
}

/// The frames of `b`, which must hold whole frames only.
std::vector<frame> frames_of(const bytes& b) {
    std::vector<frame> frames;
    bytes_view rest = view(b);
    while (!rest.empty()) {
        frame f;
        const auto r = decode_frame(rest, 0xFFFFFFFFu, f);
        REQUIRE(r.status == decode_status::ok);
        frames.push_back(f);
        rest = rest.subspan(r.size);
    }
    return frames;
}

/// The value of `key` in a KV-list payload (null if absent).
typed_value kv(bytes_view payload, std::string_view key) {
    kv_reader reader(payload);
    while (!reader.done()) {
        std::string_view k;
        typed_value v;
        REQUIRE(reader.next(k, v) == error::none);
        if (k == key) return v;
    }
    return {};
}

bytes payload_of(const char* hex) {
    const bytes whole = from_hex(hex);
    const frame f = decode_one(view(whole));
    return bytes(f.payload.begin(), f.payload.end());
}

bytes text(std::size_t n, char c) {
    return bytes(n, static_cast<std::uint8_t>(c));
}

}  // namespace

// ---- handshake ----------------------------------------------------------------------------

TEST_CASE("session: HELLO V3 is answered with exactly V4 and the session runs", "[session]") {
    fixture fx;
    fx.settings.capabilities.fragmentation = false;
    const bytes v3 = from_hex(spoa::test::v3_hex);
    CHECK(fx.s.current() == session::state::wait_hello);
    CHECK(fx.feed(v3) == v3.size());
    CHECK(to_hex(fx.written()) == to_hex(from_hex(spoa::test::v4_hex)));
    CHECK(fx.s.current() == session::state::running);
    CHECK(fx.s.why_closing() == session::close_reason::none);
    CHECK(fx.s.last_error() == error::none);
    CHECK(fx.s.engine_id() == engine);
    CHECK(fx.s.negotiated().accepted());
    CHECK(fx.s.negotiated().max_frame_size == 16380);
    CHECK(fx.s.negotiated().pipelining);
    CHECK(!fx.s.negotiated().fragmentation);
    CHECK(fx.s.frame_limit() == 16380);
    CHECK(fx.host.notifies.empty());
    CHECK(fx.host.refuse_asked == 0);  // asked for health checks only
}

TEST_CASE("session: AGENT-HELLO carries the negotiated max-frame-size and capabilities",
          "[session]") {
    struct row {
        const char* name;
        std::uint32_t ours_size;
        bool ours_pipelining, ours_async, ours_fragmentation;
        std::uint32_t theirs_size;
        const char* theirs_caps;
        std::uint32_t size;
        const char* caps;
    };
    const row rows[] = {
        {"defaults against 2.6's offer", 16380, true, false, true, 16380, "pipelining,async", 16380,
         "pipelining,fragmentation"},
        {"their size is smaller", 16380, true, false, true, 2000, "pipelining", 2000,
         "pipelining,fragmentation"},
        {"our size is smaller", 1024, true, false, true, 16380, "pipelining", 1024,
         "pipelining,fragmentation"},
        {"the 256 minimum", 16380, true, false, true, 256, "pipelining", 256,
         "pipelining,fragmentation"},
        {"async when both want it", 16380, true, true, true, 16380, "pipelining, async", 16380,
         "pipelining,async,fragmentation"},
        {"no pipelining on our side", 16380, false, false, true, 16380, "pipelining", 16380,
         "fragmentation"},
        {"no pipelining offered", 16380, true, false, false, 16380, "async", 16380, ""},
        {"fragmentation is ours alone", 16380, false, false, true, 16380, "", 16380,
         "fragmentation"},
    };
    for (const auto& r : rows) {
        INFO(r.name);
        fixture fx;
        fx.settings.capabilities.max_frame_size = r.ours_size;
        fx.settings.capabilities.pipelining = r.ours_pipelining;
        fx.settings.capabilities.async = r.ours_async;
        fx.settings.capabilities.fragmentation = r.ours_fragmentation;
        hello_fields h;
        h.max_frame_size = r.theirs_size;
        h.capabilities = r.theirs_caps;
        const bytes hello = hello_frame(h);
        CHECK(fx.feed(hello) == hello.size());
        CHECK(fx.s.current() == session::state::running);
        CHECK(fx.s.frame_limit() == r.size);
        const bytes out = fx.written();
        const auto frames = frames_of(out);
        REQUIRE(frames.size() == 1);
        CHECK(frames[0].type == frame_type::agent_hello);
        CHECK(frames[0].flags == frame_flags::fin);
        CHECK(frames[0].stream_id == 0);
        CHECK(frames[0].frame_id == 0);
        CHECK(kv(frames[0].payload, "version").as_string() == "2.0");
        CHECK(kv(frames[0].payload, "max-frame-size").as_uint64() == r.size);
        CHECK(kv(frames[0].payload, "capabilities").as_string() == r.caps);
    }
}

TEST_CASE("session: a health-check HELLO gets AGENT-HELLO, then the session closes", "[session]") {
    fixture fx;
    const bytes v1 = from_hex(spoa::test::v1_hex);
    CHECK(fx.feed(v1) == v1.size());
    CHECK(fx.s.current() == session::state::closing);
    CHECK(fx.s.why_closing() == session::close_reason::healthcheck);
    CHECK(fx.s.last_error() == error::none);
    CHECK(fx.s.negotiated().healthcheck);
    CHECK(fx.host.refuse_asked == 1);
    const bytes out = fx.written();
    const auto frames = frames_of(out);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0].type == frame_type::agent_hello);
    CHECK(kv(frames[0].payload, "max-frame-size").as_uint64() == 16380);
    CHECK(kv(frames[0].payload, "capabilities").as_string() == "fragmentation");

    // Whatever follows is swallowed: no DISCONNECT exchange after a health check (§6.3).
    const bytes more = concat({hello_frame(), from_hex(spoa::test::v8_hex)});
    CHECK(fx.feed(more) == more.size());
    CHECK(fx.written() == out);
}

TEST_CASE("session: a host that refuses health checks gets AGENT-DISCONNECT instead", "[session]") {
    SECTION("the health check is refused with status 0") {
        fixture fx;
        fx.host.refuse = true;
        const bytes v1 = from_hex(spoa::test::v1_hex);
        CHECK(fx.feed(v1) == v1.size());
        CHECK(fx.s.current() == session::state::closing);
        CHECK(fx.s.why_closing() == session::close_reason::local);
        CHECK(fx.s.sent_status() == status_code::normal);
        CHECK(to_hex(fx.written()) ==
              to_hex(agent_disconnect(status_code::normal, "agent is draining")));
    }
    SECTION("ordinary HELLOs are still accepted") {
        fixture fx;
        fx.host.refuse = true;
        CHECK(fx.feed(hello_frame()) > 0);
        CHECK(fx.s.current() == session::state::running);
        CHECK(fx.host.refuse_asked == 0);
    }
    SECTION("a refused version is decided first") {
        fixture fx;
        fx.host.refuse = true;
        hello_fields h;
        h.versions = "1.0";
        h.healthcheck = true;
        CHECK(fx.feed(hello_frame(h)) > 0);
        CHECK(fx.s.why_closing() == session::close_reason::refused);
        CHECK(fx.host.refuse_asked == 0);
    }
}

TEST_CASE("session: refused versions and frame sizes: their status, the error's description",
          "[session]") {
    struct row {
        const char* versions;
        std::uint32_t size;
        error refusal;  ///< none: accepted
    };
    const row rows[] = {
        {"2.0", 16380, error::none},
        {"2.5", 16380, error::none},
        {"1.0, 2.0", 16380, error::none},
        {" 2.0 ", 16380, error::none},
        {"1.0", 16380, error::unsupported_version},
        {"3.0", 16380, error::unsupported_version},
        {"2", 16380, error::unsupported_version},
        {"", 16380, error::unsupported_version},
        {"2.0", 255, error::bad_max_frame_size},
        {"2.0", 0, error::bad_max_frame_size},
        {"1.0", 255, error::unsupported_version},  // the version is checked first
    };
    for (const auto& r : rows) {
        INFO("supported-versions '" << r.versions << "', max-frame-size " << r.size);
        fixture fx;
        hello_fields h;
        h.versions = r.versions;
        h.max_frame_size = r.size;
        const bytes hello = hello_frame(h);
        CHECK(fx.feed(hello) == hello.size());
        if (r.refusal == error::none) {
            CHECK(fx.s.current() == session::state::running);
            CHECK(frames_of(fx.written()).at(0).type == frame_type::agent_hello);
            continue;
        }
        CHECK(fx.s.current() == session::state::closing);
        CHECK(fx.s.why_closing() == session::close_reason::refused);
        CHECK(fx.s.last_error() == r.refusal);
        CHECK(fx.s.sent_status() == to_status(r.refusal));
        CHECK(to_hex(fx.written()) ==
              to_hex(agent_disconnect(to_status(r.refusal), to_string(r.refusal))));
    }

    // Example V10's status, with the error's own description as the message.
    fixture fx;
    hello_fields h;
    h.versions = "1.0";
    CHECK(fx.feed(hello_frame(h)) > 0);
    const bytes written = fx.written();
    const bytes v10 = from_hex(spoa::test::v10_hex);
    disconnect_info ours;
    disconnect_info example;
    REQUIRE(parse_disconnect(decode_one(view(written)).payload, ours) == error::none);
    REQUIRE(parse_disconnect(decode_one(view(v10)).payload, example) == error::none);
    CHECK(decode_one(view(written)).type == frame_type::agent_disconnect);
    CHECK(ours.status == example.status);
    CHECK(ours.message == to_string(error::unsupported_version));
}

// ---- NOTIFY ---------------------------------------------------------------------------------

TEST_CASE("session: NOTIFY frames reach the host with their ids and payload, in order",
          "[session]") {
    fixture fx;
    const bytes v5 = from_hex(spoa::test::v5_hex);
    const bytes big_ids = notify_frame(1ull << 40, 0xFFFFFFFFFFFFFFFFull, {});
    const bytes second = notify_frame(5, 2, text(30, 'n'));
    const bytes hello = hello_frame();
    // HELLO, three NOTIFYs and the first 9 bytes of a fourth, all in one read.
    const bytes input =
        concat({hello, v5, big_ids, second, bytes(second.begin(), second.begin() + 9)});
    CHECK(fx.feed(input) == input.size() - 9);
    CHECK(fx.s.needed() == second.size());  // the partial frame's length is known
    REQUIRE(fx.host.notifies.size() == 3);
    CHECK(fx.host.notifies[0].stream_id == 3);
    CHECK(fx.host.notifies[0].frame_id == 1);
    CHECK(fx.host.notifies[0].payload == payload_of(spoa::test::v5_hex));
    CHECK(fx.host.notifies[1].stream_id == 1ull << 40);
    CHECK(fx.host.notifies[1].frame_id == 0xFFFFFFFFFFFFFFFFull);
    CHECK(fx.host.notifies[1].payload.empty());
    CHECK(fx.host.notifies[2].payload == text(30, 'n'));
    // The session writes no ACK itself: only its AGENT-HELLO.
    CHECK(frames_of(fx.written()).size() == 1);
    CHECK(fx.s.current() == session::state::running);

    // The caller keeps the tail and feeds it again with the rest.
    CHECK(fx.feed(second) == second.size());
    CHECK(fx.s.needed() == 0);
    CHECK(fx.host.notifies.size() == 4);
}

TEST_CASE("session: a paused host stops the feed before the next frame", "[session]") {
    fixture fx;
    REQUIRE(fx.feed(hello_frame()) > 0);
    fx.host.pause_after_notify = true;
    const bytes n1 = notify_frame(1, 1, {});
    const bytes n2 = notify_frame(1, 2, {});
    CHECK(fx.feed(concat({n1, n2})) == n1.size());
    CHECK(fx.host.notifies.size() == 1);
    CHECK(fx.feed(n2) == 0);
    fx.host.pause = false;
    fx.host.pause_after_notify = false;
    CHECK(fx.feed(n2) == n2.size());
    REQUIRE(fx.host.notifies.size() == 2);
    CHECK(fx.host.notifies[1].frame_id == 2);
}

// ---- fragmentation --------------------------------------------------------------------------

TEST_CASE("session: fragmented NOTIFYs are reassembled into one delivery", "[session]") {
    fixture fx;
    REQUIRE(fx.feed(hello_frame()) > 0);
    const bytes payload = payload_of(spoa::test::v5_hex);
    const auto part = [&](std::size_t from, std::size_t n) {
        return bytes(payload.begin() + static_cast<std::ptrdiff_t>(from),
                     payload.begin() + static_cast<std::ptrdiff_t>(from + n));
    };
    const std::size_t size = payload.size();

    SECTION("NOTIFY without FIN, UNSET, UNSET with FIN") {
        const bytes input =
            concat({notify_frame(7, 9, part(0, 10), 0), unset_frame(7, 9, part(10, 50)),
                    unset_frame(7, 9, part(60, size - 60), frame_flags::fin)});
        CHECK(fx.feed(input) == input.size());
        REQUIRE(fx.host.notifies.size() == 1);
        CHECK(fx.host.notifies[0].stream_id == 7);
        CHECK(fx.host.notifies[0].frame_id == 9);
        CHECK(fx.host.notifies[0].payload == payload);
        CHECK(fx.s.unset_frames() == 2);
        CHECK(fx.s.aborted_fragments() == 0);
        CHECK(fx.s.current() == session::state::running);
    }
    SECTION("an aborted fragment is dropped and counted; the next one is delivered") {
        const bytes input = concat({notify_frame(7, 10, part(0, 10), 0),
                                    unset_frame(7, 10, {}, frame_flags::fin | frame_flags::abort),
                                    notify_frame(7, 11, part(0, 10), 0),
                                    unset_frame(7, 11, part(10, size - 10), frame_flags::fin),
                                    notify_frame(8, 1, part(0, 3))});
        CHECK(fx.feed(input) == input.size());
        REQUIRE(fx.host.notifies.size() == 2);
        CHECK(fx.host.notifies[0].frame_id == 11);
        CHECK(fx.host.notifies[0].payload == payload);
        CHECK(fx.host.notifies[1].stream_id == 8);
        CHECK(fx.s.aborted_fragments() == 1);
        CHECK(fx.s.unset_frames() == 2);
    }
    SECTION("a HAPROXY-DISCONNECT may come in the middle of a fragmented NOTIFY") {
        const bytes input =
            concat({notify_frame(7, 9, part(0, 10), 0), from_hex(spoa::test::v9_hex)});
        CHECK(fx.feed(input) == input.size());
        CHECK(fx.s.why_closing() == session::close_reason::peer_disconnect);
        CHECK(fx.host.notifies.empty());
    }
}

// ---- DISCONNECT -----------------------------------------------------------------------------

TEST_CASE("session: HAPROXY-DISCONNECT is answered with AGENT-DISCONNECT status 0", "[session]") {
    const bytes answer = agent_disconnect(status_code::normal, "normal");
    SECTION("after HELLO (example V9)") {
        fixture fx;
        REQUIRE(fx.feed(hello_frame()) > 0);
        fx.out.clear();
        const bytes input = concat({from_hex(spoa::test::v9_hex), notify_frame(1, 1, {})});
        CHECK(fx.feed(input) == input.size());
        CHECK(fx.s.current() == session::state::closing);
        CHECK(fx.s.why_closing() == session::close_reason::peer_disconnect);
        CHECK(fx.s.peer_status() == 2);
        CHECK(fx.s.peer_message() == "a timeout occurred");
        CHECK(fx.s.sent_status() == status_code::normal);
        CHECK(to_hex(fx.written()) == to_hex(answer));
        CHECK(fx.host.notifies.empty());  // the NOTIFY after it is dropped
    }
    SECTION("before HELLO (example V8)") {
        fixture fx;
        const bytes v8 = from_hex(spoa::test::v8_hex);
        CHECK(fx.feed(v8) == v8.size());
        CHECK(fx.s.why_closing() == session::close_reason::peer_disconnect);
        CHECK(fx.s.peer_status() == 0);
        CHECK(fx.s.peer_message() == "normal");
        CHECK(to_hex(fx.written()) == to_hex(answer));
    }
    SECTION("an unparsable one is answered all the same") {
        fixture fx;
        REQUIRE(fx.feed(hello_frame()) > 0);
        fx.out.clear();
        CHECK(fx.feed(make_frame(frame_type::haproxy_disconnect, frame_flags::fin, 0, 0)) > 0);
        CHECK(fx.s.why_closing() == session::close_reason::peer_disconnect);
        CHECK(fx.s.peer_status() == 99);
        CHECK(fx.s.peer_message() == "unparsable HAPROXY-DISCONNECT");
        CHECK(to_hex(fx.written()) == to_hex(answer));
    }
}

TEST_CASE("session: disconnect() and fail() write one AGENT-DISCONNECT, then closing is sticky",
          "[session]") {
    fixture fx;
    REQUIRE(fx.feed(hello_frame()) > 0);
    fx.out.clear();
    fx.s.disconnect(status_code::timeout, "idle timeout", session::close_reason::local);
    CHECK(fx.s.current() == session::state::closing);
    CHECK(fx.s.why_closing() == session::close_reason::local);
    CHECK(fx.s.sent_status() == status_code::timeout);
    const bytes once = agent_disconnect(status_code::timeout, "idle timeout");
    CHECK(to_hex(fx.written()) == to_hex(once));

    // A second disconnect(), fail() or any input: nothing more.
    fx.s.disconnect(status_code::normal, "again", session::close_reason::local);
    fx.s.fail(error::truncated);
    const bytes input = concat({notify_frame(1, 1, {}), from_hex("ff ff ff ff")});
    CHECK(fx.feed(input) == input.size());
    CHECK(to_hex(fx.written()) == to_hex(once));
    CHECK(fx.s.last_error() == error::none);
    CHECK(fx.host.notifies.empty());

    fixture fy;
    fy.s.fail(error::interlaced_fragments);
    CHECK(fy.s.why_closing() == session::close_reason::protocol_error);
    CHECK(fy.s.last_error() == error::interlaced_fragments);
    CHECK(to_hex(fy.written()) == to_hex(agent_disconnect(status_code::interlaced_frames,
                                                          to_string(error::interlaced_fragments))));
}

// ---- malformed input ------------------------------------------------------------------------

TEST_CASE("session: each malformed input gives its error, status and AGENT-DISCONNECT",
          "[session][malformed]") {
    using spoa::test::with_len;
    const bytes v4 = from_hex(spoa::test::v4_hex);
    const bytes v7 = from_hex(spoa::test::v7_hex);
    const bytes v10 = from_hex(spoa::test::v10_hex);
    const bytes start = notify_frame(1, 1, text(10, 'a'), 0);  // opens a fragmented NOTIFY
    const bytes hello_nofin =
        with_len("01 00 00 00 00 00 00 " + spoa::test::kv_versions + spoa::test::kv_mfs);
    struct row {
        const char* name;
        bool after_hello;
        bytes input;
        error expected;
        std::size_t delivered = 0;  ///< NOTIFYs handed to the host before the error
        bool fragmentation = true;  ///< ours
        std::size_t reassembly_cap = 1024 * 1024;
    };
    const row rows[] = {
        // The wrong frame for the state.
        {"NOTIFY before HELLO", false, notify_frame(1, 1, {}), error::unexpected_frame},
        {"UNSET before HELLO", false, unset_frame(1, 1, {}, frame_flags::fin),
         error::unexpected_frame},
        {"ACK before HELLO", false, v7, error::unexpected_frame},
        {"AGENT-HELLO from HAProxy", false, v4, error::unexpected_frame},
        {"AGENT-DISCONNECT from HAProxy", false, v10, error::unexpected_frame},
        {"HELLO without FIN", false, hello_nofin, error::fragmentation_not_supported},
        {"a second HELLO", true, hello_frame(), error::unexpected_frame},
        {"ACK after HELLO", true, v7, error::unexpected_frame},
        {"AGENT-HELLO after HELLO", true, v4, error::unexpected_frame},
        {"AGENT-DISCONNECT after HELLO", true, v10, error::unexpected_frame},
        {"NOTIFY then ACK", true, concat({notify_frame(1, 1, {}), v7}), error::unexpected_frame, 1},
        // HELLO payloads (the handshake's own refusals are in the test above).
        {"HELLO without supported-versions", false,
         with_len(spoa::test::hello_hdr + spoa::test::kv_mfs + spoa::test::kv_caps),
         error::missing_version},
        {"HELLO without max-frame-size", false,
         with_len(spoa::test::hello_hdr + spoa::test::kv_versions + spoa::test::kv_caps),
         error::missing_max_frame_size},
        {"HELLO without capabilities", false,
         with_len(spoa::test::hello_hdr + spoa::test::kv_versions + spoa::test::kv_mfs),
         error::missing_capabilities},
        {"HELLO max-frame-size as a string", false,
         with_len(spoa::test::hello_hdr + spoa::test::kv_versions + "0e " +
                  spoa::test::hex_of("max-frame-size") + "08 01 31 " + spoa::test::kv_caps),
         error::bad_max_frame_size},
        {"HELLO empty key", false, with_len(spoa::test::hello_hdr + "00 08 00"), error::empty_key},
        {"HELLO value of a reserved type", false, with_len(spoa::test::hello_hdr + "01 6b 0a"),
         error::reserved_data_type},
        {"HELLO key past the end", false, with_len(spoa::test::hello_hdr + "09 6b 6b"),
         error::truncated},
        // Fragments (§9).
        {"NOTIFY without FIN, fragmentation not ours", true, start,
         error::fragmentation_not_supported, 0, false},
        {"UNSET, fragmentation not ours", true, unset_frame(1, 1, {}, frame_flags::fin),
         error::fragmentation_not_supported, 0, false},
        {"UNSET without a started NOTIFY", true, unset_frame(1, 1, text(1, 'a'), frame_flags::fin),
         error::fragment_without_start},
        {"UNSET after the NOTIFY it continued ended", true,
         concat({start, unset_frame(1, 1, {}, frame_flags::fin),
                 unset_frame(1, 1, {}, frame_flags::fin)}),
         error::fragment_without_start, 1},
        {"UNSET of another stream", true, concat({start, unset_frame(2, 1, text(1, 'a'))}),
         error::interlaced_fragments},
        {"UNSET of another frame-id", true, concat({start, unset_frame(1, 2, text(1, 'a'))}),
         error::interlaced_fragments},
        {"NOTIFY while a fragmented NOTIFY is open", true,
         concat({start, notify_frame(3, 1, text(1, 'a'))}), error::interlaced_fragments},
        {"a second HELLO while a fragmented NOTIFY is open", true, concat({start, hello_frame()}),
         error::interlaced_fragments},
        {"reassembly over the cap", true,
         concat({start, unset_frame(1, 1, text(50, 'a')), unset_frame(1, 1, text(10, 'a'))}),
         error::reassembly_too_big, 0, true, 64},
    };
    for (const auto& r : rows) {
        INFO(r.name << ": " << to_hex(r.input));
        fixture fx;
        fx.settings.capabilities.fragmentation = r.fragmentation;
        fx.settings.max_reassembled_size = r.reassembly_cap;
        if (r.after_hello) {
            REQUIRE(fx.feed(hello_frame()) > 0);
            REQUIRE(fx.s.current() == session::state::running);
            fx.out.clear();
        }
        // The whole input is consumed: what follows the error is dropped.
        CHECK(fx.feed(r.input) == r.input.size());
        CHECK(fx.host.notifies.size() == r.delivered);
        CHECK(fx.s.current() == session::state::closing);
        CHECK(fx.s.why_closing() == session::close_reason::protocol_error);
        CHECK(fx.s.last_error() == r.expected);
        CHECK(fx.s.sent_status() == to_status(r.expected));
        CHECK(to_hex(fx.written()) ==
              to_hex(agent_disconnect(to_status(r.expected), to_string(r.expected))));
    }
}

TEST_CASE("session: every frame-header row of the codec's malformed table, before and after HELLO",
          "[session][malformed]") {
    std::size_t rows = 0;
    for (const auto& c : spoa::test::malformed_cases()) {
        if (!c.header_error) continue;
        ++rows;
        for (const bool after_hello : {false, true}) {
            INFO(c.name << (after_hello ? " (after HELLO)" : " (before HELLO)"));
            fixture fx;
            // The row's limit applies in both states: ours before HELLO, negotiated after.
            fx.settings.capabilities.max_frame_size = c.max_frame_size;
            if (after_hello) {
                hello_fields h;
                h.engine_id.clear();  // keeps the HELLO within a 256-byte limit
                REQUIRE(fx.feed(hello_frame(h)) > 0);
                REQUIRE(fx.s.frame_limit() == c.max_frame_size);
                fx.out.clear();
            }
            CHECK(fx.feed(c.input) == c.input.size());
            CHECK(fx.s.why_closing() == session::close_reason::protocol_error);
            CHECK(fx.s.last_error() == c.expected);
            CHECK(fx.s.sent_status() == c.status);
            CHECK(to_hex(fx.written()) ==
                  to_hex(agent_disconnect(c.status, to_string(c.expected))));
        }
    }
    CHECK(rows >= 15);
}

TEST_CASE("session: every HELLO row of the codec's malformed table", "[session][malformed]") {
    std::size_t rows = 0;
    for (const auto& c : spoa::test::malformed_cases()) {
        // Rows whose only frame is a HAPROXY-HELLO with a bad payload.
        if (c.header_error || c.frames_before != 0 || c.input.size() < 5 || c.input[4] != 0x01)
            continue;
        ++rows;
        INFO(c.name);
        fixture fx;
        CHECK(fx.feed(c.input) == c.input.size());
        CHECK(fx.s.current() == session::state::closing);
        CHECK(fx.s.last_error() == c.expected);
        CHECK(fx.s.sent_status() == c.status);
        CHECK(to_hex(fx.written()) == to_hex(agent_disconnect(c.status, to_string(c.expected))));
    }
    CHECK(rows >= 10);
}

// ---- frame limit ----------------------------------------------------------------------------

TEST_CASE("session: the frame limit is ours before HELLO and the negotiated one after",
          "[session]") {
    SECTION("before HELLO: our limit") {
        fixture fx;
        fx.settings.capabilities.max_frame_size = 1024;
        CHECK(fx.s.frame_limit() == 1024);
        CHECK(fx.feed(from_hex("00 00 04 00")) == 0);  // LEN 1024: wait for it
        CHECK(fx.s.needed() == 1028);
        CHECK(fx.out.empty());
        CHECK(fx.feed(from_hex("00 00 04 01")) == 4);  // LEN 1025: refused before buffering
        CHECK(fx.s.last_error() == error::frame_too_big);
        CHECK(to_hex(fx.written()) == to_hex(agent_disconnect(status_code::frame_too_big,
                                                              to_string(error::frame_too_big))));
    }
    SECTION("a HELLO larger than our limit") {
        fixture fx;
        fx.settings.capabilities.max_frame_size = 256;
        hello_fields h;
        h.engine_id = std::string(300, 'e');
        const bytes hello = hello_frame(h);
        CHECK(fx.feed(hello) == hello.size());
        CHECK(fx.s.last_error() == error::frame_too_big);
        CHECK(fx.s.sent_status() == status_code::frame_too_big);
    }
    SECTION("after HELLO: the smaller of the two") {
        fixture fx;
        fx.settings.capabilities.max_frame_size = 1024;
        hello_fields h;
        h.max_frame_size = 300;
        REQUIRE(fx.feed(hello_frame(h)) > 0);
        CHECK(fx.s.frame_limit() == 300);
        // A NOTIFY of exactly 300 bytes after the prefix is delivered.
        const bytes exact = notify_frame(1, 1, text(300 - 7, 'x'));
        REQUIRE(exact.size() == 304);
        CHECK(fx.feed(exact) == exact.size());
        CHECK(fx.host.notifies.size() == 1);
        CHECK(fx.feed(from_hex("00 00 01 2c")) == 0);  // LEN 300: wait for it
        CHECK(fx.s.needed() == 304);
        fx.out.clear();
        CHECK(fx.feed(from_hex("00 00 01 2d")) == 4);  // LEN 301
        CHECK(fx.s.last_error() == error::frame_too_big);
        CHECK(to_hex(fx.written()) == to_hex(agent_disconnect(status_code::frame_too_big,
                                                              to_string(error::frame_too_big))));
    }
    SECTION("after HELLO: ours when HAProxy offers more") {
        fixture fx;
        fx.settings.capabilities.max_frame_size = 1024;
        REQUIRE(fx.feed(hello_frame()) > 0);
        CHECK(fx.s.frame_limit() == 1024);
        const bytes too_big = notify_frame(1, 1, text(1024 - 7 + 1, 'x'));
        CHECK(fx.feed(too_big) == too_big.size());
        CHECK(fx.host.notifies.empty());
        CHECK(fx.s.sent_status() == status_code::frame_too_big);
    }
}

// ---- any split --------------------------------------------------------------------------------

TEST_CASE("session: any split of a conversation gives the same frames and decisions", "[session]") {
    const bytes payload = payload_of(spoa::test::v5_hex);
    const bytes conversation = concat({
        from_hex(spoa::test::v2_hex),
        from_hex(spoa::test::v5_hex),
        notify_frame(4, 1, bytes(payload.begin(), payload.begin() + 20), 0),
        unset_frame(4, 1, bytes(payload.begin() + 20, payload.end()), frame_flags::fin),
        notify_frame(5, 1, {}),
        from_hex(spoa::test::v9_hex),
    });

    fixture whole;
    REQUIRE(whole.feed(conversation) == conversation.size());
    REQUIRE(whole.host.notifies.size() == 3);
    REQUIRE(whole.s.why_closing() == session::close_reason::peer_disconnect);
    const bytes answer = whole.written();
    const auto frames = frames_of(answer);
    REQUIRE(frames.size() == 2);
    CHECK(frames[0].type == frame_type::agent_hello);
    CHECK(frames[1].type == frame_type::agent_disconnect);

    for (std::size_t chunk = 1; chunk <= conversation.size(); chunk += chunk < 24 ? 1 : 37) {
        INFO("chunks of " << chunk << " bytes");
        fixture fx;
        byte_buffer pending;  // what a connection keeps between reads
        for (std::size_t at = 0; at < conversation.size(); at += chunk) {
            const std::size_t n = std::min(chunk, conversation.size() - at);
            pending.append(view(conversation).subspan(at, n));
            const std::size_t consumed = fx.s.feed(pending.view());
            REQUIRE(consumed <= pending.size());
            pending.consume_front(consumed);
        }
        CHECK(pending.empty());
        CHECK(to_hex(fx.written()) == to_hex(answer));
        REQUIRE(fx.host.notifies.size() == whole.host.notifies.size());
        for (std::size_t i = 0; i < fx.host.notifies.size(); ++i) {
            CHECK(fx.host.notifies[i].stream_id == whole.host.notifies[i].stream_id);
            CHECK(fx.host.notifies[i].frame_id == whole.host.notifies[i].frame_id);
            CHECK(fx.host.notifies[i].payload == whole.host.notifies[i].payload);
        }
        CHECK(fx.s.why_closing() == session::close_reason::peer_disconnect);
        CHECK(fx.s.peer_status() == 2);
        CHECK(fx.s.unset_frames() == 1);
    }
}
