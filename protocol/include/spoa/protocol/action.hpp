#pragma once
/// ACK payloads (protocol/README.md §5.3): set-var and unset-var actions with a scope.

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/typed_value.hpp"

namespace spoa::protocol {

enum class var_scope : std::uint8_t {
    proc = 0,
    sess = 1,
    txn = 2,
    req = 3,
    res = 4,
};

[[nodiscard]] std::string_view to_string(var_scope scope) noexcept;

enum class action_type : std::uint8_t {
    set_var = 1,
    unset_var = 2,
};

/// Appends one set-var action: 01 03 scope name value.
void encode_set_var(byte_buffer& out, var_scope scope, std::string_view name,
                    const typed_value& value);
/// Appends one set-var action if the buffer stays within `limit` bytes; false (nothing
/// written) otherwise. The exact size is only computed when the action is near the limit.
[[nodiscard]] bool encode_set_var_within(byte_buffer& out, std::size_t limit, var_scope scope,
                                         std::string_view name, const typed_value& value);
/// Appends one unset-var action: 02 02 scope name.
void encode_unset_var(byte_buffer& out, var_scope scope, std::string_view name);

/// Bytes an action takes on the wire.
[[nodiscard]] std::size_t set_var_size(std::string_view name, const typed_value& value) noexcept;
[[nodiscard]] std::size_t unset_var_size(std::string_view name) noexcept;

/// A decoded action (views into the payload).
struct action {
    action_type type = action_type::set_var;
    var_scope scope = var_scope::txn;
    std::string_view name;
    typed_value value;  ///< null for unset-var
};

/// Decodes a whole ACK payload into `out` (cleared first). Used by clients and tests.
/// Errors: bad_action, bad_scope, truncated, varint_*, reserved_data_type.
[[nodiscard]] error decode_actions(bytes_view payload, std::vector<action>& out);

/// Writes one ACK frame (always FIN, never fragmented: HAProxy refuses fragmented ACKs,
/// protocol/README.md §9) and keeps it within the negotiated max-frame-size by refusing any action
/// that would not fit, so what was already written stays a valid frame.
class ack_writer {
  public:
    ack_writer(byte_buffer& out, std::uint64_t stream_id, std::uint64_t frame_id,
               std::uint32_t max_frame_size);

    /// Each returns false (and writes nothing) if the action would not fit.
    bool set_var(var_scope scope, std::string_view name, const typed_value& value);
    bool unset_var(var_scope scope, std::string_view name);
    /// Appends actions already encoded elsewhere (e.g. by an async handler); all or nothing.
    bool append_encoded(bytes_view actions);

    [[nodiscard]] std::size_t action_count() const noexcept { return actions_; }
    [[nodiscard]] std::size_t dropped_count() const noexcept { return dropped_; }
    /// Payload bytes written so far.
    [[nodiscard]] std::size_t payload_size() const noexcept;
    /// The actions written so far; valid until the buffer is next written to.
    [[nodiscard]] bytes_view payload() const noexcept {
        return writer_.buffer().view().subspan(payload_start_);
    }
    /// Drops every action written so far (keeps the header).
    void reset_actions() noexcept;
    /// Patches the length; the frame is complete in the buffer afterwards.
    void finish() noexcept;

  private:
    [[nodiscard]] bool fits(std::size_t n) noexcept;

    frame_writer writer_;
    std::size_t payload_start_ = 0;
    std::uint32_t max_frame_size_;
    std::size_t actions_ = 0;
    std::size_t dropped_ = 0;
};

}  // namespace spoa::protocol
