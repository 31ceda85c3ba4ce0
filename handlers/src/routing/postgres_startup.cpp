#include "spoa/handlers/routing/postgres_startup.hpp"

namespace spoa::handlers::routing {
namespace {

std::uint32_t be32(const char* p) noexcept {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) | (std::uint32_t{u[2]} << 8) |
           std::uint32_t{u[3]};
}

constexpr std::uint32_t ssl_request_code = 80877103;
constexpr std::uint32_t gss_request_code = 80877104;
constexpr std::uint32_t cancel_request_code = 80877102;

postgres_startup invalid(const char* why) noexcept {
    postgres_startup s;
    s.type = postgres_startup::kind::invalid;
    s.error = why;
    return s;
}

/// Next NUL-terminated string of `area` starting at `pos`; false if unterminated.
bool next_cstring(std::string_view area, std::size_t& pos, std::string_view& out) noexcept {
    const auto nul = area.find('\0', pos);
    if (nul == std::string_view::npos) return false;
    out = area.substr(pos, nul - pos);
    pos = nul + 1;
    return true;
}

}  // namespace

std::string_view postgres_startup::parameter(std::string_view name) const noexcept {
    std::size_t pos = 0;
    std::string_view key;
    std::string_view value;
    while (pos < params_.size() && next_cstring(params_, pos, key) && !key.empty() &&
           next_cstring(params_, pos, value)) {
        if (key == name) return value;
    }
    return {};
}

std::string_view postgres_startup::endpoint_option() const noexcept {
    std::string_view rest = options;
    while (!rest.empty()) {
        const auto space = rest.find(' ');
        std::string_view token = rest.substr(0, space);
        rest = space == std::string_view::npos ? std::string_view{} : rest.substr(space + 1);
        if (token.starts_with("--")) token.remove_prefix(2);
        if (token.starts_with("-c")) token.remove_prefix(2);
        if (token.starts_with("endpoint=")) return token.substr(9);
    }
    return {};
}

postgres_startup parse_postgres_startup(std::string_view bytes) noexcept {
    // A TLS record starts with 0x16 (handshake) then version 0x03 0x0N.
    if (bytes.size() >= 3 && static_cast<unsigned char>(bytes[0]) == 0x16 && bytes[1] == 0x03) {
        postgres_startup s;
        s.type = postgres_startup::kind::tls_hello;
        return s;
    }
    if (bytes.size() < 8) return invalid("packet shorter than 8 bytes");
    const std::uint32_t length = be32(bytes.data());
    if (length < 8 || length > postgres_max_startup_length) return invalid("invalid packet length");
    if (length > bytes.size()) return invalid("packet truncated");
    const std::uint32_t code = be32(bytes.data() + 4);
    postgres_startup s;
    if (code == ssl_request_code || code == gss_request_code) {
        if (length != 8) return invalid("SSLRequest/GSSENCRequest must be 8 bytes");
        s.type = code == ssl_request_code ? postgres_startup::kind::ssl_request
                                          : postgres_startup::kind::gss_request;
        return s;
    }
    if (code == cancel_request_code) {
        if (length != 16) return invalid("CancelRequest must be 16 bytes");
        s.type = postgres_startup::kind::cancel_request;
        return s;
    }
    s.major = static_cast<std::uint16_t>(code >> 16);
    s.minor = static_cast<std::uint16_t>(code & 0xFFFF);
    if (s.major != 3) return invalid("unsupported protocol version (3.x expected)");
    // Parameters: name\0value\0 ... then a final \0 terminating the list.
    const std::string_view area = bytes.substr(8, length - 8);
    std::size_t pos = 0;
    bool terminated = false;
    while (pos < area.size()) {
        std::string_view key;
        std::string_view value;
        if (!next_cstring(area, pos, key)) return invalid("unterminated parameter name");
        if (key.empty()) {
            terminated = true;
            break;
        }
        if (!next_cstring(area, pos, value)) return invalid("unterminated parameter value");
        if (key == "user")
            s.user = value;
        else if (key == "database")
            s.database = value;
        else if (key == "options")
            s.options = value;
        else if (key == "application_name")
            s.application_name = value;
    }
    if (!terminated) return invalid("parameter list not terminated");
    if (pos != area.size()) return invalid("bytes after the parameter list");
    if (s.user.empty()) return invalid("no user parameter");
    if (s.database.empty()) s.database = s.user;
    s.params_ = area;
    s.type = postgres_startup::kind::startup;
    return s;
}

}  // namespace spoa::handlers::routing
