#pragma once
/// DISCONNECT frames (protocol/README.md §7): status-code and message.

#include <cstdint>
#include <string_view>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/error.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/status_code.hpp"

namespace spoa::protocol {

/// HAProxy 2.6 ignores an AGENT-DISCONNECT whose message is longer (protocol/README.md §7.1).
inline constexpr std::size_t max_disconnect_message = 255;

struct disconnect_info {
    std::uint32_t status = 0;
    std::string_view message;  ///< views the payload
};

/// Parses a DISCONNECT payload. Errors: bad_status_code (missing or not an integer),
/// message_too_long, plus KV decoding errors. A missing message is allowed.
[[nodiscard]] error parse_disconnect(bytes_view payload, disconnect_info& out) noexcept;

/// Appends a whole DISCONNECT frame of `type` (agent_disconnect normally). An empty `message`
/// means "use to_string(status)"; messages are cut to 255 bytes.
void encode_disconnect(byte_buffer& out, frame_type type, status_code status,
                       std::string_view message = {});

}  // namespace spoa::protocol
