// normalize_host: one resource, one cache key.

#include <catch2/catch.hpp>

#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "spoa/handlers/routing/resource_id.hpp"

namespace spoa::handlers::routing {

TEST_CASE("resource id: normalize_host: case, ports, trailing dots, whitespace", "[resource_id]") {
    const std::vector<std::pair<const char*, const char*>> table{
        {"app.example.com", "app.example.com"},
        {"App.Example.COM", "app.example.com"},
        {"APP1.LOCALHOST", "app1.localhost"},
        {"example.com:80", "example.com"},
        {"example.com:8443", "example.com"},
        {"example.com:", "example.com"},
        {"example.com.", "example.com"},
        {"example.com..", "example.com"},
        {"App.Example.COM.:8443", "app.example.com"},
        {"  example.com", "example.com"},
        {"example.com  ", "example.com"},
        {"\texample.com\t", "example.com"},
        {" \t Example.Com:443 \t ", "example.com"},
        // IPv4 literal with a port.
        {"10.0.0.1:8080", "10.0.0.1"},
        // Bracketed IPv6 literal: the port goes, the brackets stay, letters are lowercased.
        {"[2001:DB8::1]:80", "[2001:db8::1]"},
        {"[2001:db8::1]", "[2001:db8::1]"},
        {"[::1]:8443", "[::1]"},
        {" [FE80::1]:443 ", "[fe80::1]"},
        // A bare IPv6 literal (several colons) has no port to strip.
        {"2001:DB8::1", "2001:db8::1"},
        {"::1", "::1"},
        // Degenerate inputs give an empty id (the router answers 400).
        {"", ""},
        {"   ", ""},
        {":80", ""},
        {".", ""},
        {"...:80", ""},
        // Nothing else is touched: digits, hyphens, underscores, non-ASCII bytes.
        {"My-App_1.Example.com", "my-app_1.example.com"},
        {"caf\xC3\xA9.example", "caf\xC3\xA9.example"},
    };
    for (const auto& [in, out] : table) {
        INFO("input '" << in << "'");
        CHECK(normalize_host(in) == out);
        char buf[64];
        CHECK(normalize_host(in, buf, sizeof buf) == out);
    }
}

TEST_CASE("resource id: normalize_host into a small buffer", "[resource_id]") {
    // Guard bytes after the buffer must stay untouched.
    std::array<char, 16> storage{};
    storage.fill('#');
    char* buf = storage.data();
    constexpr std::size_t cap = 8;

    // Too long: an empty view, and nothing written past cap.
    CHECK(normalize_host("example.com", buf, cap).empty());
    CHECK(normalize_host("abcdefghi", buf, cap).empty());
    for (std::size_t i = cap; i < storage.size(); ++i)
        CHECK(storage[i] == '#');

    // Exactly cap bytes fits.
    const auto exact = normalize_host("ABCDEFGH", buf, cap);
    CHECK(exact == "abcdefgh");
    CHECK(exact.data() == buf);
    // The limit applies to the normalised id, not the raw header.
    CHECK(normalize_host("  ABCDEFGH.:8443  ", buf, cap) == "abcdefgh");
    CHECK(normalize_host("a.b:80", buf, cap) == "a.b");
    for (std::size_t i = cap; i < storage.size(); ++i)
        CHECK(storage[i] == '#');

    // Zero capacity: only the empty id fits.
    CHECK(normalize_host("a", buf, 0).empty());
    CHECK(normalize_host("", buf, 0).empty());

    // The allocating form has no limit.
    const std::string big(5000, 'A');
    CHECK(normalize_host(big) == std::string(5000, 'a'));
}

}  // namespace spoa::handlers::routing
