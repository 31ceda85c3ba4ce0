#include "spoa/protocol/typed_value.hpp"

#include "typed_value_writer.hpp"

namespace spoa::protocol {

std::string_view to_string(data_type type) noexcept {
    switch (type) {
        case data_type::null:
            return "null";
        case data_type::boolean:
            return "bool";
        case data_type::int32:
            return "int32";
        case data_type::uint32:
            return "uint32";
        case data_type::int64:
            return "int64";
        case data_type::uint64:
            return "uint64";
        case data_type::ipv4:
            return "ipv4";
        case data_type::ipv6:
            return "ipv6";
        case data_type::string:
            return "string";
        case data_type::binary:
            return "binary";
    }
    return "reserved";
}

bool operator==(const typed_value& a, const typed_value& b) noexcept {
    if (a.type_ != b.type_) return false;
    switch (a.type_) {
        case data_type::null:
            return true;
        case data_type::boolean:
        case data_type::int32:
        case data_type::uint32:
        case data_type::int64:
        case data_type::uint64:
            return a.integer_ == b.integer_;
        case data_type::ipv4:
            return std::memcmp(a.addr_, b.addr_, 4) == 0;
        case data_type::ipv6:
            return std::memcmp(a.addr_, b.addr_, 16) == 0;
        case data_type::string:
        case data_type::binary:
            return a.as_string() == b.as_string();
    }
    return false;
}

error decode_typed_value(byte_reader& in, typed_value& out) noexcept {
    std::uint8_t type_byte = 0;
    if (const error e = in.read_u8(type_byte); e != error::none) return e;
    // Type in the low nibble, flags in the high nibble (only BOOL uses them):
    // protocol/README.md §4.
    const std::uint8_t type = type_byte & 0x0F;
    const std::uint8_t flags = type_byte >> 4;
    switch (static_cast<data_type>(type)) {
        case data_type::null:
            out = typed_value::null();
            return error::none;
        // HAProxy reads BOOL as true only when the flag nibble is exactly 1
        // (protocol/README.md §4).
        case data_type::boolean:
            out = typed_value::boolean(flags == 1);
            return error::none;
        case data_type::int32:
        case data_type::uint32:
        case data_type::int64:
        case data_type::uint64: {
            std::uint64_t v = 0;
            if (const error e = in.read_varint(v); e != error::none) return e;
            // Keep the 64-bit wire pattern: HAProxy range-checks none of the integer types.
            out = typed_value::integer_bits(static_cast<data_type>(type), v);
            return error::none;
        }
        case data_type::ipv4: {
            bytes_view b;
            if (const error e = in.read_bytes(4, b); e != error::none) return e;
            std::array<std::uint8_t, 4> a{};
            std::memcpy(a.data(), b.data(), 4);
            out = typed_value::ipv4(a);
            return error::none;
        }
        case data_type::ipv6: {
            bytes_view b;
            if (const error e = in.read_bytes(16, b); e != error::none) return e;
            std::array<std::uint8_t, 16> a{};
            std::memcpy(a.data(), b.data(), 16);
            out = typed_value::ipv6(a);
            return error::none;
        }
        case data_type::string:
        case data_type::binary: {
            std::string_view s;
            if (const error e = in.read_string(s); e != error::none) return e;
            out = type == 8 ? typed_value::string(s) : typed_value::binary(s);
            return error::none;
        }
    }
    return error::reserved_data_type;
}

std::size_t encoded_size(const typed_value& value) noexcept {
    switch (value.type()) {
        case data_type::null:
        case data_type::boolean:
            return 1;
        case data_type::int32:
        case data_type::uint32:
        case data_type::int64:
        case data_type::uint64:
            return 1 + varint_size(value.as_uint64());
        case data_type::ipv4:
            return 5;
        case data_type::ipv6:
            return 17;
        case data_type::string:
        case data_type::binary: {
            const std::size_t n = value.as_string().size();
            return 1 + varint_size(n) + n;
        }
    }
    return 1;
}

void encode_typed_value(byte_buffer& out, const typed_value& value) {
    // One reservation for the whole value (the type byte, the varint and the bytes).
    std::uint8_t* p = out.prepare(detail::max_typed_value_size(value));
    out.commit(detail::write_typed_value(p, value));
}

}  // namespace spoa::protocol
