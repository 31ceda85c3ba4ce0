// Async handlers: completion from other threads, after the connection closed, after the
// deadline; dropped replies; handler exceptions; ACKs are never empty.

#include <atomic>
#include <stdexcept>
#include <thread>

#include "agent_test_util.hpp"

namespace spoa::testing {
namespace {

using protocol::var_scope;
using clock = std::chrono::steady_clock;

}  // namespace

TEST_CASE("async: done() from another thread writes the ACK", "[async]") {
    reply_box box;
    test_agent a;
    a.agent().on_async("slow", [&](const message& m, async_reply r) {
        box.put(std::move(r), std::string(m.get_string("v")));
    });
    a.start();
    auto c = a.connect_ready();
    c.send_notify(9, 4, one_arg("slow", "hello"));
    REQUIRE(box.wait_for(1));
    CHECK(c.silent_for(100ms));  // nothing before done()

    std::jthread completer([&] {
        auto h = box.take();
        h.reply.set_string(var_scope::sess, "got", h.tag);
        h.reply.set_int(var_scope::txn, "n", 42);
        h.reply.done();
    });
    const auto ack = c.expect(ft::ack);
    CHECK(ack.stream_id == 9);
    CHECK(ack.frame_id == 4);
    CHECK(ack.actions() ==
          std::vector<owned_action>{set_var(var_scope::sess, "got", typed_value::string("hello")),
                                    set_txn("n", typed_value::int64(42))});
    CHECK(a.wait_metric("spoa_inflight_frames", 0));
}

TEST_CASE("async: completion after the connection closed is dropped and counted", "[async]") {
    reply_box box;
    test_agent a;
    a.agent().on_async("slow", [&](const message&, async_reply r) { box.put(std::move(r)); });
    a.start();

    SECTION("peer closes the socket") {
        auto c = a.connect_ready();
        c.send_notify(1, 1, message_spec{"slow", {}});
        REQUIRE(box.wait_for(1));
        c.close();
    }
    SECTION("peer sends HAPROXY-DISCONNECT: AGENT-DISCONNECT 0 comes, never the ACK") {
        auto c = a.connect_ready();
        c.send_notify(1, 1, message_spec{"slow", {}});
        REQUIRE(box.wait_for(1));
        c.send_disconnect(0, "normal");
        CHECK(c.expect_disconnect() == 0);
        CHECK(c.wait_closed() == close_kind::eof);
    }
    REQUIRE(a.wait_metric("spoa_connections_active", 0));
    CHECK(a.metric("spoa_inflight_frames") == 0);

    std::jthread([&] {
        auto h = box.take();
        CHECK(h.reply.abandoned());
        h.reply.set_int(var_scope::txn, "late", 1);
        h.reply.done();
    }).join();
    CHECK(a.wait_metric("spoa_async_late_total", 1));
    CHECK(a.metric("spoa_frames_sent_total{type=\"ACK\"}") == 0);

    // The agent still serves new connections (and its frame pool is sane).
    auto d = a.connect_ready();
    d.send_notify(2, 2, message_spec{"slow", {}});
    REQUIRE(box.wait_for(1));
    box.take().reply.done();
    CHECK(hex(d.expect(ft::ack).raw) == hex(noop_ack_bytes(2, 2)));
}

TEST_CASE("async: at the deadline the ACK goes out with the ready actions, late ones are dropped",
          "[async]") {
    reply_box box;
    auto cfg = test_config();
    cfg.handler_deadline = 300ms;
    test_agent a(cfg);
    a.agent().on("ready", [](const message&, reply& r) { r.set_int(var_scope::txn, "a", 1); });
    a.agent().on_async("fast",
                       [&](const message&, async_reply r) { box.put(std::move(r), "fast"); });
    a.agent().on_async("slow",
                       [&](const message&, async_reply r) { box.put(std::move(r), "slow"); });
    a.start();
    auto c = a.connect_ready();

    const std::vector<message_spec> msgs = {{"ready", {}}, {"fast", {}}, {"slow", {}}};
    const auto sent = clock::now();
    c.send_notify(11, 1, notify_payload(msgs));
    REQUIRE(box.wait_for(2));
    auto fast = box.take();
    auto slow = box.take();
    REQUIRE(fast.tag == "fast");
    REQUIRE(slow.tag == "slow");
    // `fast` completes (from this thread), `slow` writes an action but is not done yet.
    fast.reply.set_int(var_scope::txn, "b", 2);
    fast.reply.done();
    slow.reply.set_int(var_scope::txn, "not_ready", 3);
    CHECK_FALSE(slow.reply.abandoned());

    const auto ack = c.expect(ft::ack);
    const auto waited = clock::now() - sent;
    CHECK(waited >= 250ms);
    CHECK(waited < 2000ms);
    CHECK(ack.stream_id == 11);
    CHECK(ack.actions() == std::vector<owned_action>{set_txn("a", typed_value::int64(1)),
                                                     set_txn("b", typed_value::int64(2))});
    CHECK(a.metric("spoa_limit_events_total{limit=\"handler_deadline\"}") == 1);

    // The late completion learns it was abandoned, and nothing more is sent.
    CHECK(slow.reply.abandoned());
    slow.reply.done();
    CHECK(a.wait_metric("spoa_async_late_total", 1));
    CHECK(c.silent_for(200ms));

    // The connection keeps working.
    c.send_notify(11, 2, message_spec{"ready", {}});
    CHECK(c.expect(ft::ack).actions() ==
          std::vector<owned_action>{set_txn("a", typed_value::int64(1))});
}

TEST_CASE("async: a reply completed after the agent is destroyed is harmless", "[async]") {
    reply_box box;
    {
        test_agent a;
        a.agent().on_async("slow", [&](const message&, async_reply r) { box.put(std::move(r)); });
        a.start();
        auto c = a.connect_ready();
        c.send_notify(1, 1, message_spec{"slow", {}});
        c.send_notify(1, 2, message_spec{"slow", {}});
        REQUIRE(box.wait_for(2));
        a.stop(false);
    }  // agent, loops and frames are gone; the replies are still held here
    auto first = box.take();
    CHECK(first.reply.abandoned());
    std::jthread([r = std::move(first.reply)]() mutable {
        r.set_int(var_scope::txn, "late", 1);
        r.done();
    }).join();
    auto second = box.take();
    CHECK(second.reply.abandoned());
    second.reply.set_int(var_scope::txn, "late", 2);
    // Destroyed without done() at the end of the test.
}

TEST_CASE("async: a dropped async_reply answers at once with what it holds", "[async]") {
    auto cfg = test_config();
    cfg.handler_deadline = 5000ms;
    test_agent a(cfg);
    a.agent().on_async("drop", [](const message&, async_reply) {});
    a.agent().on_async("drop-with-var", [](const message&, async_reply r) {
        r.set_bool(var_scope::req, "flag", true);
    });
    std::atomic<bool> thread_done{false};
    std::jthread dropper;
    a.agent().on_async("drop-on-thread", [&](const message&, async_reply r) {
        dropper = std::jthread([&, r = std::move(r)]() mutable {
            r.set_string(var_scope::res, "from", "thread");
            {
                const async_reply gone(std::move(r));  // destroyed here, without done()
            }
            thread_done = true;
        });
    });
    a.start();
    auto c = a.connect_ready();

    auto start = clock::now();
    c.send_notify(1, 1, message_spec{"drop", {}});
    CHECK(hex(c.expect(ft::ack, 1000ms).raw) == hex(noop_ack_bytes(1, 1)));

    c.send_notify(1, 2, message_spec{"drop-with-var", {}});
    CHECK(c.expect(ft::ack, 1000ms).actions() ==
          std::vector<owned_action>{set_var(var_scope::req, "flag", typed_value::boolean(true))});

    c.send_notify(1, 3, message_spec{"drop-on-thread", {}});
    CHECK(
        c.expect(ft::ack, 1000ms).actions() ==
        std::vector<owned_action>{set_var(var_scope::res, "from", typed_value::string("thread"))});
    CHECK(clock::now() - start < 3000ms);  // far below the 5 s deadline
    CHECK(a.metric("spoa_limit_events_total{limit=\"handler_deadline\"}") == 0);
    CHECK(wait_until([&] { return thread_done.load(); }));
}

TEST_CASE("async: handler exceptions still answer the frame, with the noop action only",
          "[async][exceptions]") {
    reply_box box;
    test_agent a;
    a.agent().on("sets", [](const message&, reply& r) { r.set_int(var_scope::txn, "x", 1); });
    a.agent().on("sync-throws", [](const message&, reply& r) {
        r.set_int(var_scope::txn, "partial", 1);
        throw std::runtime_error("boom");
    });
    a.agent().on("throws-int", [](const message&, reply&) { throw 42; });
    a.agent().on_async("async-throws", [](const message&, async_reply r) {
        r.set_int(var_scope::txn, "partial", 1);
        throw std::runtime_error("async boom");
    });
    a.agent().on_async("parks-then-throws", [&](const message&, async_reply r) {
        box.put(std::move(r));
        throw std::logic_error("after parking");
    });
    a.agent().on_async("async-ok",
                       [](const message&, async_reply r) { r.set_int(var_scope::txn, "y", 2); });
    a.start();
    auto c = a.connect_ready();
    std::uint64_t fid = 0;
    const auto expect_noop = [&](const std::vector<message_spec>& msgs) {
        ++fid;
        c.send_notify(1, fid, notify_payload(msgs));
        const auto ack = c.expect(ft::ack);
        CHECK(ack.frame_id == fid);
        CHECK(hex(ack.raw) == hex(noop_ack_bytes(1, fid)));
    };

    expect_noop({{"sync-throws", {}}});
    expect_noop({{"throws-int", {}}});
    // One handler failing drops the variables of the whole frame (sync fast path).
    expect_noop({{"sets", {}}, {"sync-throws", {}}});
    expect_noop({{"async-throws", {}}});
    // Mixed frame (slow path): sync variables, async variables, then a throw.
    expect_noop({{"sets", {}}, {"async-ok", {}}, {"async-throws", {}}});
    expect_noop({{"sets", {}}, {"sync-throws", {}}, {"async-ok", {}}});

    // A handler that parked its reply and then threw: answered once the reply completes.
    ++fid;
    c.send_notify(1, fid, message_spec{"parks-then-throws", {}});
    REQUIRE(box.wait_for(1));
    CHECK(c.silent_for(100ms));
    {
        auto h = box.take();
        h.reply.set_int(var_scope::txn, "z", 3);
        h.reply.done();
    }
    CHECK(hex(c.expect(ft::ack).raw) == hex(noop_ack_bytes(1, fid)));

    CHECK(a.metric("spoa_handler_exceptions_total") == 7);
    // The connection still works after all of this.
    c.send_notify(1, 100,
                  notify_payload(std::vector<message_spec>{{"sets", {}}, {"async-ok", {}}}));
    CHECK(c.expect(ft::ack).actions() ==
          std::vector<owned_action>{set_txn("x", typed_value::int64(1)),
                                    set_txn("y", typed_value::int64(2))});
}

TEST_CASE("async: after a handler throws, the frame's later handlers are not called, on both paths",
          "[async][exceptions]") {
    // The rule of handler.hpp, for a frame of sync handlers only (fast path) and for a frame
    // with an async handler (pending frame), the throw before or after it.
    std::atomic<int> later_calls{0};
    test_agent a;
    a.agent().on("sync-throws", [](const message&, reply&) { throw std::runtime_error("boom"); });
    a.agent().on("sync-later", [&](const message&, reply& r) {
        ++later_calls;
        r.set_int(var_scope::txn, "later", 1);
    });
    a.agent().on_async("async-later", [&](const message&, async_reply r) {
        ++later_calls;
        r.set_int(var_scope::txn, "later", 2);
    });
    a.agent().on_async("async-ok",
                       [](const message&, async_reply r) { r.set_int(var_scope::txn, "y", 2); });
    a.agent().on_async("async-throws",
                       [](const message&, async_reply) { throw std::runtime_error("async boom"); });
    a.start();
    auto c = a.connect_ready();
    const std::vector<std::vector<message_spec>> frames{
        {{"sync-throws", {}}, {"sync-later", {}}},                        // fast path
        {{"sync-throws", {}}, {"async-later", {}}},                       // pending frame
        {{"async-ok", {}}, {"sync-throws", {}}, {"sync-later", {}}},      // pending frame
        {{"async-throws", {}}, {"sync-later", {}}, {"async-later", {}}},  // pending frame
    };
    std::uint64_t fid = 0;
    for (const auto& msgs : frames) {
        ++fid;
        INFO("frame " << fid);
        c.send_notify(1, fid, notify_payload(msgs));
        const auto ack = c.expect(ft::ack);
        CHECK(hex(ack.raw) == hex(noop_ack_bytes(1, fid)));
    }
    CHECK(later_calls.load() == 0);
    CHECK(a.metric("spoa_handler_exceptions_total") == 4);
    // Without a throw, the same handlers are called and answer.
    c.send_notify(1, 100,
                  notify_payload(std::vector<message_spec>{{"sync-later", {}}, {"async-ok", {}}}));
    CHECK(c.expect(ft::ack).actions() ==
          std::vector<owned_action>{set_txn("later", typed_value::int64(1)),
                                    set_txn("y", typed_value::int64(2))});
    CHECK(later_calls.load() == 1);
}

TEST_CASE("async: an ACK is never empty, an empty NOTIFY gets the noop ACK", "[async]") {
    test_agent a;
    a.agent().on("nothing", [](const message&, reply&) {});
    a.agent().on_async("nothing-async", [](const message&, async_reply r) { r.done(); });
    a.start();
    auto c = a.connect_ready();

    // Empty NOTIFY payload (HAProxy 3.1 to 3.3-dev6, protocol/README.md §10): LEN 7.
    c.send_raw("00 00 00 07 03 00 00 00 01 01 01");
    CHECK(hex(c.expect(ft::ack).raw) == hex(noop_ack_bytes(1, 1)));
    // A message nobody handles, a sync handler that sets nothing, an async one likewise.
    c.send_notify(1, 2, message_spec{"unknown", {}});
    CHECK(hex(c.expect(ft::ack).raw) == hex(noop_ack_bytes(1, 2)));
    c.send_notify(1, 3, message_spec{"nothing", {}});
    CHECK(hex(c.expect(ft::ack).raw) == hex(noop_ack_bytes(1, 3)));
    c.send_notify(1, 4, message_spec{"nothing-async", {}});
    CHECK(hex(c.expect(ft::ack).raw) == hex(noop_ack_bytes(1, 4)));
    // Exactly: 02 02 02 09 "spoa_noop".
    CHECK(hex(noop_ack_bytes(1, 4)) ==
          "00 00 00 14 67 00 00 00 01 01 04 02 02 02 09 73 70 6f 61 5f 6e 6f 6f 70");
}

TEST_CASE("async: the catch-all handlers receive unclaimed messages", "[async]") {
    SECTION("sync catch-all") {
        test_agent a;
        a.agent().on_any(
            [](const message& m, reply& r) { r.set_string(var_scope::txn, "name", m.name()); });
        a.start();
        auto c = a.connect_ready();
        c.send_notify(1, 1, message_spec{"whatever", {}});
        CHECK(c.expect(ft::ack).actions() ==
              std::vector<owned_action>{set_txn("name", typed_value::string("whatever"))});
    }
    SECTION("async catch-all") {
        test_agent a;
        a.agent().on_any_async([](const message& m, async_reply r) {
            r.set_string(var_scope::txn, "name", m.name());
            r.done();
        });
        a.start();
        auto c = a.connect_ready();
        c.send_notify(1, 1, message_spec{"other", {}});
        CHECK(c.expect(ft::ack).actions() ==
              std::vector<owned_action>{set_txn("name", typed_value::string("other"))});
    }
}

}  // namespace spoa::testing
