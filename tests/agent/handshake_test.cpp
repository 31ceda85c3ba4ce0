// HAPROXY-HELLO / AGENT-HELLO over loopback (protocol/README.md §6, §7.2).

#include "agent_test_util.hpp"
#include "spoa/protocol/kv_list.hpp"

namespace spoa::testing {
namespace {

/// AGENT-HELLO laid out like V4: version, max-frame-size, capabilities (protocol/README.md §11).
std::vector<std::uint8_t> agent_hello_bytes(std::uint32_t mfs, std::string_view caps) {
    protocol::byte_buffer b;
    protocol::encode_kv(b, "version", typed_value::string("2.0"));
    protocol::encode_kv(b, "max-frame-size", typed_value::uint32(mfs));
    protocol::encode_kv(b, "capabilities", typed_value::string(caps));
    return encode_frame(static_cast<std::uint8_t>(ft::agent_hello), fin, 0, 0,
                        {b.data(), b.size()});
}

// Example frames of protocol/README.md §11.1.
constexpr std::string_view v1_healthcheck_hello =
    "00 00 00 4e 01 00 00 00 01 00 00 12 73 75 70 70 6f 72 74 65 64 2d 76 65 72 73 69 6f 6e 73 "
    "08 03 32 2e 30 0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69 7a 65 03 fc f0 06 0c 63 61 70 61 62 "
    "69 6c 69 74 69 65 73 08 00 0b 68 65 61 6c 74 68 63 68 65 63 6b 11";
constexpr std::string_view v2_hello_26 =
    "00 00 00 81 01 00 00 00 01 00 00 12 73 75 70 70 6f 72 74 65 64 2d 76 65 72 73 69 6f 6e 73 "
    "08 03 32 2e 30 0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69 7a 65 03 fc f0 06 0c 63 61 70 61 62 "
    "69 6c 69 74 69 65 73 08 10 70 69 70 65 6c 69 6e 69 6e 67 2c 61 73 79 6e 63 09 65 6e 67 69 "
    "6e 65 2d 69 64 08 24 38 65 36 61 35 64 32 63 2d 31 66 33 62 2d 34 63 37 64 2d 39 61 30 65 "
    "2d 32 62 34 66 36 64 38 63 30 61 31 65";
constexpr std::string_view v3_hello_31 =
    "00 00 00 7b 01 00 00 00 01 00 00 12 73 75 70 70 6f 72 74 65 64 2d 76 65 72 73 69 6f 6e 73 "
    "08 03 32 2e 30 0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69 7a 65 03 fc f0 06 0c 63 61 70 61 62 "
    "69 6c 69 74 69 65 73 08 0a 70 69 70 65 6c 69 6e 69 6e 67 09 65 6e 67 69 6e 65 2d 69 64 08 "
    "24 38 65 36 61 35 64 32 63 2d 31 66 33 62 2d 34 63 37 64 2d 39 61 30 65 2d 32 62 34 66 36 "
    "64 38 63 30 61 31 65";
constexpr std::string_view v4_agent_hello =
    "00 00 00 40 65 00 00 00 01 00 00 07 76 65 72 73 69 6f 6e 08 03 32 2e 30 0e 6d 61 78 2d 66 "
    "72 61 6d 65 2d 73 69 7a 65 03 fc f0 06 0c 63 61 70 61 62 69 6c 69 74 69 65 73 08 0a 70 69 "
    "70 65 6c 69 6e 69 6e 67";

/// Sends `hello`, expects AGENT-DISCONNECT with `status`, then the agent's close.
void expect_refused(const hello_options& hello, std::uint32_t status) {
    test_agent a;
    a.start();
    auto c = a.connect();
    c.send_hello(hello);
    const auto f = c.expect(ft::agent_disconnect);
    CHECK(f.flags == fin);
    CHECK(f.stream_id == 0);
    CHECK(f.frame_id == 0);
    CHECK(f.status() == status);
    CHECK(f.kv_string("message").size() <= 255);
    CHECK(c.wait_closed() == close_kind::eof);
}

}  // namespace

TEST_CASE("handshake: HAProxy 3.1 HELLO (example V3) gets 2.0, 16380, pipelining,fragmentation",
          "[handshake]") {
    test_agent a;
    a.start();
    auto c = a.connect();
    c.send_raw(v3_hello_31);
    const auto f = c.expect(ft::agent_hello);
    CHECK(hex(f.raw) == hex(agent_hello_bytes(16380, "pipelining,fragmentation")));
    CHECK(f.kv_string("version") == "2.0");
    CHECK(f.kv_get("max-frame-size")->type == protocol::data_type::uint32);
    // The connection is usable afterwards.
    c.send_notify(1, 1, std::vector<std::uint8_t>{});
    CHECK(hex(c.expect(ft::ack).raw) == hex(noop_ack_bytes(1, 1)));
}

TEST_CASE("handshake: with fragmentation off the reply to example V3 is exactly example V4",
          "[handshake]") {
    auto cfg = test_config();
    cfg.fragmentation = false;
    test_agent a(cfg);
    a.start();
    auto c = a.connect();
    c.send_raw(v3_hello_31);
    CHECK(hex(c.expect(ft::agent_hello).raw) == hex(from_hex(v4_agent_hello)));
}

TEST_CASE("handshake: HAProxy 2.6 HELLO (example V2, pipelining,async) never gets async",
          "[handshake]") {
    test_agent a;
    a.start();
    auto c = a.connect();
    c.send_raw(v2_hello_26);
    const auto f = c.expect(ft::agent_hello);
    CHECK(f.kv_string("capabilities") == "pipelining,fragmentation");
    CHECK(hex(f.raw) == hex(agent_hello_bytes(16380, "pipelining,fragmentation")));
}

TEST_CASE("handshake: pipelining disabled in the agent is not announced", "[handshake]") {
    auto cfg = test_config();
    cfg.pipelining = false;
    test_agent a(cfg);
    a.start();
    auto c = a.connect();
    CHECK(c.handshake(hello_options::v2_6()).kv_string("capabilities") == "fragmentation");
}

TEST_CASE("handshake: max-frame-size is min(ours, theirs) and becomes the limit", "[handshake]") {
    SECTION("theirs smaller: theirs") {
        test_agent a;
        a.start();
        auto c = a.connect();
        hello_options h;
        h.max_frame_size = 1000;
        const auto f = c.handshake(h);
        CHECK(hex(f.raw) == hex(agent_hello_bytes(1000, "pipelining,fragmentation")));
        // A NOTIFY of exactly LEN 1000 (7 + 2-byte name length + 990 + nb-args) is accepted...
        c.send_notify(1, 1, notify_payload(message_spec{std::string(990, 'm'), {}}));
        CHECK(hex(c.expect(ft::ack).raw) == hex(noop_ack_bytes(1, 1)));
        // ... one byte more is too big (status 3).
        const auto payload = notify_payload(message_spec{std::string(991, 'm'), {}});
        REQUIRE(payload.size() == 994);
        c.send_notify(1, 2, payload);
        CHECK(c.expect_disconnect() == 3);
        CHECK(c.wait_closed() == close_kind::eof);
    }
    SECTION("exactly 256: 256") {
        test_agent a;
        a.start();
        auto c = a.connect();
        hello_options h;
        h.max_frame_size = 256;
        CHECK(c.handshake(h).kv_uint("max-frame-size") == 256);
    }
    SECTION("theirs above ours: ours") {
        auto cfg = test_config();
        cfg.max_frame_size = 4096;
        test_agent a(cfg);
        a.start();
        auto c = a.connect();
        hello_options h;
        h.max_frame_size = 16380;
        const auto f = c.handshake(h);
        CHECK(hex(f.raw) == hex(agent_hello_bytes(4096, "pipelining,fragmentation")));
    }
}

TEST_CASE("handshake: a versions list with spaces is accepted", "[handshake]") {
    for (const char* versions : {" 2.0 , 1.0", "1.0, 2.0", "2.0 "}) {
        INFO("supported-versions '" << versions << "'");
        test_agent a;
        a.start();
        auto c = a.connect();
        hello_options h;
        h.supported_versions = versions;
        CHECK(c.handshake(h).kv_string("version") == "2.0");
    }
}

TEST_CASE("handshake: refusals send AGENT-DISCONNECT with the status, then close", "[handshake]") {
    hello_options h;
    SECTION("only 1.0 offered: 8") {
        h.supported_versions = "1.0";
        expect_refused(h, 8);
    }
    SECTION("only 3.0 offered: 8") {
        h.supported_versions = "3.0";
        expect_refused(h, 8);
    }
    SECTION("max-frame-size 255: 9") {
        h.max_frame_size = 255;
        expect_refused(h, 9);
    }
    SECTION("no capabilities key: 7") {
        h.capabilities.reset();
        expect_refused(h, 7);
    }
    SECTION("no supported-versions key: 5") {
        h.supported_versions.reset();
        expect_refused(h, 5);
    }
    SECTION("no max-frame-size key: 6") {
        h.max_frame_size.reset();
        expect_refused(h, 6);
    }
}

TEST_CASE("handshake: empty capabilities means no pipelining", "[handshake]") {
    test_agent a;
    a.start();
    auto c = a.connect();
    hello_options h;
    h.capabilities = "";
    const auto f = c.handshake(h);
    CHECK(hex(f.raw) == hex(agent_hello_bytes(16380, "fragmentation")));
}

TEST_CASE("handshake: health-check HELLO (example V1) gets a full AGENT-HELLO, then EOF",
          "[handshake]") {
    test_agent a;
    a.start();
    auto c = a.connect();
    c.send_raw(v1_healthcheck_hello);
    const auto f = c.expect(ft::agent_hello);
    CHECK(hex(f.raw) == hex(agent_hello_bytes(16380, "fragmentation")));
    // protocol/README.md §6.3: no DISCONNECT exchange, the agent just closes.
    CHECK(c.wait_closed() == close_kind::eof);
    CHECK(a.wait_metric("spoa_frames_sent_total{type=\"AGENT-DISCONNECT\"}", 0));
}

TEST_CASE("handshake: NOTIFY before HELLO gets status 4, then close", "[handshake]") {
    test_agent a;
    a.start();
    auto c = a.connect();
    c.send_notify(1, 1, notify_payload(one_arg("echo", "x")));
    CHECK(c.expect_disconnect() == 4);
    CHECK(c.wait_closed() == close_kind::eof);
}

TEST_CASE("handshake: a second HELLO on a running connection gets status 4", "[handshake]") {
    test_agent a;
    a.start();
    auto c = a.connect_ready();
    c.send_hello();
    CHECK(c.expect_disconnect() == 4);
    CHECK(c.wait_closed() == close_kind::eof);
}

}  // namespace spoa::testing
