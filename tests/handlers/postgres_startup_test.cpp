// The PostgreSQL first-packet parser: StartupMessage, SSLRequest, GSSENCRequest, CancelRequest,
// a TLS record, and every malformed input, plus every truncation of a valid packet.

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "spoa/handlers/routing/postgres_startup.hpp"

namespace spoa::handlers::routing {
namespace {

using kind = postgres_startup::kind;

void put_be32(std::string& out, std::uint32_t v) {
    out.push_back(static_cast<char>(v >> 24));
    out.push_back(static_cast<char>(v >> 16));
    out.push_back(static_cast<char>(v >> 8));
    out.push_back(static_cast<char>(v));
}

/// A packet: length (of everything, itself included), code, then `body` as is.
std::string packet(std::uint32_t code, const std::string& body,
                   std::optional<std::uint32_t> length = std::nullopt) {
    std::string out;
    put_be32(out, length.value_or(static_cast<std::uint32_t>(8 + body.size())));
    put_be32(out, code);
    out += body;
    return out;
}

/// name\0value\0 ... \0
std::string params(const std::vector<std::pair<std::string, std::string>>& kv) {
    std::string out;
    for (const auto& [k, v] : kv) {
        out += k;
        out.push_back('\0');
        out += v;
        out.push_back('\0');
    }
    out.push_back('\0');
    return out;
}

constexpr std::uint32_t protocol_3_0 = 196608;  // 3 << 16
constexpr std::uint32_t ssl_request = 80877103;
constexpr std::uint32_t gss_request = 80877104;
constexpr std::uint32_t cancel_request = 80877102;

std::string startup(const std::vector<std::pair<std::string, std::string>>& kv) {
    return packet(protocol_3_0, params(kv));
}

std::string describe(const postgres_startup& s) {
    return "type=" + std::to_string(static_cast<int>(s.type)) +
           " error=" + (s.error ? s.error : "(none)");
}

}  // namespace

TEST_CASE("postgres: a real StartupMessage", "[postgres]") {
    const std::string bytes = startup({{"user", "alice"},
                                       {"database", "app1"},
                                       {"options", "-c search_path=public"},
                                       {"application_name", "psql"},
                                       {"client_encoding", "UTF8"}});
    // Byte layout check of the builder itself: length prefix, then 00 03 00 00.
    REQUIRE(bytes.size() == 107);
    REQUIRE(bytes.substr(0, 8) == std::string("\0\0\0\x6b\0\x03\0\0", 8));
    REQUIRE(bytes.substr(8, 11) == std::string("user\0alice\0", 11));
    REQUIRE(bytes.back() == '\0');

    const auto s = parse_postgres_startup(bytes);
    INFO(describe(s));
    REQUIRE(s.type == kind::startup);
    CHECK(s.error == nullptr);
    CHECK(s.major == 3);
    CHECK(s.minor == 0);
    CHECK(s.user == "alice");
    CHECK(s.database == "app1");
    CHECK(s.options == "-c search_path=public");
    CHECK(s.application_name == "psql");
    CHECK(s.parameter("client_encoding") == "UTF8");
    CHECK(s.parameter("user") == "alice");
    CHECK(s.parameter("missing").empty());
    CHECK(s.endpoint_option().empty());
    // Views point into the caller's bytes.
    CHECK(s.user.data() >= bytes.data());
    CHECK(s.user.data() < bytes.data() + bytes.size());
}

TEST_CASE("postgres: protocol 3.2 (PostgreSQL 18) is a 3.x StartupMessage", "[postgres]") {
    const auto bytes = packet((3u << 16) | 2u, params({{"user", "bob"}}));
    const auto s = parse_postgres_startup(bytes);
    REQUIRE(s.type == kind::startup);
    CHECK(s.user == "bob");
    CHECK(s.major == 3);
    CHECK(s.minor == 2);
}

TEST_CASE("postgres: database defaults to user", "[postgres]") {
    // (The result views the bytes: keep them alive while looking at it.)
    const auto bytes = startup({{"user", "carol"}});
    const auto s = parse_postgres_startup(bytes);
    REQUIRE(s.type == kind::startup);
    CHECK(s.user == "carol");
    CHECK(s.database == "carol");
    // An explicitly empty database also defaults to user, as the server does.
    const auto empty_db = startup({{"user", "carol"}, {"database", ""}});
    const auto e = parse_postgres_startup(empty_db);
    REQUIRE(e.type == kind::startup);
    CHECK(e.database == "carol");
}

TEST_CASE("postgres: endpoint_option forms", "[postgres]") {
    const std::vector<std::pair<std::string, std::string>> table{
        {"endpoint=ep-cool-1", "ep-cool-1"},
        {"-c endpoint=ep-cool-2", "ep-cool-2"},
        {"--endpoint=ep-cool-3", "ep-cool-3"},
        {"-cendpoint=ep-cool-4", "ep-cool-4"},
        {"-c search_path=x -c endpoint=ep-5 -c statement_timeout=5s", "ep-5"},
        {"--search_path=x --endpoint=ep-6", "ep-6"},
        {"-c search_path=x  endpoint=ep-7", "ep-7"},  // double space
        {"-c search_path=x", ""},
        {"-c endpoints=x", ""},
        {"-c myendpoint=x", ""},
        {"", ""},
        {"endpoint=", ""},
    };
    for (const auto& [options, expected] : table) {
        INFO("options '" << options << "'");
        const auto bytes = startup({{"user", "u"}, {"options", options}});
        const auto s = parse_postgres_startup(bytes);
        REQUIRE(s.type == kind::startup);
        CHECK(s.options == options);
        CHECK(s.endpoint_option() == expected);
    }
}

TEST_CASE("postgres: SSLRequest, GSSENCRequest, CancelRequest", "[postgres]") {
    const auto ssl = parse_postgres_startup(packet(ssl_request, ""));
    CHECK(ssl.type == kind::ssl_request);
    CHECK(ssl.error == nullptr);
    CHECK(ssl.database.empty());

    const auto gss = parse_postgres_startup(packet(gss_request, ""));
    CHECK(gss.type == kind::gss_request);

    std::string cancel_body;
    put_be32(cancel_body, 4242);        // backend pid
    put_be32(cancel_body, 0xDEADBEEF);  // secret key
    const auto cancel = parse_postgres_startup(packet(cancel_request, cancel_body));
    CHECK(cancel.type == kind::cancel_request);
    CHECK(cancel.database.empty());

    // Wrong lengths for these fixed-size packets.
    const auto ssl_long = parse_postgres_startup(packet(ssl_request, "xxxx"));
    CHECK(ssl_long.type == kind::invalid);
    CHECK(std::string(ssl_long.error) == "SSLRequest/GSSENCRequest must be 8 bytes");
    const auto gss_long = parse_postgres_startup(packet(gss_request, "x"));
    CHECK(gss_long.type == kind::invalid);
    const auto cancel_short = parse_postgres_startup(packet(cancel_request, "1234"));
    CHECK(cancel_short.type == kind::invalid);
    CHECK(std::string(cancel_short.error) == "CancelRequest must be 16 bytes");
}

TEST_CASE("postgres: a TLS record (direct TLS) is recognised", "[postgres]") {
    // TLS 1.0 record header of a ClientHello, as PostgreSQL 17 sslnegotiation=direct sends.
    const std::string hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
    const auto s = parse_postgres_startup(hello);
    CHECK(s.type == kind::tls_hello);
    CHECK(s.error == nullptr);
    CHECK(parse_postgres_startup(std::string("\x16\x03\x03", 3)).type == kind::tls_hello);
    // 0x16 0x03 with fewer than 3 bytes is just short.
    CHECK(parse_postgres_startup(std::string("\x16\x03", 2)).type == kind::invalid);
    // 0x16 followed by something else is not TLS.
    CHECK(parse_postgres_startup(std::string("\x16\x02\x00\x00\x00\x00\x00\x00", 8)).type ==
          kind::invalid);
}

TEST_CASE("postgres: malformed first packets are invalid, with a reason", "[postgres]") {
    const std::string ok_params = params({{"user", "u"}});
    const std::vector<std::pair<std::string, std::string>> table{
        {"", "packet shorter than 8 bytes"},
        {std::string("\0\0\0\x08", 4), "packet shorter than 8 bytes"},
        {std::string("\0\0\0\x08\x04\xd2\x16", 7), "packet shorter than 8 bytes"},
        {packet(protocol_3_0, "", 0), "invalid packet length"},
        {packet(protocol_3_0, "", 7), "invalid packet length"},
        {packet(protocol_3_0, ok_params, 10001), "invalid packet length"},
        {packet(protocol_3_0, ok_params, 0xFFFFFFFF), "invalid packet length"},
        {packet(protocol_3_0, ok_params, 8 + static_cast<std::uint32_t>(ok_params.size()) + 1),
         "packet truncated"},
        {packet(2u << 16, ok_params), "unsupported protocol version (3.x expected)"},
        {packet(4u << 16, ok_params), "unsupported protocol version (3.x expected)"},
        {packet(1234, ok_params), "unsupported protocol version (3.x expected)"},
        {packet(protocol_3_0, "user"), "unterminated parameter name"},
        {packet(protocol_3_0, std::string("user\0bob", 8)), "unterminated parameter value"},
        {packet(protocol_3_0, std::string("user\0", 5)), "unterminated parameter value"},
        {packet(protocol_3_0, std::string("user\0bob\0", 9)), "parameter list not terminated"},
        {packet(protocol_3_0, ""), "parameter list not terminated"},
        {packet(protocol_3_0, std::string("user\0bob\0\0X", 11)), "bytes after the parameter list"},
        {packet(protocol_3_0, std::string("\0\0", 2)), "bytes after the parameter list"},
        {packet(protocol_3_0, std::string("\0", 1)), "no user parameter"},
        {startup({{"database", "app1"}}), "no user parameter"},
        {startup({{"user", ""}, {"database", "app1"}}), "no user parameter"},
    };
    for (const auto& [bytes, reason] : table) {
        INFO("expected: " << reason << " (" << bytes.size() << " bytes)");
        const auto s = parse_postgres_startup(bytes);
        CHECK(s.type == kind::invalid);
        REQUIRE(s.error != nullptr);
        CHECK(std::string(s.error) == reason);
        CHECK(s.user.empty());
        CHECK(s.database.empty());
    }
    // The largest allowed packet parses; one byte more is refused by its length.
    const auto big = startup({{"user", "u"}, {"o", std::string(10000 - 19, 'x')}});
    REQUIRE(big.size() == 10000);
    CHECK(parse_postgres_startup(big).type == kind::startup);
    const auto too_big = startup({{"user", "u"}, {"o", std::string(10000 - 18, 'x')}});
    REQUIRE(too_big.size() == 10001);
    const auto s = parse_postgres_startup(too_big);
    CHECK(s.type == kind::invalid);
    CHECK(std::string(s.error) == "invalid packet length");
}

TEST_CASE("postgres: bytes after a complete packet are ignored", "[postgres]") {
    // Only the first packet is parsed; a client does not send more before the server answers,
    // but if it did the parser must still only look inside `length`.
    std::string bytes = startup({{"user", "u"}, {"database", "d"}});
    bytes += "garbage after the packet";
    const auto s = parse_postgres_startup(bytes);
    REQUIRE(s.type == kind::startup);
    CHECK(s.database == "d");
    CHECK(s.parameter("garbage after the packet").empty());
}

TEST_CASE("postgres: every truncation of a valid packet is invalid, never startup",
          "[postgres][fuzz]") {
    const std::string bytes = startup({{"user", "alice"},
                                       {"database", "app1"},
                                       {"options", "-c endpoint=ep-1"},
                                       {"application_name", "fuzz"}});
    REQUIRE(parse_postgres_startup(bytes).type == kind::startup);
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        // A copy of exactly n bytes, so that ASan sees any read past the end.
        const std::vector<char> prefix(bytes.begin(), bytes.begin() + static_cast<long>(n));
        const auto s = parse_postgres_startup(std::string_view(prefix.data(), prefix.size()));
        INFO("prefix of " << n << " bytes: " << describe(s));
        CHECK(s.type == kind::invalid);
        REQUIRE(s.error != nullptr);
        CHECK(std::string(s.error) == (n < 8 ? "packet shorter than 8 bytes" : "packet truncated"));
    }
}

