#include "spoa/handlers/routing/resource_id.hpp"

#include <array>
#include <cstdint>

namespace spoa::handlers::routing {

namespace {

/// Characters that make a host need work: upper case, a port separator, white space.
constexpr std::array<std::uint8_t, 256> needs_work = [] {
    std::array<std::uint8_t, 256> t{};
    for (int c = 'A'; c <= 'Z'; ++c)
        t[static_cast<std::size_t>(c)] = 1;
    t[':'] = t[' '] = t['\t'] = t['['] = 1;
    return t;
}();

}  // namespace

std::string_view normalize_host(std::string_view host, char* buf, std::size_t cap) noexcept {
    // Fast path: a host already in normal form (HAProxy can lower-case it, and most clients
    // send no port) is returned as it is, without a copy.
    std::uint8_t work = 0;
    for (const char c : host)
        work |= needs_work[static_cast<unsigned char>(c)];
    if (work == 0 && !host.empty() && host.back() != '.' && host.size() <= cap) return host;
    while (!host.empty() && (host.front() == ' ' || host.front() == '\t'))
        host.remove_prefix(1);
    while (!host.empty() && (host.back() == ' ' || host.back() == '\t'))
        host.remove_suffix(1);
    // Strip the port: after "]" for an IPv6 literal, else after the only colon.
    if (host.starts_with('[')) {
        const auto close = host.find(']');
        if (close != std::string_view::npos) host = host.substr(0, close + 1);
    } else if (const auto colon = host.find(':');
               colon != std::string_view::npos &&
               host.find(':', colon + 1) == std::string_view::npos) {
        host = host.substr(0, colon);
    }
    while (!host.empty() && host.back() == '.')
        host.remove_suffix(1);
    if (host.size() > cap) return {};
    for (std::size_t i = 0; i < host.size(); ++i) {
        const char c = host[i];
        buf[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
    return {buf, host.size()};
}

std::string normalize_host(std::string_view host) {
    std::string buf(host.size(), '\0');
    return std::string(normalize_host(host, buf.data(), buf.size()));
}

bool path_has_prefix(std::string_view path, std::string_view prefix) noexcept {
    if (!path.starts_with(prefix)) return false;
    if (path.size() == prefix.size() || prefix.ends_with('/')) return true;
    const char next = path[prefix.size()];
    return next == '/' || next == '?' || next == '#';
}

}  // namespace spoa::handlers::routing
