#pragma once
/// Internal decode/validation errors and their mapping onto SPOP status codes.
///
/// Every error here is fatal for the connection that produced it: the agent answers with an
/// AGENT-DISCONNECT carrying `to_status(error)` and closes (protocol/README.md §7.1).

#include <cstdint>
#include <string_view>

#include "spoa/protocol/status_code.hpp"

namespace spoa::protocol {

enum class error : std::uint8_t {
    none = 0,
    truncated,           ///< a field runs past the end of its frame
    varint_too_long,     ///< more than 10 bytes
    varint_overflow,     ///< value above 2^64-1
    frame_too_short,     ///< LEN below the 7-byte minimum
    frame_too_big,       ///< LEN above the caller's limit
    unknown_frame_type,  ///< type byte not in protocol/README.md §2
    bad_flags,           ///< ABORT without FIN
    nonzero_ids,         ///< HELLO/DISCONNECT with stream-id or frame-id != 0
    unexpected_frame,    ///< frame type not allowed in the current state
    reserved_data_type,  ///< typed data 10..15
    empty_key,           ///< KV-LIST key of length 0
    bad_action,          ///< unknown action type or wrong nb-args in an ACK
    bad_scope,           ///< scope byte above 4
    missing_version,     ///< HELLO without supported-versions
    missing_max_frame_size,
    missing_capabilities,
    unsupported_version,          ///< no 2.x in supported-versions
    bad_max_frame_size,           ///< max-frame-size below 256 or not an integer
    fragmentation_not_supported,  ///< FIN-less frame when we did not announce fragmentation
    interlaced_fragments,    ///< another frame arrived while a fragmented NOTIFY was in progress
    fragment_without_start,  ///< UNSET continuation with nothing in progress
    reassembly_too_big,      ///< reassembled payload above the cap
    bad_status_code,         ///< DISCONNECT status-code missing or not an integer
    message_too_long,        ///< DISCONNECT message above 255 bytes
};

/// The SPOP status the agent sends when it hits `e` (protocol/README.md §7.2).
[[nodiscard]] status_code to_status(error e) noexcept;

/// A short, stable description for logs.
[[nodiscard]] std::string_view to_string(error e) noexcept;

}  // namespace spoa::protocol
