#pragma once
/// NOTIFY payloads (protocol/README.md §5.2):
/// { name, nb-args:u8, { arg-name, typed-data }*nb-args }*.
///
/// `notify_decoder` decodes a whole payload into flat arrays it keeps between calls, so a
/// connection that reuses one decoder stops allocating after the first frames. Everything it
/// returns views the payload: valid until the payload's buffer changes.

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/typed_value.hpp"

namespace spoa::protocol {

struct argument {
    std::string_view name;  ///< empty for a nameless argument
    typed_value value;
};

struct message_view {
    std::string_view name;
    std::span<const argument> args;
};

/// Largest number of arguments one message can carry (nb-args is one byte).
inline constexpr std::size_t max_args_per_message = 255;

class notify_decoder {
  public:
    notify_decoder();

    /// Decodes `payload`; on error nothing from this payload is exposed. An empty payload is a
    /// valid NOTIFY with no message (HAProxy 3.1 to 3.3-dev6 send them, protocol/README.md §10).
    /// Errors: truncated (a name, count or argument runs past the end), varint_*,
    /// reserved_data_type.
    [[nodiscard]] error decode(bytes_view payload);

    [[nodiscard]] std::span<const message_view> messages() const noexcept {
        return {messages_.data(), messages_.size()};
    }

  private:
    struct message_range {
        std::string_view name;
        std::size_t first = 0;
        std::size_t count = 0;
    };
    std::vector<message_range> ranges_;
    std::vector<message_view> messages_;
    std::vector<argument> args_;
};

/// Appends one message (used by clients such as tests, benchmarks and the fake HAProxy).
void encode_message(byte_buffer& out, std::string_view name, std::span<const argument> args);

}  // namespace spoa::protocol
