#include "spoa/protocol/owned_value.hpp"

#include <array>
#include <cstring>

namespace spoa::protocol {
namespace {

template <std::size_t N>
std::array<std::uint8_t, N> address_of(const std::string& bytes) noexcept {
    std::array<std::uint8_t, N> a{};
    std::memcpy(a.data(), bytes.data(), bytes.size() < N ? bytes.size() : N);
    return a;
}

}  // namespace

owned_value owned_value::from(const typed_value& v) {
    owned_value o;
    o.type = v.type();
    switch (v.type()) {
        case data_type::null:
            break;
        case data_type::boolean:
            o.integer = v.as_bool() ? 1 : 0;
            break;
        case data_type::int32:
        case data_type::uint32:
        case data_type::int64:
        case data_type::uint64:
            o.integer = v.as_uint64();
            break;
        case data_type::ipv4:
            o.bytes.assign(reinterpret_cast<const char*>(v.address_bytes()), 4);
            break;
        case data_type::ipv6:
            o.bytes.assign(reinterpret_cast<const char*>(v.address_bytes()), 16);
            break;
        case data_type::string:
        case data_type::binary:
            o.bytes.assign(v.as_string());
            break;
    }
    return o;
}

typed_value owned_value::view() const {
    switch (type) {
        case data_type::null:
            return typed_value::null();
        case data_type::boolean:
            return typed_value::boolean(integer != 0);
        case data_type::int32:
        case data_type::uint32:
        case data_type::int64:
        case data_type::uint64:
            return typed_value::integer_bits(type, integer);
        case data_type::ipv4:
            return typed_value::ipv4(address_of<4>(bytes));
        case data_type::ipv6:
            return typed_value::ipv6(address_of<16>(bytes));
        case data_type::string:
            return typed_value::string(bytes);
        case data_type::binary:
            return typed_value::binary(bytes);
    }
    return typed_value::null();
}

std::string owned_value::to_string() const {
    std::string s(protocol::to_string(type));
    switch (type) {
        case data_type::null:
            return s;
        case data_type::boolean:
            return s + (integer ? "(true)" : "(false)");
        case data_type::int32:
        case data_type::int64:
            return s + "(" + std::to_string(static_cast<std::int64_t>(integer)) + ")";
        case data_type::uint32:
        case data_type::uint64:
            return s + "(" + std::to_string(integer) + ")";
        case data_type::string:
            return s + "(\"" + bytes + "\")";
        case data_type::ipv4:
        case data_type::ipv6:
        case data_type::binary:
            return s + "(" + to_hex(as_bytes_view(bytes)) + ")";
    }
    return s;
}

std::string owned_action::to_string() const {
    if (type == action_type::unset_var) {
        return "unset-var(" + std::string(protocol::to_string(scope)) + "." + name + ")";
    }
    return "set-var(" + std::string(protocol::to_string(scope)) + "." + name + " = " +
           value.to_string() + ")";
}

error decode_owned_actions(bytes_view payload, std::vector<owned_action>& out) {
    out.clear();
    std::vector<action> decoded;
    if (const error e = decode_actions(payload, decoded); e != error::none) return e;
    out.reserve(decoded.size());
    for (const auto& a : decoded)
        out.push_back({a.type, a.scope, std::string(a.name), owned_value::from(a.value)});
    return error::none;
}

std::string to_hex(bytes_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    s.reserve(bytes.size() * 3);
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (i != 0) s += ' ';
        s += digits[bytes[i] >> 4];
        s += digits[bytes[i] & 15];
    }
    return s;
}

}  // namespace spoa::protocol
