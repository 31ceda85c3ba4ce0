#include "spoa/handlers/routing/resource_id.hpp"

namespace spoa::routing {

std::string_view normalize_host(std::string_view host, char* buf, std::size_t cap) noexcept {
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
    std::string out(host.size(), '\0');
    const auto v = normalize_host(host, out.data(), out.size());
    out.resize(v.size());
    return out;
}

}  // namespace spoa::routing
