#pragma once
/// SPOP typed data (protocol/README.md §4): a type nibble, a flag nibble (BOOL only) and the value.
///
/// A decoded STRING/BINARY is a view into the input it was decoded from: it is valid only as long
/// as that input is. Integers keep their 64-bit wire pattern, so INT64 min and UINT64 max
/// round-trip.

#include <array>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/byte_reader.hpp"
#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/error.hpp"

namespace spoa::protocol {

enum class data_type : std::uint8_t {
    null = 0,
    boolean = 1,
    int32 = 2,
    uint32 = 3,
    int64 = 4,
    uint64 = 5,
    ipv4 = 6,
    ipv6 = 7,
    string = 8,
    binary = 9,
};

[[nodiscard]] std::string_view to_string(data_type type) noexcept;

class typed_value {
  public:
    constexpr typed_value() noexcept : type_(data_type::null), integer_(0) {}

    [[nodiscard]] static constexpr typed_value null() noexcept { return {}; }
    [[nodiscard]] static constexpr typed_value boolean(bool v) noexcept {
        return typed_value(data_type::boolean, v ? 1u : 0u);
    }
    [[nodiscard]] static constexpr typed_value int32(std::int32_t v) noexcept {
        return typed_value(data_type::int32,
                           static_cast<std::uint64_t>(static_cast<std::int64_t>(v)));
    }
    [[nodiscard]] static constexpr typed_value uint32(std::uint32_t v) noexcept {
        return typed_value(data_type::uint32, v);
    }
    [[nodiscard]] static constexpr typed_value int64(std::int64_t v) noexcept {
        return typed_value(data_type::int64, static_cast<std::uint64_t>(v));
    }
    [[nodiscard]] static constexpr typed_value uint64(std::uint64_t v) noexcept {
        return typed_value(data_type::uint64, v);
    }
    /// An integer type with its raw 64-bit wire pattern (what a decoder reads).
    [[nodiscard]] static constexpr typed_value integer_bits(data_type t,
                                                            std::uint64_t bits) noexcept {
        return typed_value(t, bits);
    }
    /// `addr` in network byte order.
    [[nodiscard]] static typed_value ipv4(const std::array<std::uint8_t, 4>& addr) noexcept {
        typed_value v(data_type::ipv4, 0);
        std::memcpy(v.addr_, addr.data(), 4);
        return v;
    }
    /// `addr` in network byte order.
    [[nodiscard]] static typed_value ipv6(const std::array<std::uint8_t, 16>& addr) noexcept {
        typed_value v(data_type::ipv6, 0);
        std::memcpy(v.addr_, addr.data(), 16);
        return v;
    }
    /// Keeps a view: `text` must outlive the value (or the encode call it is passed to).
    [[nodiscard]] static constexpr typed_value string(std::string_view text) noexcept {
        return typed_value(data_type::string, text);
    }
    [[nodiscard]] static constexpr typed_value binary(std::string_view bytes) noexcept {
        return typed_value(data_type::binary, bytes);
    }
    [[nodiscard]] static typed_value binary(bytes_view bytes) noexcept {
        return typed_value(data_type::binary, as_string_view(bytes));
    }

    [[nodiscard]] constexpr data_type type() const noexcept { return type_; }
    [[nodiscard]] constexpr bool is_null() const noexcept { return type_ == data_type::null; }
    [[nodiscard]] constexpr bool is_integer() const noexcept {
        return type_ >= data_type::int32 && type_ <= data_type::uint64;
    }

    // Unchecked accessors: the caller has looked at type() first. Checked, throwing accessors
    // live in the agent's message API.
    [[nodiscard]] constexpr bool as_bool() const noexcept { return integer_ != 0; }
    /// The integer as signed 64 bits (two's complement of the wire pattern).
    [[nodiscard]] constexpr std::int64_t as_int64() const noexcept {
        return static_cast<std::int64_t>(integer_);
    }
    [[nodiscard]] constexpr std::uint64_t as_uint64() const noexcept { return integer_; }
    [[nodiscard]] std::array<std::uint8_t, 4> as_ipv4() const noexcept {
        std::array<std::uint8_t, 4> a{};
        std::memcpy(a.data(), addr_, 4);
        return a;
    }
    [[nodiscard]] std::array<std::uint8_t, 16> as_ipv6() const noexcept {
        std::array<std::uint8_t, 16> a{};
        std::memcpy(a.data(), addr_, 16);
        return a;
    }
    [[nodiscard]] const std::uint8_t* address_bytes() const noexcept { return addr_; }
    /// STRING or BINARY contents.
    [[nodiscard]] constexpr std::string_view as_string() const noexcept {
        return {text_.p, text_.n};
    }
    [[nodiscard]] bytes_view as_bytes() const noexcept { return as_bytes_view(as_string()); }

    friend bool operator==(const typed_value& a, const typed_value& b) noexcept;

  private:
    constexpr typed_value(data_type t, std::uint64_t v) noexcept : type_(t), integer_(v) {}
    constexpr typed_value(data_type t, std::string_view s) noexcept
        : type_(t), text_{s.data(), s.size()} {}

    // Named: an anonymous struct inside the anonymous union is an extension that clang's
    // -Wpedantic rejects (-Wnested-anon-types), which broke the clang/libFuzzer build.
    struct text_ref {
        const char* p;
        std::size_t n;
    };

    data_type type_;
    union {
        std::uint64_t integer_;
        std::uint8_t addr_[16];
        text_ref text_;
    };
};

/// Reads one typed value; STRING/BINARY become views into the reader's input.
/// Errors: truncated, varint_*, reserved_data_type.
[[nodiscard]] error decode_typed_value(byte_reader& in, typed_value& out) noexcept;

/// Appends the wire form of `value` (flags nibble 0 except BOOL, protocol/README.md §4).
void encode_typed_value(byte_buffer& out, const typed_value& value);

/// Bytes `encode_typed_value` would append.
[[nodiscard]] std::size_t encoded_size(const typed_value& value) noexcept;

}  // namespace spoa::protocol
