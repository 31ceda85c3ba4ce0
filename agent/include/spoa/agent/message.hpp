#pragma once
/// The read-only view of one SPOE message that a handler receives.
///
/// Lifetime: a message and everything it returns (names, strings, binaries) view the
/// connection's read buffer and the frame being handled. They are valid only during the handler
/// call; an async handler copies the values it needs (std::string, ip_address...) before
/// returning. The type is neither copyable nor movable, so a message captured by value in a
/// lambda that outlives the call does not compile.

#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "spoa/agent/ip_address.hpp"
#include "spoa/protocol/notify.hpp"
#include "spoa/protocol/typed_value.hpp"

namespace spoa {

using protocol::data_type;
using protocol::typed_value;

/// Thrown by the typed accessors when an argument is missing or of another type. Handlers may
/// let it escape: the agent catches it, counts it and still answers the frame.
class argument_error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// Where a message came from.
struct message_origin {
    std::uint64_t connection_id = 0;
    std::string_view engine_id;  ///< HAProxy's engine-id for this connection (may be empty)
    std::uint64_t stream_id = 0;
    std::uint64_t frame_id = 0;
    /// When the agent started on this frame: CLOCK_MONOTONIC (std::chrono::steady_clock) in
    /// nanoseconds; 0 when unknown. Handlers that time themselves start from here instead of
    /// reading the clock again.
    std::uint64_t received_ns = 0;
};

class message {
  public:
    message(const protocol::message_view& view, const message_origin& origin) noexcept
        : view_(view), origin_(origin) {}
    message(const message&) = delete;
    message& operator=(const message&) = delete;

    [[nodiscard]] std::string_view name() const noexcept { return view_.name; }
    [[nodiscard]] std::size_t size() const noexcept { return view_.args.size(); }
    [[nodiscard]] std::span<const protocol::argument> args() const noexcept { return view_.args; }
    /// Argument by position (nameless arguments are only reachable this way).
    /// Throws argument_error when out of range.
    [[nodiscard]] const protocol::argument& at(std::size_t index) const;
    /// First argument with this name, or nullptr.
    [[nodiscard]] const typed_value* find(std::string_view name) const noexcept;
    [[nodiscard]] bool has(std::string_view name) const noexcept { return find(name) != nullptr; }

    // Typed accessors. Each throws argument_error naming the message, the argument, the type it
    // has and the type wanted when the argument is missing or of another type. A NULL value
    // (HAProxy's "fetch failed") counts as missing.
    [[nodiscard]] std::string_view get_string(std::string_view name) const;
    /// STRING or BINARY.
    [[nodiscard]] std::string_view get_bytes(std::string_view name) const;
    /// Any of the four integer types, as signed 64 bits.
    [[nodiscard]] std::int64_t get_int(std::string_view name) const;
    [[nodiscard]] bool get_bool(std::string_view name) const;
    /// IPV4 or IPV6; a STRING holding an address is accepted too.
    [[nodiscard]] ip_address get_ip(std::string_view name) const;

    // Non-throwing variants: nullopt when missing, NULL or of another type.
    [[nodiscard]] std::optional<std::string_view> try_string(std::string_view name) const noexcept;
    [[nodiscard]] std::optional<std::string_view> try_bytes(std::string_view name) const noexcept;
    [[nodiscard]] std::optional<std::int64_t> try_int(std::string_view name) const noexcept;
    [[nodiscard]] std::optional<bool> try_bool(std::string_view name) const noexcept;
    [[nodiscard]] std::optional<ip_address> try_ip(std::string_view name) const noexcept;

    [[nodiscard]] const message_origin& origin() const noexcept { return origin_; }
    [[nodiscard]] std::string_view engine_id() const noexcept { return origin_.engine_id; }
    [[nodiscard]] std::uint64_t stream_id() const noexcept { return origin_.stream_id; }
    [[nodiscard]] std::uint64_t frame_id() const noexcept { return origin_.frame_id; }
    [[nodiscard]] std::uint64_t received_ns() const noexcept { return origin_.received_ns; }

  private:
    [[nodiscard]] const typed_value& require(std::string_view name, std::string_view wanted) const;
    [[noreturn]] void wrong_type(std::string_view name, const typed_value& v,
                                 std::string_view wanted) const;

    const protocol::message_view& view_;
    const message_origin& origin_;
};

}  // namespace spoa
