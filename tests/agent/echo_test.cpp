// The echo handler over loopback: typed values, nameless arguments, pipelining, out-of-order
// ACKs, stream-id 0.

#include <atomic>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <set>
#include <thread>

#include "agent_test_util.hpp"
#include "spoa/handlers/examples.hpp"

namespace spoa::testing {
namespace {

using protocol::var_scope;

/// Expected ACK frame bytes for `actions` (set-var/unset-var encoded by the codec).
std::vector<std::uint8_t> ack_bytes(std::uint64_t sid, std::uint64_t fid,
                                    const std::vector<owned_action>& actions) {
    protocol::byte_buffer b;
    for (const auto& a : actions) {
        if (a.type == protocol::action_type::set_var) {
            protocol::encode_set_var(b, a.scope, a.name, a.value.view());
        } else {
            protocol::encode_unset_var(b, a.scope, a.name);
        }
    }
    return encode_frame(static_cast<std::uint8_t>(ft::ack), fin, sid, fid, {b.data(), b.size()});
}

}  // namespace

TEST_CASE("echo: every typed value comes back as a txn set-var with the same value", "[echo]") {
    test_agent a;
    handlers::register_echo(a.agent());
    a.start();
    auto c = a.connect_ready();

    const std::string binary("\x00\x01\xfe\xff", 4);
    const std::string long_text(3000, 'x');  // 3-byte length varint
    const std::vector<protocol::argument> args = {
        {"n", typed_value::null()},
        {"t", typed_value::boolean(true)},
        {"f", typed_value::boolean(false)},
        {"i32", typed_value::int32(-5)},
        {"u32", typed_value::uint32(std::numeric_limits<std::uint32_t>::max())},
        {"i64", typed_value::int64(std::numeric_limits<std::int64_t>::min())},
        {"u64", typed_value::uint64(std::numeric_limits<std::uint64_t>::max())},
        {"ip4", typed_value::ipv4({192, 168, 1, 10})},
        {"ip6", typed_value::ipv6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})},
        {"s", typed_value::string("GET")},
        {"empty", typed_value::string("")},
        {"bin", typed_value::binary(binary)},
        {"long", typed_value::string(long_text)},
    };
    c.send_notify(3, 1, message_spec{"echo", args});
    const auto ack = c.expect(ft::ack);
    CHECK(ack.stream_id == 3);
    CHECK(ack.frame_id == 1);
    CHECK(ack.flags == fin);

    std::vector<owned_action> want;
    for (const auto& arg : args)
        want.push_back(set_txn(std::string(arg.name), arg.value));
    CHECK(ack.actions() == want);
    CHECK(hex(ack.raw) == hex(ack_bytes(3, 1, want)));
}

TEST_CASE("echo: nameless arguments become arg<position>, bad characters become _", "[echo]") {
    test_agent a;
    handlers::register_echo(a.agent());
    a.start();
    auto c = a.connect_ready();
    c.send_notify(7, 2,
                  message_spec{"echo",
                               {{"", typed_value::string("GET")},
                                {"path", typed_value::string("/login")},
                                {"", typed_value::int64(443)},
                                {"x-forwarded-for", typed_value::string("a")}}});
    const auto ack = c.expect(ft::ack);
    const std::vector<owned_action> want = {
        set_txn("arg0", typed_value::string("GET")),
        set_txn("path", typed_value::string("/login")),
        set_txn("arg2", typed_value::int64(443)),
        set_txn("x_forwarded_for", typed_value::string("a")),
    };
    CHECK(ack.actions() == want);
    CHECK(hex(ack.raw) == hex(ack_bytes(7, 2, want)));
}

TEST_CASE("echo: several messages in one NOTIFY are answered by one ACK, in order", "[echo]") {
    test_agent a;
    handlers::register_echo(a.agent());
    a.start();
    auto c = a.connect_ready();
    const std::vector<message_spec> msgs = {
        {"echo", {{"a", typed_value::int32(1)}}},
        {"not-handled", {{"z", typed_value::int32(9)}}},
        {"echo", {{"b", typed_value::int32(2)}}},
    };
    c.send_notify(1, 1, notify_payload(msgs));
    const auto ack = c.expect(ft::ack);
    CHECK(ack.actions() == std::vector<owned_action>{set_txn("a", typed_value::int32(1)),
                                                     set_txn("b", typed_value::int32(2))});
    CHECK(c.silent_for(100ms));
}

TEST_CASE("echo: 32 pipelined NOTIFYs are all answered with matching ids", "[echo]") {
    test_agent a;
    handlers::register_echo(a.agent());
    a.start();
    auto c = a.connect_ready();
    std::vector<std::uint8_t> burst;
    std::vector<std::string> values;
    for (int i = 1; i <= 32; ++i)
        values.push_back("value-" + std::to_string(i));
    for (int i = 1; i <= 32; ++i) {
        // 3.x shape: odd stream-ids, frame-id 1.
        const auto f = encode_frame(
            3, fin, static_cast<std::uint64_t>(2 * i - 1), 1,
            notify_payload(message_spec{"echo", {{"v", typed_value::string(values[i - 1])}}}));
        burst.insert(burst.end(), f.begin(), f.end());
    }
    c.send_raw(burst);  // all 32 in flight at once
    std::set<std::uint64_t> seen;
    for (int n = 0; n < 32; ++n) {
        const auto ack = c.expect(ft::ack);
        REQUIRE(ack.stream_id % 2 == 1);
        REQUIRE(ack.stream_id <= 63);
        CHECK(ack.frame_id == 1);
        const int i = static_cast<int>(ack.stream_id + 1) / 2;
        CHECK(ack.actions() ==
              std::vector<owned_action>{set_txn("v", typed_value::string(values[i - 1]))});
        CHECK(seen.insert(ack.stream_id).second);
    }
    CHECK(seen.size() == 32);
    CHECK(c.silent_for(100ms));
    CHECK(a.metric("spoa_frames_received_total{type=\"NOTIFY\"}") == 32);
    CHECK(a.metric("spoa_frames_sent_total{type=\"ACK\"}") == 32);
}

