#pragma once
// Internal to spoa::protocol: writes typed values through a raw pointer, so that an encoder can
// reserve room for a whole action once instead of growing the buffer field by field.

#include <cstdint>
#include <cstring>

#include "spoa/protocol/typed_value.hpp"
#include "spoa/protocol/varint.hpp"

namespace spoa::protocol::detail {

/// Room `write_typed_value` may need for `value` (an upper bound: varints counted at 10 bytes).
[[nodiscard]] inline std::size_t max_typed_value_size(const typed_value& value) noexcept {
    switch (value.type()) {
        case data_type::ipv4:
            return 5;
        case data_type::ipv6:
            return 17;
        case data_type::string:
        case data_type::binary:
            return 1 + max_varint_size + value.as_string().size();
        default:
            return 1 + max_varint_size;
    }
}

/// Writes the wire form of `value` at `p` (flags nibble 0 except BOOL, protocol/README.md §4); `p`
/// has room for max_typed_value_size(value) bytes. Returns the bytes written.
inline std::size_t write_typed_value(std::uint8_t* p, const typed_value& value) noexcept {
    const auto type = static_cast<std::uint8_t>(value.type());
    switch (value.type()) {
        case data_type::null:
            p[0] = type;
            return 1;
        case data_type::boolean:
            p[0] = value.as_bool() ? 0x11 : 0x01;
            return 1;
        case data_type::int32:
        case data_type::uint32:
        case data_type::int64:
        case data_type::uint64:
            p[0] = type;
            return 1 + encode_varint(value.as_uint64(), p + 1);
        case data_type::ipv4:
            p[0] = type;
            std::memcpy(p + 1, value.address_bytes(), 4);
            return 5;
        case data_type::ipv6:
            p[0] = type;
            std::memcpy(p + 1, value.address_bytes(), 16);
            return 17;
        case data_type::string:
        case data_type::binary: {
            const std::string_view s = value.as_string();
            p[0] = type;
            std::size_t n = 1 + encode_varint(s.size(), p + 1);
            if (!s.empty()) std::memcpy(p + n, s.data(), s.size());
            return n + s.size();
        }
    }
    // Not reached: every data_type is handled above.
    p[0] = type;
    return 1;
}

}  // namespace spoa::protocol::detail
