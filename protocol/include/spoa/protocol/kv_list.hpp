#pragma once
/// KV-LIST payloads of HELLO and DISCONNECT frames (protocol/README.md §5.1): { key, typed-data }*
/// up to the end of the frame, with no count prefix.

#include <string_view>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/byte_reader.hpp"
#include "spoa/protocol/typed_value.hpp"

namespace spoa::protocol {

class kv_reader {
  public:
    explicit kv_reader(bytes_view payload) noexcept : in_(payload) {}

    [[nodiscard]] bool done() const noexcept { return in_.empty(); }
    /// Reads the next pair. Errors: empty_key, truncated, varint_*, reserved_data_type.
    [[nodiscard]] error next(std::string_view& key, typed_value& value) noexcept;

  private:
    byte_reader in_;
};

/// Appends one pair.
void encode_kv(byte_buffer& out, std::string_view key, const typed_value& value);

}  // namespace spoa::protocol