TEST_CASE("postgres: every truncated body with a consistent length is refused cleanly",
          "[postgres][fuzz]") {
    // The length field says exactly how many bytes there are, but the body is cut: the parser
    // must find the damage inside the parameter list (no over-read, no startup result unless
    // the cut falls on a complete list).
    const std::string body = params({{"user", "alice"}, {"database", "app1"}});
    for (std::size_t n = 0; n <= body.size(); ++n) {
        const std::string cut = packet(protocol_3_0, body.substr(0, n));
        const std::vector<char> copy(cut.begin(), cut.end());
        const auto s = parse_postgres_startup(std::string_view(copy.data(), copy.size()));
        INFO("body of " << n << " bytes: " << describe(s));
        if (n == body.size()) {
            CHECK(s.type == kind::startup);
        } else {
            CHECK(s.type == kind::invalid);
            CHECK(s.error != nullptr);
        }
    }
}

TEST_CASE("postgres: every single-byte corruption is parsed without crashing", "[postgres][fuzz]") {
    const std::string bytes = startup({{"user", "alice"}, {"database", "app1"}});
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        for (const int v : {0x00, 0x01, 0x16, 0x7f, 0x80, 0xff}) {
            std::vector<char> copy(bytes.begin(), bytes.end());
            copy[i] = static_cast<char>(v);
            const auto s = parse_postgres_startup(std::string_view(copy.data(), copy.size()));
            if (s.type == kind::invalid) {
                CHECK(s.error != nullptr);
            } else if (s.type == kind::startup) {
                CHECK_FALSE(s.user.empty());
                CHECK_FALSE(s.database.empty());
                // Every view lies inside the buffer.
                CHECK(s.user.data() >= copy.data());
                CHECK(s.user.data() + s.user.size() <= copy.data() + copy.size());
                CHECK(s.database.data() + s.database.size() <= copy.data() + copy.size());
            }
        }
    }
}

}  // namespace spoa::handlers::routing
