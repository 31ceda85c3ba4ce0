#pragma once
/// SSRF validation of backend addresses: real CIDR arithmetic over IPv4/IPv6 bytes, a default
/// blocklist of non-public ranges, an allowlist mode, and IPv6 forms that embed an IPv4 address
/// (mapped, NAT64, 6to4, Teredo, compatible) judged by the IPv4 address they carry.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spoa/agent/ip_address.hpp"

namespace spoa::handlers::routing {

class cidr {
  public:
    /// "10.0.0.0/8", "fe80::/10", or a bare address (host route). Host bits are cleared.
    [[nodiscard]] static std::optional<cidr> parse(std::string_view text);
    [[nodiscard]] bool contains(const ip_address& ip) const noexcept;
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] const ip_address& network() const noexcept { return network_; }
    [[nodiscard]] unsigned prefix_length() const noexcept { return prefix_; }

  private:
    ip_address network_;
    unsigned prefix_ = 0;
};

struct named_range {
    cidr range;
    std::string name;  ///< why it is listed, e.g. "RFC 1918 private"
};

/// The IPv4 address an IPv6 address carries, if it is one of the embedding forms:
/// ::ffff:0:0/96 (mapped), 64:ff9b::/96 (NAT64), 2002::/16 (6to4), 2001::/32 (Teredo, the
/// client address), ::/96 (deprecated compatible form, except :: and ::1).
[[nodiscard]] std::optional<ip_address> embedded_ipv4(const ip_address& v6) noexcept;

class ssrf_policy {
  public:
    enum class mode : std::uint8_t { blocklist, allowlist };

    /// Blocklist mode with the default ranges (see default_blocked()).
    ssrf_policy();

    /// Loopback, RFC 1918, link-local (incl. 169.254.169.254), CGNAT, 0/8, multicast,
    /// reserved/broadcast, documentation and benchmarking ranges; IPv6 loopback, unspecified,
    /// ULA, link-local, site-local, multicast, discard, documentation, local-use NAT64.
    [[nodiscard]] static std::vector<named_range> default_blocked();
    /// Never valid as a backend in either mode: unspecified, "this network", link-local
    /// (cloud metadata lives there), multicast, reserved and broadcast.
    [[nodiscard]] static std::vector<named_range> never_allowed();

    /// Only `allowed` ranges pass (never_allowed() still applies).
    static ssrf_policy allowlist(std::vector<named_range> allowed);
    /// default_blocked() plus `extra`.
    static ssrf_policy blocklist(std::vector<named_range> extra = {});

    [[nodiscard]] mode policy_mode() const noexcept { return mode_; }
    /// nullopt when `ip` may be used; otherwise a reason naming the range.
    [[nodiscard]] std::optional<std::string> check(const ip_address& ip) const;
    /// Same, plus the port (1-65535).
    [[nodiscard]] std::optional<std::string> check(const ip_address& ip, std::uint32_t port) const;

  private:
    [[nodiscard]] std::optional<std::string> check_one(const ip_address& ip) const;

    mode mode_ = mode::blocklist;
    std::vector<named_range> blocked_;
    std::vector<named_range> allowed_;
    std::vector<named_range> never_;
};

}  // namespace spoa::handlers::routing
