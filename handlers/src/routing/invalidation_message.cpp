#include "spoa/handlers/routing/invalidation_message.hpp"

#include <random>

namespace spoa::handlers::routing {
namespace {

constexpr std::string_view version = "1";
constexpr std::string_view every_protocol = "*";

}  // namespace

std::string_view next_field(std::string_view& rest) noexcept {
    const auto space = rest.find(' ');
    const auto field = rest.substr(0, space);
    rest = space == std::string_view::npos ? std::string_view{} : rest.substr(space + 1);
    return field;
}

std::string_view trim_line_end(std::string_view text) noexcept {
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.remove_suffix(1);
    return text;
}

std::string encode(const invalidation_message& m) {
    std::string out(version);
    out += ' ';
    out += m.origin;
    out += ' ';
    out += m.protocol ? to_string(*m.protocol) : every_protocol;
    out += ' ';
    out += m.id;
    return out;
}

std::optional<invalidation_message> parse_invalidation(std::string_view text) {
    if (next_field(text) != version) return std::nullopt;
    invalidation_message m;
    m.origin = std::string(next_field(text));
    const auto proto = next_field(text);
    if (m.origin.empty() || proto.empty() || text.empty()) return std::nullopt;
    if (proto != every_protocol) {
        m.protocol = parse_app_protocol(proto);
        if (!m.protocol) return std::nullopt;
    }
    text = trim_line_end(text);
    if (text.empty()) return std::nullopt;
    m.id = std::string(text);
    return m;
}

bool valid_agent_id(std::string_view id) noexcept {
    // "-" is the platform's origin: an agent by that name would ignore the platform.
    if (id.empty() || id.size() > 64 || id == "-") return false;
    for (const char c : id) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

std::string random_agent_id() {
    std::random_device rd;
    std::uniform_int_distribution<int> digit(0, 15);
    std::string out;
    for (int i = 0; i < 16; ++i)
        out += "0123456789abcdef"[digit(rd)];
    return out;
}

}  // namespace spoa::handlers::routing