TEST_CASE("echo: async completions in reverse order from another thread give out-of-order ACKs",
          "[echo][async]") {
    struct held {
        std::string value;
        async_reply reply;
    };
    std::mutex mutex;
    std::condition_variable cv;
    std::deque<held> pending;

    test_agent a;
    a.agent().on_async("echo", [&](const message& m, async_reply r) {
        std::lock_guard lock(mutex);
        pending.push_back({std::string(m.get_string("v")), std::move(r)});
        cv.notify_all();
    });
    a.start();
    auto c = a.connect_ready();
    std::vector<std::uint8_t> burst;
    for (std::uint64_t fid = 1; fid <= 32; ++fid) {
        const std::string v = "v" + std::to_string(fid);
        const auto f = encode_frame(3, fin, 5, fid, notify_payload(one_arg("echo", v)));
        burst.insert(burst.end(), f.begin(), f.end());
    }
    c.send_raw(burst);

    std::jthread completer([&] {
        std::unique_lock lock(mutex);
        cv.wait_for(lock, 3s, [&] { return pending.size() == 32; });
        while (!pending.empty()) {
            held h = std::move(pending.back());
            pending.pop_back();
            h.reply.set_string(var_scope::txn, "v", h.value);
            h.reply.done();
        }
    });
    std::vector<std::uint64_t> order;
    for (int n = 0; n < 32; ++n) {
        const auto ack = c.expect(ft::ack);
        CHECK(ack.stream_id == 5);
        CHECK(ack.actions() == std::vector<owned_action>{set_txn(
                                   "v", typed_value::string("v" + std::to_string(ack.frame_id)))});
        order.push_back(ack.frame_id);
    }
    completer.join();
    std::vector<std::uint64_t> reversed;
    for (std::uint64_t fid = 32; fid >= 1; --fid)
        reversed.push_back(fid);
    CHECK(order == reversed);
}

TEST_CASE("echo: stream-id 0 and the largest ids are copied verbatim", "[echo]") {
    test_agent a;
    handlers::register_echo(a.agent());
    a.start();
    auto c = a.connect_ready(hello_options::v2_6());
    // HAProxy 2.6: the first stream after start has stream-id 0 (protocol/README.md §8).
    c.send_notify(0, 1, one_arg("echo", "first"));
    auto ack = c.expect(ft::ack);
    const std::vector<owned_action> want{set_txn("v", typed_value::string("first"))};
    CHECK(hex(ack.raw) == hex(ack_bytes(0, 1, want)));

    const std::uint64_t big = std::numeric_limits<std::uint64_t>::max();
    c.send_notify(big, big - 1, one_arg("echo", "big"));
    ack = c.expect(ft::ack);
    CHECK(ack.stream_id == big);
    CHECK(ack.frame_id == big - 1);
    // NOTIFY with frame-id 0 too: the agent treats the pair as opaque.
    c.send_notify(0, 0, one_arg("echo", "zero"));
    ack = c.expect(ft::ack);
    CHECK(hex(ack.raw) == hex(ack_bytes(0, 0, {set_txn("v", typed_value::string("zero"))})));
}

TEST_CASE("echo: an ACK never exceeds the negotiated max-frame-size", "[echo]") {
    test_agent a;
    const std::string big(300, 'b');
    // Catch2 assertions are not thread-safe: handlers record, the test thread checks.
    std::atomic<int> accepted{0};
    std::atomic<int> refused{0};
    auto fill = [&](reply& r) {
        accepted += r.set_string(var_scope::txn, "small", "ok") ? 1 : 0;
        refused += r.set_string(var_scope::txn, "big", big) ? 0 : 1;  // would not fit in 256
    };
    a.agent().on("big", [&](const message&, reply& r) { fill(r); });
    a.agent().on_async("big-async", [&](const message&, async_reply r) { fill(r); });
    a.start();
    hello_options h;
    h.max_frame_size = 256;
    auto c = a.connect_ready(h);
    const std::vector<owned_action> want{set_txn("small", typed_value::string("ok"))};
    c.send_notify(1, 1, message_spec{"big", {}});
    auto ack = c.expect(ft::ack);
    CHECK(ack.raw.size() <= 4 + 256);
    CHECK(ack.actions() == want);
    c.send_notify(1, 2, message_spec{"big-async", {}});
    ack = c.expect(ft::ack);
    CHECK(ack.raw.size() <= 4 + 256);
    CHECK(ack.actions() == want);
    CHECK(accepted == 2);
    CHECK(refused == 2);
    CHECK(a.metric("spoa_actions_refused_total") == 2);
}

}  // namespace spoa::testing
