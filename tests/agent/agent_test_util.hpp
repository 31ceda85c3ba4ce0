#pragma once
// Shared bits of the agent loopback tests.

#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include "spoa/agent/agent.hpp"
#include "spoa/protocol/action.hpp"
#include "spoa/testing/agent_fixture.hpp"
#include "spoa/testing/fake_haproxy.hpp"

namespace Catch {
template <>
struct StringMaker<spoa::testing::owned_value> {
    static std::string convert(const spoa::testing::owned_value& v) { return v.to_string(); }
};
template <>
struct StringMaker<spoa::testing::owned_action> {
    static std::string convert(const spoa::testing::owned_action& a) { return a.to_string(); }
};
template <>
struct StringMaker<spoa::testing::close_kind> {
    static std::string convert(spoa::testing::close_kind k) {
        return std::string(spoa::testing::to_string(k));
    }
};
}  // namespace Catch

namespace spoa::testing {

using protocol::frame_flags::abort;
using protocol::frame_flags::fin;
using ft = protocol::frame_type;
using protocol::typed_value;

/// set-var(scope.name = value)
inline owned_action set_var(protocol::var_scope scope, std::string name, const typed_value& v) {
    return {protocol::action_type::set_var, scope, std::move(name), owned_value::from(v)};
}
inline owned_action set_txn(std::string name, const typed_value& v) {
    return set_var(protocol::var_scope::txn, std::move(name), v);
}
/// The harmless unset-var the agent puts in an ACK that has nothing else (protocol/README.md §10).
inline owned_action noop_action() {
    return {protocol::action_type::unset_var, protocol::var_scope::txn, "spoa_noop", {}};
}

/// The exact bytes of an ACK carrying only the noop action.
inline std::vector<std::uint8_t> noop_ack_bytes(std::uint64_t sid, std::uint64_t fid) {
    protocol::byte_buffer b;
    protocol::encode_unset_var(b, protocol::var_scope::txn, "spoa_noop");
    return encode_frame(static_cast<std::uint8_t>(ft::ack), fin, sid, fid, {b.data(), b.size()});
}

/// A message with one STRING argument "v".
inline message_spec one_arg(std::string name, std::string_view value) {
    return {std::move(name), {{"v", typed_value::string(value)}}};
}

/// An async reply parked by a handler (loop thread) for the test thread to complete.
struct held_reply {
    std::string tag;
    async_reply reply;
};

/// Thread-safe hand-over of async replies from handlers to the test thread.
class reply_box {
  public:
    void put(async_reply r, std::string tag = {}) {
        std::lock_guard lock(mutex_);
        held_.push_back({std::move(tag), std::move(r)});
        ++total_;
        cv_.notify_all();
    }
    /// Waits until at least `n` replies are parked; false on timeout.
    [[nodiscard]] bool wait_for(std::size_t n, milliseconds timeout = default_timeout) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, timeout, [&] { return held_.size() >= n; });
    }
    /// The oldest parked reply (wait_for first).
    [[nodiscard]] held_reply take() {
        std::lock_guard lock(mutex_);
        if (held_.empty()) throw std::logic_error("reply_box: nothing parked");
        held_reply r = std::move(held_.front());
        held_.pop_front();
        return r;
    }
    /// Replies parked so far, taken or not.
    [[nodiscard]] std::size_t total() {
        std::lock_guard lock(mutex_);
        return total_;
    }

  private:
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<held_reply> held_;
    std::size_t total_ = 0;
};

}  // namespace spoa::testing
