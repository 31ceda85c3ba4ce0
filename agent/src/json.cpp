#include "spoa/agent/json.hpp"

#include <array>
#include <charconv>
#include <cmath>

namespace spoa {
namespace {

/// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not one.
std::size_t utf8_sequence(std::string_view s, std::size_t i) {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
    const unsigned char c = b(0);
    if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (!cont(1) || !cont(2)) return 0;
        if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
        if (c == 0xED && b(1) > 0x9F) return 0;  // UTF-16 surrogates
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (!cont(1) || !cont(2) || !cont(3)) return 0;
        if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
        if (c == 0xF4 && b(1) > 0x8F) return 0;  // above U+10FFFF
        return 4;
    }
    return 0;
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
    static constexpr std::array<char, 16> hex{'0', '1', '2', '3', '4', '5', '6', '7',
                                              '8', '9', 'a', 'b', 'c', 'd', 'e', 'f'};
    out.push_back('"');
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '"' || c == '\\') {
            out.push_back('\\');
            out.push_back(static_cast<char>(c));
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7F) {
            out += "\\u00";
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 0xF]);
        } else if (c >= 0x80) {
            const std::size_t n = utf8_sequence(s, i);
            if (n == 0) {
                out += "\\ufffd";
                ++i;
                continue;
            }
            out.append(s.substr(i, n));
            i += n;
            continue;
        } else {
            out.push_back(static_cast<char>(c));
        }
        ++i;
    }
    out.push_back('"');
}

void json_writer::separate() {
    if (after_key_) {
        after_key_ = false;
        return;
    }
    if (!has_element_.empty()) {
        if (has_element_.back()) out_.push_back(',');
        has_element_.back() = true;
    }
}

json_writer& json_writer::begin_object() {
    separate();
    out_.push_back('{');
    has_element_.push_back(false);
    return *this;
}

json_writer& json_writer::end_object() {
    has_element_.pop_back();
    out_.push_back('}');
    return *this;
}

json_writer& json_writer::begin_array() {
    separate();
    out_.push_back('[');
    has_element_.push_back(false);
    return *this;
}

json_writer& json_writer::end_array() {
    has_element_.pop_back();
    out_.push_back(']');
    return *this;
}

json_writer& json_writer::key(std::string_view k) {
    separate();
    append_json_string(out_, k);
    out_.push_back(':');
    after_key_ = true;
    return *this;
}

json_writer& json_writer::value(std::string_view s) {
    separate();
    append_json_string(out_, s);
    return *this;
}

json_writer& json_writer::value(bool b) {
    separate();
    out_ += b ? "true" : "false";
    return *this;
}

json_writer& json_writer::value(std::int64_t n) {
    separate();
    out_ += std::to_string(n);
    return *this;
}

json_writer& json_writer::value(std::uint64_t n) {
    separate();
    out_ += std::to_string(n);
    return *this;
}

json_writer& json_writer::value(double d) {
    if (!std::isfinite(d)) return null();  // JSON has no NaN or infinity
    separate();
    std::array<char, 32> buf{};
    const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), d);
    out_.append(buf.data(), r.ptr);
    return *this;
}

json_writer& json_writer::null() {
    separate();
    out_ += "null";
    return *this;
}

}  // namespace spoa
