#include "json_text.hpp"

#include <cstdint>

namespace spoa::cli {
namespace {

/// Length of the valid UTF-8 sequence starting at text[i], or 0 when it is not one.
std::size_t utf8_length(std::string_view text, std::size_t i) noexcept {
    const auto b = static_cast<std::uint8_t>(text[i]);
    std::size_t n = 0;
    if (b >= 0xC2 && b <= 0xDF)
        n = 2;
    else if (b >= 0xE0 && b <= 0xEF)
        n = 3;
    else if (b >= 0xF0 && b <= 0xF4)
        n = 4;
    else
        return 0;
    if (i + n > text.size()) return 0;
    for (std::size_t k = 1; k < n; ++k) {
        if ((static_cast<std::uint8_t>(text[i + k]) & 0xC0) != 0x80) return 0;
    }
    return n;
}

void escape_byte(std::string& out, std::uint8_t b) {
    static constexpr char digits[] = "0123456789abcdef";
    out += "\\u00";
    out += digits[b >> 4];
    out += digits[b & 15];
}

}  // namespace

std::string json_string(std::string_view text) {
    std::string out = "\"";
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto b = static_cast<std::uint8_t>(text[i]);
        if (b == '"' || b == '\\') {
            out += '\\';
            out += static_cast<char>(b);
        } else if (b < 0x20 || b == 0x7F) {
            escape_byte(out, b);
        } else if (b < 0x80) {
            out += static_cast<char>(b);
        } else if (const std::size_t n = utf8_length(text, i); n != 0) {
            out.append(text.substr(i, n));
            i += n - 1;
        } else {
            escape_byte(out, b);
        }
    }
    out += '"';
    return out;
}

}  // namespace spoa::cli
