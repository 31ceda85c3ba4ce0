#pragma once
/// What a handler answers: set-var / unset-var actions in any of the five scopes.

#include <atomic>
#include <cstdint>
#include <string_view>

#include "spoa/agent/ip_address.hpp"
#include "spoa/protocol/action.hpp"
#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/typed_value.hpp"

namespace spoa {

using protocol::typed_value;
using protocol::var_scope;

class async_reply;

namespace detail {
class async_state;
class deferral;
class worker;
}  // namespace detail

/// Appends actions to the ACK being built. An action that would make the ACK larger than the
/// negotiated max-frame-size is refused (HAProxy cannot receive a fragmented ACK,
/// protocol/README.md §9); so is a name HAProxy would reject (only [A-Za-z0-9_.] allowed,
/// protocol/README.md §5.3).
/// Every setter returns false when it refused the action.
class reply {
  public:
    /// A reply writing into `out` until it holds `limit` bytes (e.g. to test a handler alone);
    /// such a reply cannot defer().
    reply(protocol::byte_buffer& out, std::size_t limit) noexcept : out_(&out), limit_(limit) {}
    reply(const reply&) = delete;
    reply& operator=(const reply&) = delete;

    bool set(var_scope scope, std::string_view name, const typed_value& value);
    bool set_string(var_scope scope, std::string_view name, std::string_view value) {
        return set(scope, name, typed_value::string(value));
    }
    bool set_binary(var_scope scope, std::string_view name, std::string_view value) {
        return set(scope, name, typed_value::binary(value));
    }
    bool set_int(var_scope scope, std::string_view name, std::int64_t value) {
        return set(scope, name, typed_value::int64(value));
    }
    bool set_bool(var_scope scope, std::string_view name, bool value) {
        return set(scope, name, typed_value::boolean(value));
    }
    bool set_ip(var_scope scope, std::string_view name, const ip_address& addr);
    bool unset(var_scope scope, std::string_view name);
    /// Appends `actions` set-var/unset-var actions encoded beforehand with
    /// protocol::encode_set_var / encode_unset_var (names already checked with valid_name):
    /// a handler that gives the same answer often encodes it once. All or nothing: refused
    /// (false, counted as `actions` refusals) if the ACK would exceed the frame size.
    bool append_encoded(protocol::bytes_view encoded, std::size_t actions);

    /// Turns the answer of a sync handler into an async one, during the handler's call: for a
    /// handler that answers most messages at once (e.g. from a cache) and only sometimes has to
    /// wait. Such a handler is registered with on() and costs what a sync handler costs until it
    /// defers; an on_async() handler pays for an async_reply on every message. The actions set
    /// so far stay in the answer; later ones go to the returned async_reply, which completes the
    /// frame like an async handler's. Once per call; std::logic_error on any other reply (an
    /// async_reply, a reply made by hand, a second call).
    [[nodiscard]] async_reply defer();

    /// Actions written through this reply.
    [[nodiscard]] std::size_t count() const noexcept { return count_; }
    /// Actions refused (too big or bad name).
    [[nodiscard]] std::size_t refused() const noexcept { return refused_; }

    /// True when `name` is a name HAProxy accepts for a variable.
    [[nodiscard]] static bool valid_name(std::string_view name) noexcept;

  protected:
    reply() noexcept = default;
    /// A reply whose handler may defer(): only the agent makes these, for sync handlers.
    reply(protocol::byte_buffer& out, std::size_t limit, detail::deferral* deferral) noexcept
        : out_(&out), limit_(limit), deferral_(deferral) {}
    void rebind(protocol::byte_buffer* out, std::size_t limit) noexcept {
        out_ = out;
        limit_ = limit;
    }

  private:
    friend class detail::worker;

    protocol::byte_buffer* out_ = nullptr;
    std::size_t limit_ = 0;  ///< the buffer may not grow past this size
    std::size_t count_ = 0;
    std::size_t refused_ = 0;
    detail::deferral* deferral_ = nullptr;  ///< set by the agent for sync handlers
};

/// The one-shot completion an async handler receives. Set variables on it, then call done()
/// from any thread: the ACK is written by the connection's loop. If the frame was already
/// answered (the deadline passed) or the connection is gone, done() quietly does nothing.
/// Destroying an async_reply without calling done() completes it with what it holds.
class async_reply : public reply {
  public:
    async_reply(async_reply&& other) noexcept;
    async_reply& operator=(async_reply&&) = delete;
    ~async_reply();

    /// Hands the actions to the connection's loop. Idempotent; thread-safe with respect to the
    /// loop (one thread at a time may use a given async_reply).
    void done() noexcept;
    /// True once the agent no longer needs this answer (deadline passed, connection closed or
    /// agent stopped): a handler may skip expensive work.
    [[nodiscard]] bool abandoned() const noexcept;

  private:
    // Only the agent makes them, around its own completion state.
    friend class reply;
    friend class detail::worker;
    explicit async_reply(detail::async_state* state) noexcept;

    detail::async_state* state_ = nullptr;
};

}  // namespace spoa
