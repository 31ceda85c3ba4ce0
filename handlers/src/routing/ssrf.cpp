#include "spoa/handlers/routing/ssrf.hpp"

#include <charconv>

namespace spoa::handlers::routing {

std::optional<cidr> cidr::parse(std::string_view text) {
    const auto slash = text.find('/');
    const auto addr = ip_address::parse(text.substr(0, slash));
    if (!addr) return std::nullopt;
    const unsigned max_prefix = addr->is_v4() ? 32 : 128;
    unsigned prefix = max_prefix;
    if (slash != std::string_view::npos) {
        const auto p = text.substr(slash + 1);
        const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
        if (p.empty() || ec != std::errc() || end != p.data() + p.size() || prefix > max_prefix) {
            return std::nullopt;
        }
    }
    std::array<std::uint8_t, 16> bytes = addr->v6_bytes();
    for (unsigned bit = prefix; bit < max_prefix; ++bit) {
        bytes[bit / 8] = static_cast<std::uint8_t>(bytes[bit / 8] & ~(0x80u >> (bit % 8)));
    }
    cidr c;
    c.network_ = addr->is_v4() ? ip_address::v4({bytes[0], bytes[1], bytes[2], bytes[3]})
                               : ip_address::v6(bytes);
    c.prefix_ = prefix;
    return c;
}

bool cidr::contains(const ip_address& ip) const noexcept {
    if (ip.af() != network_.af()) return false;
    const std::uint8_t* a = ip.data();
    const std::uint8_t* n = network_.data();
    const unsigned full = prefix_ / 8;
    for (unsigned i = 0; i < full; ++i) {
        if (a[i] != n[i]) return false;
    }
    const unsigned rest = prefix_ % 8;
    if (rest == 0) return true;
    const auto mask = static_cast<std::uint8_t>(0xFFu << (8 - rest));
    return (a[full] & mask) == (n[full] & mask);
}

std::string cidr::to_string() const {
    return network_.to_string() + "/" + std::to_string(prefix_);
}

std::optional<ip_address> embedded_ipv4(const ip_address& ip) noexcept {
    if (!ip.is_v6()) return std::nullopt;
    const std::uint8_t* b = ip.data();
    const auto zero = [b](int from, int to) {
        for (int i = from; i < to; ++i) {
            if (b[i] != 0) return false;
        }
        return true;
    };
    const auto last4 = [b] { return ip_address::v4({b[12], b[13], b[14], b[15]}); };
    // ::ffff:a.b.c.d (IPv4-mapped, RFC 4291)
    if (zero(0, 10) && b[10] == 0xFF && b[11] == 0xFF) return last4();
    // 64:ff9b::a.b.c.d (NAT64 well-known prefix, RFC 6052)
    if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B && zero(4, 12)) return last4();
    // 2002:AABB:CCDD::/48 (6to4, RFC 3056)
    if (b[0] == 0x20 && b[1] == 0x02) return ip_address::v4({b[2], b[3], b[4], b[5]});
    // 2001:0000::/32 (Teredo, RFC 4380): the client address, stored inverted in the last 32 bits
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x00 && b[3] == 0x00) {
        return ip_address::v4({static_cast<std::uint8_t>(~b[12]), static_cast<std::uint8_t>(~b[13]),
                               static_cast<std::uint8_t>(~b[14]),
                               static_cast<std::uint8_t>(~b[15])});
    }
    // ::a.b.c.d (IPv4-compatible, deprecated); :: and ::1 are IPv6's own.
    if (zero(0, 12) && !(zero(12, 15) && b[15] <= 1)) return last4();
    return std::nullopt;
}

namespace {

std::vector<named_range> ranges(std::initializer_list<std::pair<const char*, const char*>> list) {
    std::vector<named_range> out;
    for (const auto& [text, name] : list)
        out.push_back({*cidr::parse(text), name});
    return out;
}

const named_range* find(const std::vector<named_range>& list, const ip_address& ip) {
    for (const auto& r : list) {
        if (r.range.contains(ip)) return &r;
    }
    return nullptr;
}

}  // namespace

