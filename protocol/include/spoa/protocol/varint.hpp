#pragma once
/// SPOP variable-length integers (protocol/README.md §3). Not LEB128: the first byte carries 4 bits
/// once the value reaches 240, and continuation bytes are added with their high bit set.

#include <cstddef>
#include <cstdint>

#include "spoa/protocol/error.hpp"

namespace spoa::protocol {

/// Longest encoding of a 64-bit value.
inline constexpr std::size_t max_varint_size = 10;

/// Number of bytes `encode_varint` writes for `value`.
[[nodiscard]] constexpr std::size_t varint_size(std::uint64_t value) noexcept {
    if (value < 240) return 1;
    std::size_t n = 2;
    value = (value - 240) >> 4;
    while (value >= 128) {
        value = (value - 128) >> 7;
        ++n;
    }
    return n;
}

/// Writes `value` at `out` (which must have room for `max_varint_size` bytes); returns the size.
inline std::size_t encode_varint(std::uint64_t value, std::uint8_t* out) noexcept {
    if (value < 240) {
        out[0] = static_cast<std::uint8_t>(value);
        return 1;
    }
    std::size_t n = 0;
    out[n++] = static_cast<std::uint8_t>(value | 0xF0);
    value = (value - 240) >> 4;
    while (value >= 128) {
        out[n++] = static_cast<std::uint8_t>(value | 0x80);
        value = (value - 128) >> 7;
    }
    out[n++] = static_cast<std::uint8_t>(value);
    return n;
}

/// Decodes one varint from [p, end). On success stores the value and the size consumed.
/// Errors: truncated (ran out of bytes), varint_too_long (11th byte needed), varint_overflow.
[[nodiscard]] inline error decode_varint(const std::uint8_t* p, const std::uint8_t* end,
                                         std::uint64_t& value, std::size_t& size) noexcept {
    if (p == end) return error::truncated;
    std::uint64_t v = p[0];
    if (v < 240) {
        value = v;
        size = 1;
        return error::none;
    }
    unsigned shift = 4;
    for (std::size_t i = 1;; ++i) {
        if (i == max_varint_size) return error::varint_too_long;
        if (p + i == end) return error::truncated;
        const std::uint64_t b = p[i];
        // A 10th byte that still says "more follows" asks for an 11th: too long (protocol/README.md
        // §3), judged before the overflow test below, which would otherwise always claim it.
        if (i == max_varint_size - 1 && b >= 128) return error::varint_too_long;
        // The 10th byte is added at shift 60: only values whose shifted form fits 64 bits and
        // whose sum does not wrap are valid (protocol/README.md §3, decoder rules).
        if (shift >= 64 || (shift > 0 && (b >> (64 - shift)) != 0)) return error::varint_overflow;
        const std::uint64_t add = b << shift;
        if (v + add < v) return error::varint_overflow;
        v += add;
        if (b < 128) {
            value = v;
            size = i + 1;
            return error::none;
        }
        shift += 7;
    }
}

}  // namespace spoa::protocol
