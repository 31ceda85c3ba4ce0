// Limits and timeouts: max connections, HELLO and idle timeouts, in-flight backpressure, and the
// HAPROXY-DISCONNECT exchange.

#include <atomic>

#include "agent_test_util.hpp"
#include "spoa/handlers/examples.hpp"

namespace spoa::testing {
namespace {

using clock = std::chrono::steady_clock;
using protocol::var_scope;

}  // namespace

TEST_CASE("limits: a connection above max_connections gets AGENT-DISCONNECT 13", "[limits]") {
    auto cfg = test_config();
    cfg.max_connections = 2;
    test_agent a(cfg);
    handlers::register_echo(a.agent());
    a.start();
    auto c1 = a.connect_ready();
    auto c2 = a.connect_ready();
    auto c3 = a.connect();
    // Refused before any HELLO, with a reason (HAProxy 2.6 reconnects in a loop otherwise).
    CHECK(c3.expect_disconnect() == 13);
    CHECK(c3.wait_closed() == close_kind::eof);
    CHECK(a.metric("spoa_limit_events_total{limit=\"max_connections\"}") == 1);
    // The two accepted connections keep working.
    c1.send_notify(1, 1, one_arg("echo", "1"));
    CHECK(c1.expect(ft::ack).frame_id == 1);
    // Once one closes, a new connection is accepted again.
    c3.close();
    c2.close();
    REQUIRE(a.wait_metric("spoa_connections_active", 1));
    auto c4 = a.connect_ready();
    c4.send_notify(1, 1, one_arg("echo", "4"));
    CHECK(c4.expect(ft::ack).frame_id == 1);
}

TEST_CASE("limits: no HELLO within hello_timeout: AGENT-DISCONNECT 2", "[limits]") {
    auto cfg = test_config();
    cfg.hello_timeout = 200ms;
    test_agent a(cfg);
    a.start();
    const auto start = clock::now();
    auto c = a.connect();
    CHECK(c.expect_disconnect(2000ms) == 2);
    const auto waited = clock::now() - start;
    CHECK(waited >= 190ms);
    CHECK(waited < 1500ms);
    CHECK(c.wait_closed() == close_kind::eof);
    CHECK(a.metric("spoa_limit_events_total{limit=\"hello_timeout\"}") == 1);
    // A HELLO that does arrive in time is not affected.
    auto d = a.connect();
    (void)d.handshake();
    CHECK(d.silent_for(400ms));
}

TEST_CASE("limits: an idle connection gets AGENT-DISCONNECT 2 after idle_timeout", "[limits]") {
    auto cfg = test_config();
    cfg.idle_timeout = 300ms;
    test_agent a(cfg);
    handlers::register_echo(a.agent());
    a.start();
    auto c = a.connect_ready();
    // Activity keeps it open past the timeout...
    for (int i = 1; i <= 4; ++i) {
        std::this_thread::sleep_for(120ms);
        c.send_notify(1, static_cast<std::uint64_t>(i), one_arg("echo", "x"));
        CHECK(c.expect(ft::ack).frame_id == static_cast<std::uint64_t>(i));
    }
    // ... then silence closes it.
    const auto last = clock::now();
    CHECK(c.expect_disconnect(2000ms) == 2);
    const auto waited = clock::now() - last;
    CHECK(waited >= 280ms);
    CHECK(waited < 1500ms);
    CHECK(c.wait_closed() == close_kind::eof);
    CHECK(a.metric("spoa_limit_events_total{limit=\"idle_timeout\"}") == 1);
}

TEST_CASE("limits: a frame waiting for a handler is not idle", "[limits]") {
    reply_box box;
    auto cfg = test_config();
    cfg.idle_timeout = 200ms;
    cfg.handler_deadline = 5000ms;
    test_agent a(cfg);
    a.agent().on_async("slow", [&](const message&, async_reply r) { box.put(std::move(r)); });
    a.start();
    auto c = a.connect_ready();
    c.send_notify(1, 1, message_spec{"slow", {}});
    REQUIRE(box.wait_for(1));
    CHECK(c.silent_for(500ms));
    box.take().reply.done();
    CHECK(c.expect(ft::ack).frame_id == 1);
    CHECK(c.expect_disconnect(2000ms) == 2);
}

TEST_CASE("limits: max_inflight_per_connection pauses reading, then resumes", "[limits]") {
    reply_box box;
    auto cfg = test_config();
    cfg.max_inflight_per_connection = 2;
    cfg.handler_deadline = 5000ms;
    test_agent a(cfg);
    a.agent().on_async("slow", [&](const message& m, async_reply r) {
        box.put(std::move(r), std::to_string(m.frame_id()));
    });
    a.start();
    auto c = a.connect_ready();
    std::vector<std::uint8_t> burst;
    for (std::uint64_t fid = 1; fid <= 5; ++fid) {
        const auto f = encode_frame(3, fin, 1, fid, notify_payload(message_spec{"slow", {}}));
        burst.insert(burst.end(), f.begin(), f.end());
    }
    c.send_raw(burst);
    REQUIRE(box.wait_for(2));
    // Frames 3..5 are not dispatched while two are in flight.
    CHECK(c.silent_for(200ms));
    CHECK(box.total() == 2);
    CHECK(a.metric("spoa_inflight_frames") == 2);
    CHECK(a.metric("spoa_limit_events_total{limit=\"inflight\"}") >= 1);

    auto first = box.take();
    CHECK(first.tag == "1");
    first.reply.done();
    CHECK(c.expect(ft::ack).frame_id == 1);
    // One slot freed: exactly one more frame is dispatched.
    REQUIRE(box.wait_for(2));
    CHECK(c.silent_for(100ms));
    CHECK(box.total() == 3);

    // Complete everything: every frame is answered, in completion order.
    std::vector<std::uint64_t> acked;
    for (int n = 0; n < 4; ++n) {
        REQUIRE(box.wait_for(1));
        box.take().reply.done();
        acked.push_back(c.expect(ft::ack).frame_id);
    }
    CHECK(acked == std::vector<std::uint64_t>{2, 3, 4, 5});
    CHECK(box.total() == 5);
    CHECK(a.wait_metric("spoa_inflight_frames", 0));
    // Reading resumed: a new frame goes through at once.
    c.send_notify(1, 6, message_spec{"slow", {}});
    REQUIRE(box.wait_for(1));
    box.take().reply.done();
    CHECK(c.expect(ft::ack).frame_id == 6);
}

TEST_CASE("limits: write_high_water pauses reading, frames already read are handled later",
          "[limits]") {
    auto cfg = test_config();
    cfg.write_high_water = 4096;
    test_agent a(cfg);
    handlers::register_echo(a.agent());
    a.start();
    auto c = a.connect_ready();
    // 40 NOTIFYs in one write (one read on the agent side), each answered by a ~1 KiB ACK: the
    // output queue passes the high-water mark after a few of them and reading pauses with the
    // rest already read. Nothing more will ever arrive from us, so the agent itself must come
    // back to those frames once its writes drain.
    const std::string value(1000, 'w');
    std::vector<std::uint8_t> burst;
    for (std::uint64_t fid = 1; fid <= 40; ++fid) {
        const auto f = encode_frame(3, fin, 1, fid, notify_payload(one_arg("echo", value)));
        burst.insert(burst.end(), f.begin(), f.end());
    }
    REQUIRE(burst.size() < 60000);
    c.send_raw(burst);
    for (std::uint64_t fid = 1; fid <= 40; ++fid) {
        const auto ack = c.expect(ft::ack);
        REQUIRE(ack.frame_id == fid);
        CHECK(ack.actions() == std::vector<owned_action>{set_txn("v", typed_value::string(value))});
    }
    CHECK(a.metric("spoa_limit_events_total{limit=\"write_high_water\"}") >= 1);
}

TEST_CASE("limits: HAPROXY-DISCONNECT is answered with AGENT-DISCONNECT 0, then close",
          "[limits]") {
    test_agent a;
    a.start();
    auto c = a.connect_ready();
    // Example V9 (protocol/README.md §11): status 2 "a timeout occurred" (2.6's timeout idle).
    c.send_raw(
        "00 00 00 31 02 00 00 00 01 00 00 0b 73 74 61 74 75 73 2d 63 6f 64 65 03 02 07 6d 65 73 "
        "73 61 67 65 08 12 61 20 74 69 6d 65 6f 75 74 20 6f 63 63 75 72 72 65 64");
    const auto f = c.expect(ft::agent_disconnect);
    CHECK(f.status() == 0);
    CHECK(f.kv_string("message") == "normal");
    CHECK(c.wait_closed() == close_kind::eof);
    CHECK(a.wait_metric("spoa_peer_disconnects_total{status=\"2\"}", 1));
    CHECK(a.metric("spoa_frames_received_total{type=\"HAPROXY-DISCONNECT\"}") == 1);

    SECTION("also before HELLO") {
        auto d = a.connect();
        d.send_disconnect(0, "normal");  // example V8, protocol/README.md §11
        CHECK(d.expect_disconnect() == 0);
        CHECK(d.wait_closed() == close_kind::eof);
    }
}

TEST_CASE("limits: after AGENT-DISCONNECT a peer that never closes is closed after the linger",
          "[limits]") {
    auto cfg = test_config();
    cfg.close_linger = 200ms;
    test_agent a(cfg);
    a.start();
    auto c = a.connect_ready();
    c.send_disconnect(0, "normal");
    CHECK(c.expect_disconnect() == 0);
    // We half-closed; the agent closes its side fully after close_linger even though we keep
    // our side open.
    CHECK(c.wait_closed() == close_kind::eof);
    CHECK(a.wait_metric("spoa_connections_active", 0, 2000ms));
}

}  // namespace spoa::testing
