#include "spoa/handlers/routing/connect_address.hpp"

#include <sys/un.h>

#include <charconv>
#include <stdexcept>

namespace spoa::handlers::routing {
namespace {

bool label_char(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/// RFC 1123 names, plus '_' (used in some service names); one trailing dot (a rooted name) is
/// allowed. Anything else would only fail later, at every reconnect, with a vaguer message.
bool valid_host_name(std::string_view name) noexcept {
    if (name.ends_with('.')) name.remove_suffix(1);
    if (name.empty() || name.size() > 253) return false;
    while (!name.empty()) {
        const auto dot = name.find('.');
        const std::string_view label = name.substr(0, dot);
        if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
            return false;
        for (const char c : label)
            if (!label_char(c)) return false;
        if (dot == std::string_view::npos) break;
        name.remove_prefix(dot + 1);
        if (name.empty()) return false;  // "a..b" or a second trailing dot
    }
    return true;
}

[[noreturn]] void bad(std::string_view text, const std::string& problem) {
    throw std::invalid_argument("address '" + std::string(text) + "' " + problem);
}

}  // namespace

connect_address connect_address::parse(std::string_view text) {
    connect_address a;
    if (text.starts_with("unix:")) {
        a.type = kind::unix_socket;
        a.path = std::string(text.substr(5));
        if (a.path.empty()) bad(text, "has an empty Unix socket path");
        if (a.path.size() >= sizeof(sockaddr_un::sun_path)) bad(text, "has a too long socket path");
        return a;
    }
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) bad(text, "is not host:port, [v6]:port or unix:/path");
    std::string_view host = text.substr(0, colon);
    const std::string_view port = text.substr(colon + 1);
    unsigned p = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p == 0 ||
        p > 65535) {
        bad(text, "has a bad port (1-65535)");
    }
    if (host.starts_with('[')) {
        if (!host.ends_with(']')) bad(text, "is not host:port, [v6]:port or unix:/path");
        host = host.substr(1, host.size() - 2);
        const auto ip = ip_address::parse(host);
        if (!ip || !ip->is_v6()) bad(text, "needs a numeric IPv6 address inside [ ]");
    } else if (host.empty()) {
        bad(text, "has no host");
    } else if (!ip_address::parse(host) && !valid_host_name(host)) {
        bad(text, "has a host that is neither a numeric address nor a host name");
    }
    a.host = std::string(host);
    a.port = static_cast<std::uint16_t>(p);
    return a;
}

std::optional<ip_address> connect_address::numeric_host() const {
    if (type != kind::tcp) return std::nullopt;
    return ip_address::parse(host);
}

std::string connect_address::to_string() const {
    if (type == kind::unix_socket) return "unix:" + path;
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

std::string to_string(const ip_address& ip, std::uint16_t port) {
    if (ip.is_v6()) return "[" + ip.to_string() + "]:" + std::to_string(port);
    return ip.to_string() + ":" + std::to_string(port);
}

}  // namespace spoa::handlers::routing