std::vector<named_range> ssrf_policy::default_blocked() {
    return ranges({
        {"0.0.0.0/8", "\"this network\" (RFC 1122)"},
        {"10.0.0.0/8", "private (RFC 1918)"},
        {"100.64.0.0/10", "carrier-grade NAT (RFC 6598)"},
        {"127.0.0.0/8", "loopback"},
        {"169.254.0.0/16", "link-local, cloud metadata (RFC 3927)"},
        {"172.16.0.0/12", "private (RFC 1918)"},
        {"192.0.0.0/24", "IETF protocol assignments (RFC 6890)"},
        {"192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"},
        {"192.88.99.0/24", "6to4 relay anycast (RFC 7526)"},
        {"192.168.0.0/16", "private (RFC 1918)"},
        {"198.18.0.0/15", "benchmarking (RFC 2544)"},
        {"198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"},
        {"203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"},
        {"224.0.0.0/4", "multicast"},
        {"240.0.0.0/4", "reserved (RFC 1112) and broadcast"},
        {"::/128", "unspecified"},
        {"::1/128", "loopback"},
        {"64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"},
        {"100::/64", "discard-only (RFC 6666)"},
        {"2001:db8::/32", "documentation (RFC 3849)"},
        {"fc00::/7", "unique local (RFC 4193)"},
        {"fe80::/10", "link-local"},
        {"fec0::/10", "site-local (deprecated)"},
        {"ff00::/8", "multicast"},
    });
}

std::vector<named_range> ssrf_policy::never_allowed() {
    return ranges({
        {"0.0.0.0/8", "\"this network\" (RFC 1122)"},
        {"169.254.0.0/16", "link-local, cloud metadata (RFC 3927)"},
        {"224.0.0.0/4", "multicast"},
        {"240.0.0.0/4", "reserved (RFC 1112) and broadcast"},
        {"::/128", "unspecified"},
        {"fe80::/10", "link-local"},
        {"ff00::/8", "multicast"},
    });
}

ssrf_policy::ssrf_policy() : blocked_(default_blocked()), never_(never_allowed()) {}

ssrf_policy ssrf_policy::allowlist(std::vector<named_range> allowed) {
    ssrf_policy p;
    p.mode_ = mode::allowlist;
    p.blocked_.clear();
    p.allowed_ = std::move(allowed);
    return p;
}

ssrf_policy ssrf_policy::blocklist(std::vector<named_range> extra) {
    ssrf_policy p;
    for (auto& r : extra)
        p.blocked_.push_back(std::move(r));
    return p;
}

std::optional<std::string> ssrf_policy::check_one(const ip_address& ip) const {
    if (const auto* r = find(never_, ip)) {
        return ip.to_string() + " is in " + r->range.to_string() + " (" + r->name + ")";
    }
    if (mode_ == mode::allowlist) {
        if (find(allowed_, ip)) return std::nullopt;
        return ip.to_string() + " is not in the allowlist";
    }
    if (const auto* r = find(blocked_, ip)) {
        return ip.to_string() + " is in " + r->range.to_string() + " (" + r->name + ")";
    }
    return std::nullopt;
}

std::optional<std::string> ssrf_policy::check(const ip_address& ip) const {
    // An IPv6 form carrying an IPv4 address reaches that IPv4 host: judge it by that address,
    // so ::ffff:127.0.0.1 or 2002:7f00:1:: cannot sneak past a blocked 127.0.0.0/8.
    if (const auto v4 = embedded_ipv4(ip)) {
        if (auto reason = check_one(*v4)) return ip.to_string() + " embeds " + *reason;
        return std::nullopt;
    }
    return check_one(ip);
}

std::optional<std::string> ssrf_policy::check(const ip_address& ip, std::uint32_t port) const {
    if (port == 0 || port > 65535) return "port " + std::to_string(port) + " is outside 1-65535";
    return check(ip);
}

}  // namespace spoa::handlers::routing
