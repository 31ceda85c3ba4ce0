#include "value_syntax.hpp"

#include <arpa/inet.h>

#include <array>
#include <charconv>
#include <cstdint>
#include <limits>
#include <stdexcept>

namespace spoa::cli {
namespace {

using protocol::data_type;
using protocol::owned_value;

struct type_entry {
    std::string_view name;
    data_type type;
};

constexpr std::array<type_entry, 10> type_names = {{
    {"null", data_type::null},
    {"bool", data_type::boolean},
    {"int32", data_type::int32},
    {"uint32", data_type::uint32},
    {"int64", data_type::int64},
    {"uint64", data_type::uint64},
    {"ipv4", data_type::ipv4},
    {"ipv6", data_type::ipv6},
    {"str", data_type::string},
    {"bin", data_type::binary},
}};

[[noreturn]] void bad(std::string_view what, std::string_view text) {
    throw std::invalid_argument(std::string(what) + " in '" + std::string(text) + "'");
}

data_type type_of(std::string_view name, std::string_view text) {
    for (const auto& e : type_names) {
        if (e.name == name) return e.type;
    }
    bad("unknown type '" + std::string(name) +
            "' (null, bool, int32, uint32, int64, uint64, ipv4, ipv6, str, bin)",
        text);
}

/// A decimal integer within [min, max], as its 64-bit wire pattern.
template <typename T>
std::uint64_t parse_integer(std::string_view digits, std::string_view text) {
    T v{};
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size()) {
        bad("not a " + std::string(std::numeric_limits<T>::is_signed ? "signed" : "unsigned") +
                " " + std::to_string(sizeof(T) * 8) + "-bit integer",
            text);
    }
    if constexpr (std::numeric_limits<T>::is_signed) {
        return static_cast<std::uint64_t>(static_cast<std::int64_t>(v));
    } else {
        return static_cast<std::uint64_t>(v);
    }
}

int hex_digit(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string parse_hex(std::string_view digits, std::string_view text) {
    if (digits.size() % 2 != 0) bad("odd number of hex digits", text);
    std::string out;
    out.reserve(digits.size() / 2);
    for (std::size_t i = 0; i < digits.size(); i += 2) {
        const int high = hex_digit(digits[i]);
        const int low = hex_digit(digits[i + 1]);
        if (high < 0 || low < 0) bad("not a hex digit", text);
        out += static_cast<char>(high * 16 + low);
    }
    return out;
}

std::string parse_address(int family, std::string_view value, std::string_view text) {
    std::array<unsigned char, 16> addr{};
    const std::string z(value);
    if (::inet_pton(family, z.c_str(), addr.data()) != 1) {
        bad(family == AF_INET ? "not an IPv4 address" : "not an IPv6 address", text);
    }
    return {reinterpret_cast<const char*>(addr.data()), family == AF_INET ? 4u : 16u};
}

void fill_value(owned_value& v, std::string_view value, std::string_view text) {
    switch (v.type) {
        case data_type::null:
            if (!value.empty()) bad("null takes no value", text);
            return;
        case data_type::boolean:
            if (value != "true" && value != "false") bad("bool is true or false", text);
            v.integer = value == "true" ? 1 : 0;
            return;
        case data_type::int32:
            v.integer = parse_integer<std::int32_t>(value, text);
            return;
        case data_type::uint32:
            v.integer = parse_integer<std::uint32_t>(value, text);
            return;
        case data_type::int64:
            v.integer = parse_integer<std::int64_t>(value, text);
            return;
        case data_type::uint64:
            v.integer = parse_integer<std::uint64_t>(value, text);
            return;
        case data_type::ipv4:
            v.bytes = parse_address(AF_INET, value, text);
            return;
        case data_type::ipv6:
            v.bytes = parse_address(AF_INET6, value, text);
            return;
        case data_type::string:
            v.bytes = std::string(value);
            return;
        case data_type::binary:
            v.bytes = parse_hex(value, text);
            return;
    }
}

std::string format_address(int family, const std::string& bytes) {
    char text[INET6_ADDRSTRLEN] = {};
    if (::inet_ntop(family, bytes.data(), text, sizeof text) == nullptr) return "?";
    return text;
}

}  // namespace

protocol::owned_value parse_typed_value(std::string_view text) {
    const std::size_t colon = text.find(':');
    owned_value v;
    v.type = type_of(text.substr(0, colon), text);
    const std::string_view value =
        colon == std::string_view::npos ? std::string_view{} : text.substr(colon + 1);
    if (colon == std::string_view::npos && v.type != data_type::null) {
        bad("expected type:value", text);
    }
    fill_value(v, value, text);
    return v;
}

named_value parse_argument(std::string_view text) {
    const std::size_t eq = text.find('=');
    if (eq == std::string_view::npos) bad("expected name=type:value", text);
    return {std::string(text.substr(0, eq)), parse_typed_value(text.substr(eq + 1))};
}

std::string_view type_name(protocol::data_type type) noexcept {
    for (const auto& e : type_names) {
        if (e.type == type) return e.name;
    }
    return "?";
}

std::string format_value(const protocol::owned_value& value) {
    switch (value.type) {
        case data_type::null:
            return "";
        case data_type::boolean:
            return value.integer != 0 ? "true" : "false";
        case data_type::int32:
        case data_type::int64:
            return std::to_string(static_cast<std::int64_t>(value.integer));
        case data_type::uint32:
        case data_type::uint64:
            return std::to_string(value.integer);
        case data_type::ipv4:
            return format_address(AF_INET, value.bytes);
        case data_type::ipv6:
            return format_address(AF_INET6, value.bytes);
        case data_type::string:
            return value.bytes;
        case data_type::binary: {
            std::string hex = protocol::to_hex(protocol::as_bytes_view(value.bytes));
            std::erase(hex, ' ');
            return hex;
        }
    }
    return "";
}

}  // namespace spoa::cli
