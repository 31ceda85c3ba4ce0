#pragma once
/// Where to connect to (the control plane): `host:port` with a host name or a numeric IPv4
/// address, `[v6]:port`, or `unix:/path`. Unlike a listen address, the host may be a name: it is
/// looked up when connecting (see host_lookup.hpp), not when the configuration is read, so a
/// name that changes its addresses is followed and a name not yet in DNS at start is no error.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "spoa/agent/ip_address.hpp"

namespace spoa::handlers::routing {

struct connect_address {
    enum class kind : std::uint8_t { tcp, unix_socket };
    kind type = kind::tcp;
    std::string host;  ///< tcp: a host name, or a numeric address (IPv6 without brackets)
    std::uint16_t port = 0;
    std::string path;  ///< unix: the socket path

    /// Checks the syntax only (no lookup). Throws std::invalid_argument naming the bad part: a
    /// missing or out-of-range port (1-65535), an empty host, a host that is neither a numeric
    /// address nor a host name (letters, digits, '-', '_' and '.' in labels of 1-63), an empty
    /// or too long socket path.
    [[nodiscard]] static connect_address parse(std::string_view text);
    /// The host as an address when it is numeric (no lookup needed); nullopt for a name or unix.
    [[nodiscard]] std::optional<ip_address> numeric_host() const;
    /// As parse() takes it: `host:port`, `[v6]:port` or `unix:/path`.
    [[nodiscard]] std::string to_string() const;
};

/// `ip:port`, or `[v6]:port`: a resolved address in log lines and metrics.
[[nodiscard]] std::string to_string(const ip_address& ip, std::uint16_t port);

}  // namespace spoa::handlers::routing
