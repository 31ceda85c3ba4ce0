// Fragmented NOTIFYs over loopback (protocol/README.md §9).

#include <atomic>

#include "agent_test_util.hpp"
#include "spoa/handlers/examples.hpp"

namespace spoa::testing {
namespace {

/// An echo message whose payload is a bit over 700 bytes, like the live 2.6.12 test.
std::vector<std::uint8_t> big_echo_payload(const std::string& body) {
    return notify_payload(message_spec{"echo",
                                       {{"method", typed_value::string("POST")},
                                        {"body", typed_value::binary(body)},
                                        {"port", typed_value::int64(443)}}});
}

std::vector<owned_action> big_echo_actions(const std::string& body) {
    return {set_txn("method", typed_value::string("POST")),
            set_txn("body", typed_value::binary(body)), set_txn("port", typed_value::int64(443))};
}

}  // namespace

TEST_CASE("fragmentation: NOTIFY + UNSET + UNSET(FIN) is reassembled and answered once",
          "[fragmentation]") {
    test_agent a;
    handlers::register_echo(a.agent());
    a.start();
    hello_options h;
    h.max_frame_size = 256;
    auto c = a.connect_ready(h);

    const std::string body(700, 'A');
    const auto payload = big_echo_payload(body);
    REQUIRE(payload.size() > 2 * 224);
    // HAProxy splits at 224-byte boundaries, inside the BINARY value here
    // (protocol/README.md §11.3).
    const std::size_t chunks[] = {224, 224, 224};
    c.send_fragmented_notify(5, 1, payload, chunks);
    const auto ack = c.expect(ft::ack);
    CHECK(ack.stream_id == 5);
    CHECK(ack.frame_id == 1);
    // The echo of a 700-byte value cannot fit in 256 bytes: only what fits is sent.
    CHECK(ack.raw.size() <= 4 + 256);
    CHECK(ack.actions() == std::vector<owned_action>{set_txn("method", typed_value::string("POST")),
                                                     set_txn("port", typed_value::int64(443))});
    CHECK(c.silent_for(150ms));
    CHECK(a.metric("spoa_frames_received_total{type=\"NOTIFY\"}") == 1);
    CHECK(a.metric("spoa_frames_received_total{type=\"UNSET\"}") == 3);
}

TEST_CASE("fragmentation: the reassembled payload is exactly the concatenation",
          "[fragmentation]") {
    test_agent a;
    handlers::register_echo(a.agent());
    a.start();
    auto c = a.connect_ready();
    std::string body;
    for (int i = 0; i < 600; ++i)
        body += static_cast<char>(i * 7);
    const auto payload = big_echo_payload(body);
    // Split points: inside the message name, inside the value, one-byte fragments.
    const std::size_t chunks[] = {2, 1, 40, 1, 300};
    c.send_fragmented_notify(8, 3, payload, chunks);
    const auto ack = c.expect(ft::ack);
    CHECK(ack.stream_id == 8);
    CHECK(ack.frame_id == 3);
    CHECK(ack.actions() == big_echo_actions(body));
    CHECK(c.silent_for(100ms));
}

TEST_CASE("fragmentation: FIN|ABORT discards the frame, the next one works", "[fragmentation]") {
    test_agent a;
    std::atomic<int> calls{0};
    a.agent().on("echo", [&](const message&, reply&) { ++calls; });
    a.start();
    auto c = a.connect_ready();
    const auto payload = big_echo_payload(std::string(500, 'x'));
    c.send_notify(1, 1, std::span(payload).first(100), 0);
    c.send_unset(1, 1, std::span(payload).subspan(100, 100), 0);
    c.send_abort(1, 1);  // 00 00 00 03 flags, empty payload
    CHECK(c.silent_for(200ms));
    CHECK(calls == 0);
    CHECK(a.metric("spoa_frames_received_total{type=\"UNSET\"}") == 2);

    // A new fragmented frame with the same ids, then a plain one.
    const std::size_t chunks[] = {200};
    c.send_fragmented_notify(1, 1, payload, chunks);
    CHECK(c.expect(ft::ack).frame_id == 1);
    c.send_notify(1, 2, payload);
    CHECK(c.expect(ft::ack).frame_id == 2);
    CHECK(calls == 2);
}

TEST_CASE("fragmentation: fatal cases send the exact status, then close", "[fragmentation]") {
    const auto payload = big_echo_payload(std::string(500, 'x'));
    const auto first = std::span(payload).first(100);
    const auto second = std::span(payload).subspan(100, 100);

    SECTION("interlaced NOTIFY during a fragmented frame: 11") {
        test_agent a;
        a.start();
        auto c = a.connect_ready();
        c.send_notify(1, 1, first, 0);
        c.send_notify(3, 1, notify_payload(message_spec{"echo", {}}));
        CHECK(c.expect_disconnect() == 11);
        CHECK(c.wait_closed() == close_kind::eof);
    }
    SECTION("UNSET with other ids during a fragmented frame: 11") {
        test_agent a;
        a.start();
        auto c = a.connect_ready();
        c.send_notify(1, 1, first, 0);
        c.send_unset(1, 2, second, 0);
        CHECK(c.expect_disconnect() == 11);
        CHECK(c.wait_closed() == close_kind::eof);
    }
    SECTION("reassembly above max_reassembled_size: 3") {
        auto cfg = test_config();
        cfg.max_reassembled_size = 1000;
        test_agent a(cfg);
        a.start();
        auto c = a.connect_ready();
        const std::vector<std::uint8_t> chunk(400, 0);
        c.send_notify(1, 1, chunk, 0);
        c.send_unset(1, 1, chunk, 0);
        CHECK(c.silent_for(100ms));  // 800 bytes: still fine
        c.send_unset(1, 1, chunk, fin);
        CHECK(c.expect_disconnect() == 3);
        CHECK(c.wait_closed() == close_kind::eof);
    }
    SECTION("reassembly exactly at max_reassembled_size is accepted") {
        auto cfg = test_config();
        cfg.max_reassembled_size = 1000;
        test_agent a(cfg);
        a.start();
        auto c = a.connect_ready();
        // One message whose payload is exactly 1000 bytes: name (2+994) + nb-args... built so.
        const auto p = notify_payload(message_spec{std::string(997, 'n'), {}});
        REQUIRE(p.size() == 1000);
        const std::size_t chunks[] = {400, 400};
        c.send_fragmented_notify(1, 1, p, chunks);
        CHECK(hex(c.expect(ft::ack).raw) == hex(noop_ack_bytes(1, 1)));
    }
    SECTION("UNSET without a fragmented frame in progress: 12") {
        test_agent a;
        a.start();
        auto c = a.connect_ready();
        c.send_unset(1, 1, second, fin);
        CHECK(c.expect_disconnect() == 12);
        CHECK(c.wait_closed() == close_kind::eof);
    }
    SECTION("UNSET after a completed fragmented frame: 12") {
        test_agent a;
        a.start();
        auto c = a.connect_ready();
        const std::size_t chunks[] = {100};
        c.send_fragmented_notify(1, 1, payload, chunks);
        CHECK(c.expect(ft::ack).frame_id == 1);
        c.send_unset(1, 1, second, fin);
        CHECK(c.expect_disconnect() == 12);
        CHECK(c.wait_closed() == close_kind::eof);
    }
    SECTION("FIN-less NOTIFY when the agent disabled fragmentation: 10") {
        auto cfg = test_config();
        cfg.fragmentation = false;
        test_agent a(cfg);
        a.start();
        auto c = a.connect_ready();
        c.send_notify(1, 1, first, 0);
        CHECK(c.expect_disconnect() == 10);
        CHECK(c.wait_closed() == close_kind::eof);
    }
    SECTION("UNSET when the agent disabled fragmentation: 10") {
        auto cfg = test_config();
        cfg.fragmentation = false;
        test_agent a(cfg);
        a.start();
        auto c = a.connect_ready();
        c.send_unset(1, 1, second, fin);
        CHECK(c.expect_disconnect() == 10);
        CHECK(c.wait_closed() == close_kind::eof);
    }
    SECTION("FIN-less HELLO: 10") {
        test_agent a;
        a.start();
        auto c = a.connect();
        c.send_frame(ft::haproxy_hello, 0, 0, 0, hello_payload({}));
        CHECK(c.expect_disconnect() == 10);
        CHECK(c.wait_closed() == close_kind::eof);
    }
}

TEST_CASE("fragmentation: HAPROXY-DISCONNECT during a fragmented frame is answered with 0",
          "[fragmentation]") {
    test_agent a;
    a.start();
    auto c = a.connect_ready();
    const std::vector<std::uint8_t> chunk(100, 0);
    c.send_notify(1, 1, chunk, 0);
    c.send_disconnect(0, "normal");
    CHECK(c.expect_disconnect() == 0);
    CHECK(c.wait_closed() == close_kind::eof);
}

}  // namespace spoa::testing
