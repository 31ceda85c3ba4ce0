// reply::defer(): a sync handler that turns its answer into an async one during the call.
// The frame's ACK keeps the actions set before the defer, in message order, and gets the
// deferred reply's actions when it completes (or at the deadline, without them).

#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

#include "agent_test_util.hpp"

namespace spoa::testing {
namespace {

using protocol::var_scope;
using clock = std::chrono::steady_clock;

/// Sets before=1, then defers when the message has argument wait=true, else answers now=1.
void register_sometimes_deferring(test_agent& a, reply_box& box) {
    a.agent().on("maybe", [&box](const message& m, reply& r) {
        r.set_int(var_scope::txn, "before", 1);
        if (!m.try_bool("wait").value_or(false)) {
            r.set_int(var_scope::txn, "now", 1);
            return;
        }
        async_reply later = r.defer();
        // The deferring reply keeps writing into the frame's answer.
        r.set_int(var_scope::txn, "after_defer", 2);
        box.put(std::move(later), std::string(m.try_string("tag").value_or("")));
    });
}

/// `tag` must outlive the spec (a literal): arguments view their values.
message_spec maybe(bool wait, std::string_view tag = {}) {
    message_spec m{"maybe", {{"wait", typed_value::boolean(wait)}}};
    if (!tag.empty()) m.args.push_back({"tag", typed_value::string(tag)});
    return m;
}

}  // namespace

TEST_CASE("defer: a sync handler answers at once until it defers; the ACK waits for done()",
          "[defer]") {
    reply_box box;
    test_agent a;
    register_sometimes_deferring(a, box);
    a.agent().on("plain", [](const message&, reply& r) { r.set_int(var_scope::txn, "x", 7); });
    a.start();
    auto c = a.connect_ready();

    // Not deferring: an ordinary sync answer.
    c.send_notify(1, 1, maybe(false));
    CHECK(c.expect(ft::ack).actions() ==
          std::vector<owned_action>{set_txn("before", typed_value::int64(1)),
                                    set_txn("now", typed_value::int64(1))});
    CHECK(box.total() == 0);

    // Deferring between two sync messages: nothing goes out until the reply completes, and
    // the ACK holds every action in message order, the deferred reply's last.
    c.send_notify(
        1, 2, notify_payload(std::vector<message_spec>{{"plain", {}}, maybe(true), {"plain", {}}}));
    REQUIRE(box.wait_for(1));
    CHECK(c.silent_for(100ms));
    CHECK(a.metric("spoa_inflight_frames") == 1);
    std::jthread([&] {
        auto h = box.take();
        h.reply.set_string(var_scope::sess, "late", "yes");
        h.reply.done();
    }).join();
    const auto ack = c.expect(ft::ack);
    CHECK(ack.frame_id == 2);
    CHECK(ack.actions() ==
          std::vector<owned_action>{
              set_txn("x", typed_value::int64(7)), set_txn("before", typed_value::int64(1)),
              set_txn("after_defer", typed_value::int64(2)), set_txn("x", typed_value::int64(7)),
              set_var(var_scope::sess, "late", typed_value::string("yes"))});
    CHECK(a.wait_metric("spoa_inflight_frames", 0));
}

TEST_CASE("defer: a deferred frame does not hold back the frames behind it", "[defer]") {
    reply_box box;
    test_agent a;
    register_sometimes_deferring(a, box);
    a.start();
    auto c = a.connect_ready();

    c.send_notify(1, 1, maybe(true, "first"));
    c.send_notify(2, 1, maybe(false));
    c.send_notify(3, 1, maybe(true, "third"));
    const auto quick = c.expect(ft::ack);
    CHECK(quick.stream_id == 2);
    REQUIRE(box.wait_for(2));
    auto first = box.take();
    auto third = box.take();
    CHECK(first.tag == "first");
    CHECK(third.tag == "third");
    third.reply.set_int(var_scope::txn, "n", 3);
    third.reply.done();
    CHECK(c.expect(ft::ack).stream_id == 3);
    first.reply.set_int(var_scope::txn, "n", 1);
    first.reply.done();
    const auto last = c.expect(ft::ack);
    CHECK(last.stream_id == 1);
    CHECK(last.actions().back() == set_txn("n", typed_value::int64(1)));
}

TEST_CASE("defer: completed during the call, the frame is answered in the same pass", "[defer]") {
    test_agent a;
    a.agent().on("self", [](const message&, reply& r) {
        r.set_int(var_scope::txn, "a", 1);
        async_reply later = r.defer();
        later.set_int(var_scope::txn, "b", 2);
        later.done();
    });
    a.start();
    auto c = a.connect_ready();
    c.send_notify(4, 4, message_spec{"self", {}});
    CHECK(c.expect(ft::ack).actions() ==
          std::vector<owned_action>{set_txn("a", typed_value::int64(1)),
                                    set_txn("b", typed_value::int64(2))});
    CHECK(a.wait_metric("spoa_inflight_frames", 0));
}

TEST_CASE("defer: beside an on_async handler in the same frame", "[defer]") {
    reply_box box;
    test_agent a;
    register_sometimes_deferring(a, box);
    a.agent().on_async("async",
                       [&](const message&, async_reply r) { box.put(std::move(r), "async"); });
    a.start();
    auto c = a.connect_ready();
    c.send_notify(
        5, 5, notify_payload(std::vector<message_spec>{{"async", {}}, maybe(true, "deferred")}));
    REQUIRE(box.wait_for(2));
    auto first = box.take();
    auto second = box.take();
    CHECK(first.tag == "async");
    CHECK(second.tag == "deferred");
    second.reply.set_int(var_scope::txn, "d", 1);
    second.reply.done();
    CHECK(c.silent_for(100ms));  // the async handler is still out
    first.reply.set_int(var_scope::txn, "a", 1);
    first.reply.done();
    CHECK(c.expect(ft::ack).actions() ==
          std::vector<owned_action>{set_txn("before", typed_value::int64(1)),
                                    set_txn("after_defer", typed_value::int64(2)),
                                    set_txn("d", typed_value::int64(1)),
                                    set_txn("a", typed_value::int64(1))});
}

TEST_CASE("defer: at the deadline the ACK carries what was set before and at the defer",
          "[defer]") {
    reply_box box;
    auto cfg = test_config();
    cfg.handler_deadline = 300ms;
    test_agent a(cfg);
    register_sometimes_deferring(a, box);
    a.start();
    auto c = a.connect_ready();
    const auto sent = clock::now();
    c.send_notify(6, 6, maybe(true));
    REQUIRE(box.wait_for(1));
    auto h = box.take();
    h.reply.set_int(var_scope::txn, "never", 1);
    const auto ack = c.expect(ft::ack);
    CHECK(clock::now() - sent >= 250ms);
    CHECK(ack.actions() ==
          std::vector<owned_action>{set_txn("before", typed_value::int64(1)),
                                    set_txn("after_defer", typed_value::int64(2))});
    CHECK(h.reply.abandoned());
    h.reply.done();
    CHECK(a.wait_metric("spoa_async_late_total", 1));
    CHECK(a.metric("spoa_limit_events_total{limit=\"handler_deadline\"}") == 1);
}

TEST_CASE("defer: a handler that defers and then throws gets the noop ACK", "[defer]") {
    reply_box box;
    test_agent a;
    a.agent().on("drops", [](const message&, reply& r) {
        r.set_int(var_scope::txn, "a", 1);
        async_reply later = r.defer();  // destroyed by the throw: completes at once
        later.set_int(var_scope::txn, "b", 2);
        throw std::runtime_error("after defer");
    });
    a.agent().on("parks", [&](const message&, reply& r) {
        box.put(r.defer());
        throw std::runtime_error("after parking");
    });
    a.start();
    auto c = a.connect_ready();
    c.send_notify(1, 1, message_spec{"drops", {}});
    CHECK(hex(c.expect(ft::ack).raw) == hex(noop_ack_bytes(1, 1)));
    c.send_notify(1, 2, message_spec{"parks", {}});
    REQUIRE(box.wait_for(1));
    CHECK(c.silent_for(100ms));
    box.take().reply.done();
    CHECK(hex(c.expect(ft::ack).raw) == hex(noop_ack_bytes(1, 2)));
    CHECK(a.metric("spoa_handler_exceptions_total") == 2);
}

TEST_CASE("defer: only once, only from the reply the agent gave, only to sync handlers",
          "[defer]") {
    reply_box box;
    test_agent a;
    std::atomic<int> refusals{0};
    a.agent().on("twice", [&](const message&, reply& r) {
        box.put(r.defer());
        try {
            (void)r.defer();
        } catch (const std::logic_error&) {
            ++refusals;
        }
    });
    a.agent().on_async("async", [&](const message&, async_reply r) {
        try {
            (void)r.defer();
        } catch (const std::logic_error&) {
            ++refusals;
        }
        r.set_int(var_scope::txn, "ok", 1);
    });
    a.start();
    auto c = a.connect_ready();
    c.send_notify(1, 1, message_spec{"twice", {}});
    REQUIRE(box.wait_for(1));
    box.take().reply.done();
    CHECK(hex(c.expect(ft::ack).raw) == hex(noop_ack_bytes(1, 1)));
    c.send_notify(1, 2, message_spec{"async", {}});
    CHECK(c.expect(ft::ack).actions() ==
          std::vector<owned_action>{set_txn("ok", typed_value::int64(1))});
    CHECK(refusals == 2);

    protocol::byte_buffer out;
    reply by_hand(out, 1024);
    CHECK_THROWS_AS((void)by_hand.defer(), std::logic_error);
}

TEST_CASE("defer: a deferred frame whose connection closed is dropped and counted", "[defer]") {
    reply_box box;
    test_agent a;
    register_sometimes_deferring(a, box);
    a.start();
    {
        auto c = a.connect_ready();
        c.send_notify(1, 1, maybe(true));
        REQUIRE(box.wait_for(1));
        c.close();
    }
    REQUIRE(a.wait_metric("spoa_connections_active", 0));
    CHECK(a.metric("spoa_inflight_frames") == 0);
    std::jthread([&] {
        auto h = box.take();
        CHECK(h.reply.abandoned());
        h.reply.done();
    }).join();
    CHECK(a.wait_metric("spoa_async_late_total", 1));
    auto d = a.connect_ready();
    d.send_notify(2, 2, maybe(false));
    CHECK(d.expect(ft::ack).stream_id == 2);
}

TEST_CASE("defer: a handler completing an earlier frame's reply during its own call", "[defer]") {
    // Both run on the loop thread: the earlier frame's ACK must not land inside the ACK being
    // written for the current frame.
    std::optional<async_reply> parked;
    test_agent a;
    a.agent().on("park", [&](const message&, reply& r) {
        r.set_int(var_scope::txn, "parked", 1);
        parked.emplace(r.defer());
    });
    a.agent().on("release", [&](const message&, reply& r) {
        r.set_int(var_scope::txn, "x", 1);
        if (parked) {
            parked->set_int(var_scope::txn, "released", 1);
            parked->done();
            parked.reset();
        }
        r.set_int(var_scope::txn, "y", 2);
    });
    a.start();
    auto c = a.connect_ready();
    c.send_notify(1, 1, message_spec{"park", {}});
    CHECK(c.silent_for(100ms));
    c.send_notify(2, 1, message_spec{"release", {}});
    const auto first = c.expect(ft::ack);
    const auto second = c.expect(ft::ack);
    CHECK(first.stream_id == 2);
    CHECK(first.actions() == std::vector<owned_action>{set_txn("x", typed_value::int64(1)),
                                                       set_txn("y", typed_value::int64(2))});
    CHECK(second.stream_id == 1);
    CHECK(second.actions() ==
          std::vector<owned_action>{set_txn("parked", typed_value::int64(1)),
                                    set_txn("released", typed_value::int64(1))});
    // The same when the releasing frame itself defers after releasing.
    c.send_notify(3, 1, message_spec{"park", {}});
    CHECK(c.silent_for(100ms));
    c.send_notify(4, 1, notify_payload(std::vector<message_spec>{{"release", {}}, {"park", {}}}));
    const auto third = c.expect(ft::ack);
    CHECK(third.stream_id == 3);
    CHECK(c.silent_for(100ms));  // stream 4 waits on its own parked reply
    c.send_notify(5, 1, message_spec{"release", {}});
    std::set<std::uint64_t> streams;
    for (int i = 0; i < 2; ++i)
        streams.insert(c.expect(ft::ack).stream_id);
    CHECK(streams == std::set<std::uint64_t>{4, 5});
}

}  // namespace spoa::testing
