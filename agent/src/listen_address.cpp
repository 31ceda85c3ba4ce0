#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>

#include <array>
#include <charconv>
#include <stdexcept>

#include "spoa/agent/config.hpp"
#include "spoa/agent/ip_address.hpp"

namespace spoa {

listen_address listen_address::parse(std::string_view text) {
    listen_address a;
    if (text.starts_with("unix:")) {
        a.type = kind::unix_socket;
        a.path = std::string(text.substr(5));
        if (a.path.empty())
            throw std::invalid_argument("empty Unix socket path in '" + std::string(text) + "'");
        if (a.path.size() >= sizeof(sockaddr_un::sun_path)) {
            throw std::invalid_argument("Unix socket path too long: '" + a.path + "'");
        }
        return a;
    }
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
        throw std::invalid_argument("listen address '" + std::string(text) +
                                    "' is not host:port, [v6]:port or unix:/path");
    }
    std::string_view host = text.substr(0, colon);
    const std::string_view port = text.substr(colon + 1);
    unsigned p = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p > 65535) {
        throw std::invalid_argument("bad port in listen address '" + std::string(text) + "'");
    }
    if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
    if (host.empty() || host == "*") host = "0.0.0.0";
    if (host == "localhost") host = "127.0.0.1";
    in6_addr tmp{};
    if (::inet_pton(AF_INET, std::string(host).c_str(), &tmp) != 1 &&
        ::inet_pton(AF_INET6, std::string(host).c_str(), &tmp) != 1) {
        throw std::invalid_argument("listen address '" + std::string(text) +
                                    "': host must be a numeric IPv4 or IPv6 address");
    }
    a.host = std::string(host);
    a.port = static_cast<std::uint16_t>(p);
    return a;
}

std::size_t listen_address::to_sockaddr(sockaddr_storage& out) const {
    out = {};
    auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
    if (type == kind::tcp && ::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        return sizeof *v4;
    }
    if (type == kind::tcp && ::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        return sizeof *v6;
    }
    throw std::invalid_argument("not a numeric TCP address: " + to_string());
}

bool listen_address::is_local() const noexcept {
    if (type == kind::unix_socket) return true;
    const auto ip = ip_address::parse(host);
    if (!ip) return false;
    if (ip->is_v4()) return ip->data()[0] == 127;
    static constexpr std::array<std::uint8_t, 16> v6_loopback{0, 0, 0, 0, 0, 0, 0, 0,
                                                              0, 0, 0, 0, 0, 0, 0, 1};
    return ip->v6_bytes() == v6_loopback;
}

std::string listen_address::to_string() const {
    if (type == kind::unix_socket) return "unix:" + path;
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

}  // namespace spoa
