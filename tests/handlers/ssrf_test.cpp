// SSRF policy: CIDR arithmetic, the default blocklist range by range (an address inside, the
// addresses just outside), allowlist mode, never_allowed ranges, IPv6 forms embedding an IPv4
// address, ports, and the refusal reasons.

#include <catch2/catch.hpp>

#include <optional>
#include <string>
#include <vector>

#include "spoa/handlers/routing/ssrf.hpp"

namespace spoa::handlers::routing {
namespace {

using Catch::Matchers::EndsWith;

ip_address ip(std::string_view text) {
    const auto a = ip_address::parse(text);
    if (!a) throw std::invalid_argument("test bug: not an address: " + std::string(text));
    return *a;
}

cidr net(std::string_view text) {
    const auto c = cidr::parse(text);
    if (!c) throw std::invalid_argument("test bug: not a CIDR: " + std::string(text));
    return *c;
}

named_range range(std::string_view text, std::string name = "test") {
    return {net(text), std::move(name)};
}

}  // namespace

TEST_CASE("ssrf: cidr::parse clears host bits and prints the network", "[ssrf][cidr]") {
    CHECK(net("10.1.2.3/8").to_string() == "10.0.0.0/8");
    CHECK(net("100.127.255.255/10").to_string() == "100.64.0.0/10");
    CHECK(net("172.31.1.1/12").to_string() == "172.16.0.0/12");
    CHECK(net("198.19.7.7/15").to_string() == "198.18.0.0/15");
    CHECK(net("fdff:1::1/7").to_string() == "fc00::/7");
    CHECK(net("64:ff9b:1:abcd::1/48").to_string() == "64:ff9b:1::/48");
    CHECK(net("febf::1/10").to_string() == "fe80::/10");
    CHECK(net("192.0.2.77/32").to_string() == "192.0.2.77/32");
    CHECK(net("1.2.3.4/0").to_string() == "0.0.0.0/0");
    CHECK(net("2001:db8::1/0").to_string() == "::/0");
    // A bare address is a host route.
    CHECK(net("192.0.2.1").to_string() == "192.0.2.1/32");
    CHECK(net("192.0.2.1").prefix_length() == 32);
    CHECK(net("2001:db8::1").to_string() == "2001:db8::1/128");
    CHECK(net("2001:db8::1").prefix_length() == 128);
    CHECK(net("::/128").prefix_length() == 128);
    CHECK(net("10.0.0.0/8").network() == ip("10.0.0.0"));
}

TEST_CASE("ssrf: cidr::parse refuses what is not a CIDR", "[ssrf][cidr]") {
    for (const char* bad : {
             "",
             "garbage",
             "garbage/8",
             "10.0.0.0/33",
             "10.0.0.0/64",
             "::/129",
             "fe80::/200",
             "10.0.0.0/",
             "10.0.0.0/-1",
             "10.0.0.0/+8",
             "10.0.0.0/8x",
             "10.0.0.0/ 8",
             "10.0.0.0 /8",
             "10.0.0.0/8/8",
             "10.0.0.0//8",
             "10.0.0/8",
             "10.0.0.256/8",
             "10.0.0.0/4294967304",  // 2^32 + 8: does not wrap to 8
             "[::1]/128",
             "/8",
             "fe80::1%eth0/64",
         }) {
        INFO("input: '" << bad << "'");
        CHECK_FALSE(cidr::parse(bad).has_value());
    }
}

TEST_CASE("ssrf: cidr::contains on non-byte-aligned prefixes", "[ssrf][cidr]") {
    struct probe {
        const char* range;
        const char* address;
        bool inside;
    };
    const std::vector<probe> probes{
        // /10
        {"100.64.0.0/10", "100.64.0.0", true},
        {"100.64.0.0/10", "100.127.255.255", true},
        {"100.64.0.0/10", "100.128.0.0", false},
        {"100.64.0.0/10", "100.63.255.255", false},
        // /12
        {"172.16.0.0/12", "172.16.0.0", true},
        {"172.16.0.0/12", "172.31.255.255", true},
        {"172.16.0.0/12", "172.32.0.0", false},
        {"172.16.0.0/12", "172.15.255.255", false},
        // /15
        {"198.18.0.0/15", "198.18.0.0", true},
        {"198.18.0.0/15", "198.19.255.255", true},
        {"198.18.0.0/15", "198.20.0.0", false},
        {"198.18.0.0/15", "198.17.255.255", false},
        // /7
        {"fc00::/7", "fc00::", true},
        {"fc00::/7", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
        {"fc00::/7", "fe00::", false},
        {"fc00::/7", "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false},
        // /48
        {"64:ff9b:1::/48", "64:ff9b:1::", true},
        {"64:ff9b:1::/48", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff", true},
        {"64:ff9b:1::/48", "64:ff9b:2::", false},
        {"64:ff9b:1::/48", "64:ff9b:0:ffff:ffff:ffff:ffff:ffff", false},
        // /10 in IPv6
        {"fe80::/10", "febf:ffff::1", true},
        {"fe80::/10", "fec0::", false},
        // /0, /32, /128
        {"0.0.0.0/0", "255.255.255.255", true},
        {"::/0", "ffff::1", true},
        {"192.0.2.1/32", "192.0.2.1", true},
        {"192.0.2.1/32", "192.0.2.0", false},
        {"192.0.2.1/32", "192.0.2.2", false},
        {"::1/128", "::1", true},
        {"::1/128", "::", false},
        {"::1/128", "::2", false},
        // Families never mix, not even for /0 or the mapped form.
        {"0.0.0.0/0", "::ffff:10.0.0.1", false},
        {"0.0.0.0/0", "::", false},
        {"::/0", "10.0.0.1", false},
        {"10.0.0.0/8", "::ffff:10.0.0.1", false},
    };
    for (const auto& p : probes) {
        INFO(p.address << " in " << p.range);
        CHECK(net(p.range).contains(ip(p.address)) == p.inside);
    }
}

TEST_CASE("ssrf: default blocklist: every range, inside and just outside", "[ssrf]") {
    // Every range of default_blocked(), with the name it is reported under.
    const std::vector<std::pair<std::string, std::string>> expected_ranges{
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
    };
    const auto blocked = ssrf_policy::default_blocked();
    REQUIRE(blocked.size() == expected_ranges.size());
    for (std::size_t i = 0; i < blocked.size(); ++i) {
        CHECK(blocked[i].range.to_string() == expected_ranges[i].first);
        CHECK(blocked[i].name == expected_ranges[i].second);
    }

    // address -> nullopt (allowed) or the exact reason. For each range: its first and last
    // address (refused) and the first address after it and the last one before it (allowed
    // unless they fall in the next listed range, which is then named).
    const std::vector<std::pair<const char*, std::optional<std::string>>> table{
        // 0.0.0.0/8
        {"0.0.0.0", "0.0.0.0 is in 0.0.0.0/8 (\"this network\" (RFC 1122))"},
        {"0.255.255.255", "0.255.255.255 is in 0.0.0.0/8 (\"this network\" (RFC 1122))"},
        {"1.0.0.0", std::nullopt},
        // 10.0.0.0/8
        {"9.255.255.255", std::nullopt},
        {"10.0.0.0", "10.0.0.0 is in 10.0.0.0/8 (private (RFC 1918))"},
        {"10.255.255.255", "10.255.255.255 is in 10.0.0.0/8 (private (RFC 1918))"},
        {"11.0.0.0", std::nullopt},
        // 100.64.0.0/10
        {"100.63.255.255", std::nullopt},
        {"100.64.0.0", "100.64.0.0 is in 100.64.0.0/10 (carrier-grade NAT (RFC 6598))"},
        {"100.127.255.255", "100.127.255.255 is in 100.64.0.0/10 (carrier-grade NAT (RFC 6598))"},
        {"100.128.0.0", std::nullopt},
        // 127.0.0.0/8
        {"126.255.255.255", std::nullopt},
        {"127.0.0.1", "127.0.0.1 is in 127.0.0.0/8 (loopback)"},
        {"127.255.255.255", "127.255.255.255 is in 127.0.0.0/8 (loopback)"},
        {"128.0.0.0", std::nullopt},
        // 169.254.0.0/16
        {"169.253.255.255", std::nullopt},
        {"169.254.169.254",
         "169.254.169.254 is in 169.254.0.0/16 (link-local, cloud metadata (RFC 3927))"},
        {"169.254.255.255",
         "169.254.255.255 is in 169.254.0.0/16 (link-local, cloud metadata (RFC 3927))"},
        {"169.255.0.0", std::nullopt},
        // 172.16.0.0/12
        {"172.15.255.255", std::nullopt},
        {"172.16.0.0", "172.16.0.0 is in 172.16.0.0/12 (private (RFC 1918))"},
        {"172.31.255.255", "172.31.255.255 is in 172.16.0.0/12 (private (RFC 1918))"},
        {"172.32.0.0", std::nullopt},
        // 192.0.0.0/24 and 192.0.2.0/24
        {"191.255.255.255", std::nullopt},
        {"192.0.0.0", "192.0.0.0 is in 192.0.0.0/24 (IETF protocol assignments (RFC 6890))"},
        {"192.0.0.255", "192.0.0.255 is in 192.0.0.0/24 (IETF protocol assignments (RFC 6890))"},
        {"192.0.1.0", std::nullopt},
        {"192.0.1.255", std::nullopt},
        {"192.0.2.0", "192.0.2.0 is in 192.0.2.0/24 (documentation TEST-NET-1 (RFC 5737))"},
        {"192.0.2.255", "192.0.2.255 is in 192.0.2.0/24 (documentation TEST-NET-1 (RFC 5737))"},
        {"192.0.3.0", std::nullopt},
        // 192.88.99.0/24
        {"192.88.98.255", std::nullopt},
        {"192.88.99.1", "192.88.99.1 is in 192.88.99.0/24 (6to4 relay anycast (RFC 7526))"},
        {"192.88.99.255", "192.88.99.255 is in 192.88.99.0/24 (6to4 relay anycast (RFC 7526))"},
        {"192.88.100.0", std::nullopt},
        // 192.168.0.0/16
        {"192.167.255.255", std::nullopt},
        {"192.168.0.0", "192.168.0.0 is in 192.168.0.0/16 (private (RFC 1918))"},
        {"192.168.255.255", "192.168.255.255 is in 192.168.0.0/16 (private (RFC 1918))"},
        {"192.169.0.0", std::nullopt},
        // 198.18.0.0/15
        {"198.17.255.255", std::nullopt},
        {"198.18.0.0", "198.18.0.0 is in 198.18.0.0/15 (benchmarking (RFC 2544))"},
        {"198.19.255.255", "198.19.255.255 is in 198.18.0.0/15 (benchmarking (RFC 2544))"},
        {"198.20.0.0", std::nullopt},
        // 198.51.100.0/24
        {"198.51.99.255", std::nullopt},
        {"198.51.100.0",
         "198.51.100.0 is in 198.51.100.0/24 (documentation TEST-NET-2 (RFC 5737))"},
        {"198.51.100.255",
         "198.51.100.255 is in 198.51.100.0/24 (documentation TEST-NET-2 (RFC 5737))"},
        {"198.51.101.0", std::nullopt},
        // 203.0.113.0/24
        {"203.0.112.255", std::nullopt},
        {"203.0.113.0", "203.0.113.0 is in 203.0.113.0/24 (documentation TEST-NET-3 (RFC 5737))"},
        {"203.0.113.255",
         "203.0.113.255 is in 203.0.113.0/24 (documentation TEST-NET-3 (RFC 5737))"},
        {"203.0.114.0", std::nullopt},
        // 224.0.0.0/4, then 240.0.0.0/4 right after it, up to the end of the space
        {"223.255.255.255", std::nullopt},
        {"224.0.0.0", "224.0.0.0 is in 224.0.0.0/4 (multicast)"},
        {"239.255.255.255", "239.255.255.255 is in 224.0.0.0/4 (multicast)"},
        {"240.0.0.0", "240.0.0.0 is in 240.0.0.0/4 (reserved (RFC 1112) and broadcast)"},
        {"255.255.255.255",
         "255.255.255.255 is in 240.0.0.0/4 (reserved (RFC 1112) and broadcast)"},
        // Public addresses
        {"8.8.8.8", std::nullopt},
        {"1.1.1.1", std::nullopt},
        {"93.184.216.34", std::nullopt},
        // ::/128 and ::1/128: the next address, ::2, is the IPv4-compatible form of 0.0.0.2
        {"::", ":: is in ::/128 (unspecified)"},
        {"::1", "::1 is in ::1/128 (loopback)"},
        {"::2", "::2 embeds 0.0.0.2 is in 0.0.0.0/8 (\"this network\" (RFC 1122))"},
        // 64:ff9b:1::/48
        {"64:ff9b:0:ffff:ffff:ffff:ffff:ffff", std::nullopt},
        {"64:ff9b:1::", "64:ff9b:1:: is in 64:ff9b:1::/48 (local-use NAT64 (RFC 8215))"},
        {"64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
         "64:ff9b:1:ffff:ffff:ffff:ffff:ffff is in 64:ff9b:1::/48 (local-use NAT64 (RFC 8215))"},
        {"64:ff9b:2::", std::nullopt},
        // 100::/64
        {"ff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", std::nullopt},
        {"100::", "100:: is in 100::/64 (discard-only (RFC 6666))"},
        {"100::ffff:ffff:ffff:ffff",
         "100::ffff:ffff:ffff:ffff is in 100::/64 (discard-only (RFC 6666))"},
        {"100:0:0:1::", std::nullopt},
        // 2001:db8::/32
        {"2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", std::nullopt},
        {"2001:db8::", "2001:db8:: is in 2001:db8::/32 (documentation (RFC 3849))"},
        {"2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
         "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff is in 2001:db8::/32 (documentation (RFC 3849))"},
        {"2001:db9::", std::nullopt},
        // fc00::/7
        {"fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", std::nullopt},
        {"fc00::", "fc00:: is in fc00::/7 (unique local (RFC 4193))"},
        {"fd12:3456::1", "fd12:3456::1 is in fc00::/7 (unique local (RFC 4193))"},
        {"fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
         "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff is in fc00::/7 (unique local (RFC 4193))"},
        {"fe00::", std::nullopt},
        // fe80::/10, then fec0::/10 and ff00::/8 right after each other
        {"fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", std::nullopt},
        {"fe80::1", "fe80::1 is in fe80::/10 (link-local)"},
        {"febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
         "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff is in fe80::/10 (link-local)"},
        {"fec0::", "fec0:: is in fec0::/10 (site-local (deprecated))"},
        {"feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
         "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff is in fec0::/10 (site-local (deprecated))"},
        {"ff00::", "ff00:: is in ff00::/8 (multicast)"},
        {"ff02::1", "ff02::1 is in ff00::/8 (multicast)"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff is in ff00::/8 (multicast)"},
        // Public IPv6
        {"2606:4700:4700::1111", std::nullopt},
        {"2a00:1450:4007:80e::200e", std::nullopt},
    };
    const ssrf_policy policy;  // default: blocklist mode
    REQUIRE(policy.policy_mode() == ssrf_policy::mode::blocklist);
    for (const auto& [address, reason] : table) {
        INFO("address " << address);
        const auto got = policy.check(ip(address));
        if (!reason) {
            CHECK(got == std::nullopt);
        } else {
            REQUIRE(got.has_value());
            CHECK(*got == *reason);
        }
    }
}

TEST_CASE("ssrf: blocklist() adds extra ranges to the defaults", "[ssrf]") {
    const auto policy = ssrf_policy::blocklist({range("8.8.8.0/24", "no public DNS")});
    CHECK(policy.policy_mode() == ssrf_policy::mode::blocklist);
    CHECK(policy.check(ip("8.8.8.8")) == "8.8.8.8 is in 8.8.8.0/24 (no public DNS)");
    CHECK(policy.check(ip("8.8.9.8")) == std::nullopt);
    CHECK(policy.check(ip("10.0.0.1")) == "10.0.0.1 is in 10.0.0.0/8 (private (RFC 1918))");
    // The embedded form of a newly blocked address is refused too.
    CHECK(policy.check(ip("::ffff:8.8.8.8")) ==
          "::ffff:8.8.8.8 embeds 8.8.8.8 is in 8.8.8.0/24 (no public DNS)");
}

TEST_CASE("ssrf: allowlist mode: inside allowed, outside refused", "[ssrf]") {
    const auto policy = ssrf_policy::allowlist({range("10.0.0.0/8", "platform")});
    CHECK(policy.policy_mode() == ssrf_policy::mode::allowlist);
    CHECK(policy.check(ip("10.0.0.0")) == std::nullopt);
    CHECK(policy.check(ip("10.1.2.3")) == std::nullopt);
    CHECK(policy.check(ip("10.255.255.255")) == std::nullopt);
    CHECK(policy.check(ip("11.0.0.0")) == "11.0.0.0 is not in the allowlist");
    CHECK(policy.check(ip("9.255.255.255")) == "9.255.255.255 is not in the allowlist");
    CHECK(policy.check(ip("8.8.8.8")) == "8.8.8.8 is not in the allowlist");
    // The default blocklist does not apply in allowlist mode (only never_allowed does).
    CHECK(policy.check(ip("127.0.0.1")) == "127.0.0.1 is not in the allowlist");
    CHECK(policy.check(ip("2001:db8::1")) == "2001:db8::1 is not in the allowlist");
    // Embedded IPv4 forms are judged by their IPv4 address.
    CHECK(policy.check(ip("::ffff:10.1.2.3")) == std::nullopt);
    CHECK(policy.check(ip("64:ff9b::a00:1")) == std::nullopt);
    CHECK(policy.check(ip("::ffff:11.0.0.1")) ==
          "::ffff:11.0.0.1 embeds 11.0.0.1 is not in the allowlist");

    const auto v6 = ssrf_policy::allowlist({range("fd00::/8", "platform v6")});
    CHECK(v6.check(ip("fd00::1")) == std::nullopt);
    CHECK(v6.check(ip("fdff:ffff::1")) == std::nullopt);
    CHECK(v6.check(ip("fc00::1")) == "fc00::1 is not in the allowlist");
    CHECK(v6.check(ip("10.0.0.1")) == "10.0.0.1 is not in the allowlist");

    const auto none = ssrf_policy::allowlist({});
    CHECK(none.check(ip("8.8.8.8")) == "8.8.8.8 is not in the allowlist");
}

TEST_CASE("ssrf: never_allowed ranges are refused even when allowlisted", "[ssrf]") {
    const auto never = ssrf_policy::never_allowed();
    std::vector<std::string> names;
    for (const auto& r : never)
        names.push_back(r.range.to_string());
    CHECK(names == std::vector<std::string>{"0.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4",
                                            "240.0.0.0/4", "::/128", "fe80::/10", "ff00::/8"});

    const auto everything =
        ssrf_policy::allowlist({range("0.0.0.0/0", "all IPv4"), range("::/0", "all IPv6")});
    CHECK(everything.check(ip("169.254.169.254")) ==
          "169.254.169.254 is in 169.254.0.0/16 (link-local, cloud metadata (RFC 3927))");
    CHECK(everything.check(ip("0.0.0.0")) ==
          "0.0.0.0 is in 0.0.0.0/8 (\"this network\" (RFC 1122))");
    CHECK(everything.check(ip("224.0.0.1")) == "224.0.0.1 is in 224.0.0.0/4 (multicast)");
    CHECK(everything.check(ip("255.255.255.255")) ==
          "255.255.255.255 is in 240.0.0.0/4 (reserved (RFC 1112) and broadcast)");
    CHECK(everything.check(ip("::")) == ":: is in ::/128 (unspecified)");
    CHECK(everything.check(ip("fe80::1")) == "fe80::1 is in fe80::/10 (link-local)");
    CHECK(everything.check(ip("ff02::1")) == "ff02::1 is in ff00::/8 (multicast)");
    // The metadata address hidden in an IPv6 form is refused as well.
    CHECK(everything.check(ip("::ffff:169.254.169.254")) ==
          "::ffff:169.254.169.254 embeds 169.254.169.254 is in 169.254.0.0/16 (link-local, "
          "cloud metadata (RFC 3927))");
    // What the allowlist lets through: private and loopback ranges are the operator's choice.
    CHECK(everything.check(ip("127.0.0.1")) == std::nullopt);
    CHECK(everything.check(ip("10.0.0.1")) == std::nullopt);
    CHECK(everything.check(ip("::1")) == std::nullopt);
    CHECK(everything.check(ip("8.8.8.8")) == std::nullopt);

    // Never-allowed also wins over a blocklist policy's own ranges: reason names that range.
    const ssrf_policy blocklist;
    CHECK(blocklist.check(ip("169.254.169.254")) ==
          "169.254.169.254 is in 169.254.0.0/16 (link-local, cloud metadata (RFC 3927))");
}

TEST_CASE("ssrf: embedded_ipv4 recognises the IPv6 forms carrying an IPv4 address", "[ssrf]") {
    const std::vector<std::pair<const char*, std::optional<const char*>>> table{
        {"::ffff:127.0.0.1", "127.0.0.1"},                      // mapped
        {"::ffff:8.8.8.8", "8.8.8.8"},                          // mapped
        {"64:ff9b::a00:1", "10.0.0.1"},                         // NAT64 well-known prefix
        {"64:ff9b::7f00:1", "127.0.0.1"},                       // NAT64
        {"2002:7f00:1::", "127.0.0.1"},                         // 6to4
        {"2002:808:808::1", "8.8.8.8"},                         // 6to4
        {"2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1"},  // Teredo, client inverted
        {"2001::ffff:ffff", "0.0.0.0"},                         // Teredo
        {"::7f00:1", "127.0.0.1"},                              // IPv4-compatible
        {"::a00:1", "10.0.0.1"},                                // IPv4-compatible
        {"::2", "0.0.0.2"},                                     // IPv4-compatible
        {"::", std::nullopt},                                   // unspecified: IPv6's own
        {"::1", std::nullopt},                                  // loopback: IPv6's own
        {"::1:0:0:0", std::nullopt},
        {"::fffe:7f00:1", std::nullopt},      // not the mapped prefix
        {"64:ff9b:1::7f00:1", std::nullopt},  // local-use NAT64 is not embedded
        {"2001:db8::7f00:1", std::nullopt},   // documentation, not Teredo
        {"2003::7f00:1", std::nullopt},
        {"fe80::7f00:1", std::nullopt},
        {"2606:4700:4700::1111", std::nullopt},
    };
    for (const auto& [v6, v4] : table) {
        INFO(v6);
        const auto got = embedded_ipv4(ip(v6));
        if (!v4) {
            CHECK(got == std::nullopt);
        } else {
            REQUIRE(got.has_value());
            CHECK(got->to_string() == *v4);
            CHECK(got->is_v4());
        }
    }
    // An IPv4 address embeds nothing.
    CHECK(embedded_ipv4(ip("127.0.0.1")) == std::nullopt);
}

TEST_CASE("ssrf: IPv6 forms embedding IPv4 are judged by the embedded address", "[ssrf]") {
    const ssrf_policy policy;
    const std::string loopback = " embeds 127.0.0.1 is in 127.0.0.0/8 (loopback)";
    CHECK(policy.check(ip("::ffff:127.0.0.1")) == "::ffff:127.0.0.1" + loopback);
    CHECK(policy.check(ip("2002:7f00:1::")) == "2002:7f00:1::" + loopback);
    CHECK(policy.check(ip("64:ff9b::7f00:1")) == "64:ff9b::7f00:1" + loopback);
    CHECK(policy.check(ip("2001:0:4136:e378:8000:63bf:80ff:fffe")) ==
          "2001:0:4136:e378:8000:63bf:80ff:fffe" + loopback);
    // inet_ntop may print the compatible form as ::127.0.0.1: check the judged part only.
    REQUIRE(policy.check(ip("::7f00:1")).has_value());
    CHECK_THAT(*policy.check(ip("::7f00:1")), EndsWith(loopback));
    CHECK(policy.check(ip("64:ff9b::a00:1")) ==
          "64:ff9b::a00:1 embeds 10.0.0.1 is in 10.0.0.0/8 (private (RFC 1918))");
    CHECK(policy.check(ip("::ffff:169.254.169.254")) ==
          "::ffff:169.254.169.254 embeds 169.254.169.254 is in 169.254.0.0/16 (link-local, "
          "cloud metadata (RFC 3927))");
    // Public IPv4 inside: allowed (the IPv6 ranges are not consulted for these forms).
    CHECK(policy.check(ip("::ffff:8.8.8.8")) == std::nullopt);
    CHECK(policy.check(ip("64:ff9b::808:808")) == std::nullopt);
    CHECK(policy.check(ip("2002:808:808::")) == std::nullopt);
    CHECK(policy.check(ip("2001:0:4136:e378:8000:63bf:f7f7:f7f7")) == std::nullopt);  // 8.8.8.8
    // :: and ::1 are IPv6's own unspecified and loopback addresses, not 0.0.0.0 / 0.0.0.1.
    CHECK(policy.check(ip("::")) == ":: is in ::/128 (unspecified)");
    CHECK(policy.check(ip("::1")) == "::1 is in ::1/128 (loopback)");
}

TEST_CASE("ssrf: ports outside 1-65535 are refused", "[ssrf]") {
    const ssrf_policy policy;
    CHECK(policy.check(ip("8.8.8.8"), 0) == "port 0 is outside 1-65535");
    CHECK(policy.check(ip("8.8.8.8"), 65536) == "port 65536 is outside 1-65535");
    CHECK(policy.check(ip("8.8.8.8"), 4294967295u) == "port 4294967295 is outside 1-65535");
    CHECK(policy.check(ip("8.8.8.8"), 1) == std::nullopt);
    CHECK(policy.check(ip("8.8.8.8"), 443) == std::nullopt);
    CHECK(policy.check(ip("8.8.8.8"), 65535) == std::nullopt);
    // A good port does not excuse a blocked address.
    CHECK(policy.check(ip("127.0.0.1"), 80) == "127.0.0.1 is in 127.0.0.0/8 (loopback)");
    const auto allow = ssrf_policy::allowlist({range("10.0.0.0/8")});
    CHECK(allow.check(ip("10.0.0.1"), 0) == "port 0 is outside 1-65535");
    CHECK(allow.check(ip("10.0.0.1"), 5432) == std::nullopt);
}

}  // namespace spoa::handlers::routing
