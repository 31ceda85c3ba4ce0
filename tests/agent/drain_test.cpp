// Graceful stop: agent.stop(true) answers what is in flight, says AGENT-DISCONNECT 0 to every
// connection, then stops.

#include <future>

#include "agent_test_util.hpp"
#include "spoa/handlers/examples.hpp"

namespace spoa::testing {
namespace {

using protocol::var_scope;

}  // namespace

TEST_CASE("drain: in-flight frame answered, then AGENT-DISCONNECT 0, then the agent stops",
          "[drain]") {
    reply_box box;
    auto cfg = test_config();
    cfg.handler_deadline = 5000ms;
    cfg.drain_timeout = 5000ms;
    test_agent a(cfg);
    a.agent().on_async("slow", [&](const message&, async_reply r) { box.put(std::move(r)); });
    handlers::register_echo(a.agent());
    a.start();
    auto busy = a.connect_ready();
    auto idle = a.connect_ready();
    busy.send_notify(3, 1, message_spec{"slow", {}});
    REQUIRE(box.wait_for(1));

    a.agent().stop(true);
    auto stopped = std::async(std::launch::async, [&] { a.agent().wait(); });

    // The idle connection is told at once.
    const auto d = idle.expect(ft::agent_disconnect);
    CHECK(d.status() == 0);
    CHECK(idle.wait_closed() == close_kind::eof);
    idle.close();
    // The busy one still waits for its frame; new connections are refused.
    CHECK(busy.silent_for(200ms));
    CHECK_THROWS(a.connect());
    CHECK(stopped.wait_for(0ms) == std::future_status::timeout);

    auto h = box.take();
    h.reply.set_string(var_scope::txn, "late", "but answered");
    h.reply.done();
    const auto ack = busy.expect(ft::ack);
    CHECK(ack.stream_id == 3);
    CHECK(ack.frame_id == 1);
    CHECK(ack.actions() ==
          std::vector<owned_action>{set_txn("late", typed_value::string("but answered"))});
    CHECK(busy.expect_disconnect() == 0);
    CHECK(busy.wait_closed() == close_kind::eof);
    busy.close();
    CHECK(stopped.wait_for(3s) == std::future_status::ready);
    CHECK(a.metric("spoa_limit_events_total{limit=\"drain_timeout\"}") == 0);
}

TEST_CASE("drain: frames pipelined on a draining connection are still answered", "[drain]") {
    reply_box box;
    auto cfg = test_config();
    cfg.handler_deadline = 5000ms;
    test_agent a(cfg);
    a.agent().on_async("slow", [&](const message&, async_reply r) { box.put(std::move(r)); });
    a.start();
    auto c = a.connect_ready();
    c.send_notify(1, 1, message_spec{"slow", {}});
    c.send_notify(1, 2, message_spec{"slow", {}});
    REQUIRE(box.wait_for(2));
    a.agent().stop(true);
    CHECK(c.silent_for(100ms));
    box.take().reply.done();
    CHECK(c.expect(ft::ack).frame_id == 1);
    CHECK(c.silent_for(100ms));  // not yet: frame 2 is still in flight
    box.take().reply.done();
    CHECK(c.expect(ft::ack).frame_id == 2);
    CHECK(c.expect_disconnect() == 0);
    CHECK(c.wait_closed() == close_kind::eof);
}

TEST_CASE("drain: a drain that outlasts drain_timeout closes everything", "[drain]") {
    reply_box box;
    auto cfg = test_config();
    cfg.handler_deadline = 10000ms;
    cfg.drain_timeout = 300ms;
    test_agent a(cfg);
    a.agent().on_async("slow", [&](const message&, async_reply r) { box.put(std::move(r)); });
    a.start();
    auto c = a.connect_ready();
    c.send_notify(1, 1, message_spec{"slow", {}});
    REQUIRE(box.wait_for(1));
    a.agent().stop(true);
    auto stopped = std::async(std::launch::async, [&] { a.agent().wait(); });
    // Closed without an ACK once the drain timeout passes.
    const auto k = c.wait_closed(3000ms);
    CHECK((k == close_kind::eof || k == close_kind::reset));
    CHECK(stopped.wait_for(3s) == std::future_status::ready);
    CHECK(a.metric("spoa_limit_events_total{limit=\"drain_timeout\"}") == 1);
    // Completing after the agent stopped is harmless.
    auto h = box.take();
    CHECK(h.reply.abandoned());
    h.reply.done();
}

TEST_CASE("drain: stop(false) closes at once, connections before HELLO are just closed",
          "[drain]") {
    test_agent a;
    a.start();
    auto running = a.connect_ready();
    auto fresh = a.connect();
    REQUIRE(a.wait_metric("spoa_connections_active", 2));
    SECTION("drain") {
        a.agent().stop(true);
        CHECK(running.expect_disconnect() == 0);
        // No HELLO yet: nothing to say (a DISCONNECT before AGENT-HELLO confuses HAProxy).
        const auto k = fresh.wait_closed();
        CHECK((k == close_kind::eof || k == close_kind::reset));
    }
    SECTION("now") {
        a.agent().stop(false);
        const auto k = running.wait_closed();
        CHECK((k == close_kind::eof || k == close_kind::reset));
    }
    a.stop();
}

}  // namespace spoa::testing

namespace spoa::testing {

TEST_CASE("drain grace: health checks refused, traffic served, then the drain", "[drain]") {
    auto cfg = test_config();
    cfg.drain_grace = 400ms;
    cfg.drain_timeout = 5000ms;
    test_agent a(cfg);
    handlers::register_echo(a.agent());
    a.start();
    auto before = a.connect_ready();

    a.agent().stop(true);
    auto stopped = std::async(std::launch::async, [&] { a.agent().wait(); });

    // During the grace: a health check gets AGENT-DISCONNECT instead of AGENT-HELLO (HAProxy's
    // spop-check then marks the agent DOWN) ...
    auto check = a.connect();
    check.send_hello(hello_options::healthcheck_hello());
    CHECK(check.expect_disconnect() == 0);
    // ... while new and existing connections are still served.
    auto during = a.connect_ready();
    during.send_notify(5, 1, message_spec{"echo", {{"x", typed_value::int64(7)}}});
    const auto ack = during.expect(ft::ack);
    CHECK(ack.stream_id == 5);
    CHECK(ack.actions() == std::vector<owned_action>{set_txn("x", typed_value::int64(7))});
    CHECK(stopped.wait_for(100ms) == std::future_status::timeout);

    // After the grace, the drain proper: every connection is told, the agent stops.
    CHECK(before.expect_disconnect(2s) == 0);
    CHECK(during.expect_disconnect(2s) == 0);
    before.close();
    during.close();
    CHECK(stopped.wait_for(3s) == std::future_status::ready);
}

}  // namespace spoa::testing
