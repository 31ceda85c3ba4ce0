// The route-* handlers in process: a spoa::agent on 127.0.0.1:0 with a router attached, driven
// over loopback by the fake HAProxy of tests/support (HELLO, then NOTIFY), ACKs decoded with
// spoa::protocol::decode_actions.

#include <spdlog/logger.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "spoa/agent/agent.hpp"
#include "spoa/handlers/routing/contract.hpp"
#include "spoa/handlers/routing/router.hpp"
#include "spoa/handlers/routing/static_resolver.hpp"
#include "spoa/handlers/service_loop.hpp"
#include "spoa/protocol/action.hpp"
#include "spoa/testing/fake_haproxy.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace std::chrono_literals;
namespace spop = spoa::protocol;
using spop::data_type;
using spop::typed_value;
using testing::fake_haproxy;
using testing::message_spec;
using testing::owned_value;

/// The variables of one ACK (all set-var in scope txn), by name.
using ack_vars = std::map<std::string, owned_value>;

std::shared_ptr<const route_table> example_table() {
    auto t = std::make_shared<route_table>();
    const auto r = [](std::vector<endpoint> eps) {
        route x;
        x.endpoints = std::move(eps);
        return x;
    };
    route app1 = r({{"127.0.0.1", 9001}});
    app1.metadata = {{"tenant", "alpha"}, {"plan", "not exported"}};
    t->add(app_protocol::http, "app1.localhost", app1);
    t->add(app_protocol::http, "v6.localhost", r({{"::1", 9006}}));
    route preview = r({{"127.0.0.1", 9001}});
    preview.paths = {{"/api/v2", {{"127.0.0.1", 9003}}}, {"/api", {{"127.0.0.1", 9002}}}};
    t->add(app_protocol::http, "*.preview.localhost", preview);
    t->add(app_protocol::http, "suspended.localhost",
           resolve_error{error_code::forbidden, "tenant suspended", std::nullopt});
    t->add(app_protocol::http, "public.localhost", r({{"8.8.8.8", 80}}));
    t->add(app_protocol::postgres, "app1", r({{"127.0.0.1", 5433}}));
    t->add(app_protocol::postgres, "app2", r({{"127.0.0.1", 5434}}));
    t->add(app_protocol::postgres, "default-db", r({{"127.0.0.1", 5499}}));
    t->add(app_protocol::postgres, "ep-cool-1", r({{"127.0.0.1", 5501}}));
    t->add(app_protocol::tcp, "smtp:2525", r({{"127.0.0.1", 2526}}));
    t->add(app_protocol::tcp, "mysql:127.0.0.5", r({{"127.0.0.1", 3306}}));
    t->add(app_protocol::tls, "secure.localhost", r({{"127.0.0.1", 9443}}));
    return t;
}

router_options example_options() {
    router_options o;
    o.cache.ttl = 10s;
    o.cache.negative_ttl = 10s;
    o.metadata_variables = {{"tenant", "tenant"}};
    o.tcp_services = {{"smtp", tcp_key::dst_port}, {"mysql", tcp_key::dst}};
    return o;
}

ssrf_policy loopback_only() {
    return ssrf_policy::allowlist({{*cidr::parse("127.0.0.0/8"), "test loopback"},
                                   {*cidr::parse("::1/128"), "test loopback v6"}});
}

/// An agent with the router attached, on 127.0.0.1 and a free port.
class routing_agent {
  public:
    explicit routing_agent(std::shared_ptr<resolver> r, router_options opts = example_options(),
                           ssrf_policy policy = loopback_only())
        : service_(std::make_shared<handlers::service_loop>()),
          router_(std::move(r), std::move(policy), std::move(opts), service_,
                  std::make_shared<spdlog::logger>("routing-test")),  // no sink: silent
          agent_(config()) {
        router_.attach(agent_);
        agent_.start();
        const auto bound = agent_.bound_addresses();
        REQUIRE(bound.size() == 1);
        port_ = bound[0].port;
        REQUIRE(port_ != 0);
    }
    ~routing_agent() {
        agent_.stop(false);
        agent_.wait();
        // The service loop's tasks refer to the router: end the loop before the router.
        service_->join();
    }
    routing_agent(const routing_agent&) = delete;
    routing_agent& operator=(const routing_agent&) = delete;

    [[nodiscard]] fake_haproxy connect() const {
        auto c = fake_haproxy::connect_tcp("127.0.0.1", port_);
        (void)c.handshake(testing::hello_options::v3());
        return c;
    }
    [[nodiscard]] routing::router& router() noexcept { return router_; }

  private:
    static agent_config config() {
        agent_config cfg;
        cfg.listeners.push_back(listen_address::parse("127.0.0.1:0"));
        cfg.threads = 1;
        cfg.handle_signals = false;
        cfg.close_linger = 200ms;
        cfg.drain_timeout = 500ms;
        return cfg;
    }

    std::shared_ptr<handlers::service_loop> service_;
    routing::router router_;
    spoa::agent agent_;
    std::uint16_t port_ = 0;
};

/// Decodes an ACK payload into its variables; every action must be a txn set-var.
ack_vars decode_ack(const testing::received_frame& f) {
    REQUIRE(f.type == spop::frame_type::ack);
    std::vector<spop::action> actions;
    REQUIRE(spop::decode_actions({f.payload.data(), f.payload.size()}, actions) ==
            spop::error::none);
    ack_vars vars;
    for (const auto& a : actions) {
        INFO("action " << a.name);
        CHECK(a.type == spop::action_type::set_var);
        CHECK(a.scope == spop::var_scope::txn);
        CHECK(vars.count(std::string(a.name)) == 0);  // each variable once
        vars[std::string(a.name)] = owned_value::from(a.value);
    }
    return vars;
}

/// One NOTIFY, its ACK (on the same stream and frame ids), decoded.
ack_vars ask(fake_haproxy& c, const message_spec& m) {
    static std::atomic<std::uint64_t> next_stream{1};
    const std::uint64_t sid = next_stream.fetch_add(2);
    c.send_notify(sid, 1, m);
    const auto f = c.expect(spop::frame_type::ack);
    CHECK(f.stream_id == sid);
    CHECK(f.frame_id == 1);
    return decode_ack(f);
}

std::string str(const ack_vars& v, const std::string& name) {
    const auto it = v.find(name);
    if (it == v.end()) return "<unset>";
    if (it->second.type != data_type::string)
        return "<not a string: " + it->second.to_string() + ">";
    return it->second.bytes;
}

std::optional<std::int64_t> integer(const ack_vars& v, const std::string& name) {
    const auto it = v.find(name);
    if (it == v.end()) return std::nullopt;
    REQUIRE((it->second.type == data_type::int32 || it->second.type == data_type::int64 ||
             it->second.type == data_type::uint32 || it->second.type == data_type::uint64));
    return static_cast<std::int64_t>(it->second.integer);
}

/// "IPV4 127.0.0.1" / "IPV6 ::1" / "<unset>".
std::string address(const ack_vars& v) {
    const auto it = v.find(std::string(contract::var::ip));
    if (it == v.end()) return "<unset>";
    const auto& b = it->second.bytes;
    if (it->second.type == data_type::ipv4) {
        REQUIRE(b.size() == 4);
        std::array<std::uint8_t, 4> a{};
        std::memcpy(a.data(), b.data(), 4);
        return "IPV4 " + ip_address::v4(a).to_string();
    }
    if (it->second.type == data_type::ipv6) {
        REQUIRE(b.size() == 16);
        std::array<std::uint8_t, 16> a{};
        std::memcpy(a.data(), b.data(), 16);
        return "IPV6 " + ip_address::v6(a).to_string();
    }
    return "<not an address: " + it->second.to_string() + ">";
}

typed_value ipv4(std::array<std::uint8_t, 4> a) {
    return typed_value::ipv4(a);
}

/// route-http with the contract's arguments.
message_spec http(const std::string& host, const std::string& path = "/") {
    return {std::string(contract::message::http),
            {{contract::arg::host, typed_value::string(host)},
             {contract::arg::path, typed_value::string(path)},
             {contract::arg::src, ipv4({192, 0, 2, 10})}}};
}

/// A StartupMessage (protocol 3.0) with the given parameters.
std::string pg_startup(const std::vector<std::pair<std::string, std::string>>& kv) {
    std::string body;
    for (const auto& [k, v] : kv) {
        body += k;
        body.push_back('\0');
        body += v;
        body.push_back('\0');
    }
    body.push_back('\0');
    std::string out;
    const auto be32 = [&out](std::uint32_t x) {
        for (int s = 24; s >= 0; s -= 8)
            out.push_back(static_cast<char>(x >> s));
    };
    be32(static_cast<std::uint32_t>(8 + body.size()));
    be32(196608);
    return out + body;
}

std::string pg_ssl_request() {
    return std::string("\x00\x00\x00\x08\x04\xd2\x16\x2f", 8);  // 8, 80877103
}

std::string pg_gssenc_request() {
    return std::string("\x00\x00\x00\x08\x04\xd2\x16\x30", 8);  // 8, 80877104
}

std::string pg_cancel_request() {  // 16, 80877102, backend pid 7, secret key 9
    return std::string("\x00\x00\x00\x10\x04\xd2\x16\x2e\0\0\0\x07\0\0\0\x09", 16);
}

message_spec pg(const std::string& packet, const std::string& sni = "") {
    message_spec m{std::string(contract::message::postgres),
                   {{contract::arg::startup, typed_value::binary(packet)},
                    {contract::arg::src, ipv4({192, 0, 2, 10})}}};
    if (!sni.empty()) m.args.push_back({contract::arg::sni, typed_value::string(sni)});
    return m;
}

void check_refusal(const ack_vars& v, int status, const std::string& reason,
                   const std::string& cache) {
    CHECK(integer(v, "status") == status);
    CHECK(str(v, "reason") == reason);
    CHECK(str(v, "cache") == cache);
    CHECK(v.count("ip") == 0);
    CHECK(v.count("port") == 0);
    CHECK(integer(v, "decision_us").has_value());
}

}  // namespace

TEST_CASE("route-http: miss then hit, typed address and port, metadata", "[router]") {
    routing_agent a(std::make_shared<static_resolver>(example_table()));
    auto c = a.connect();

    const auto first = ask(c, http("app1.localhost", "/index.html"));
    CHECK(address(first) == "IPV4 127.0.0.1");
    CHECK(integer(first, "port") == 9001);
    CHECK(str(first, "resource") == "app1.localhost");
    CHECK(str(first, "cache") == "miss");
    CHECK(str(first, "tenant") == "alpha");  // metadata_variables: tenant -> txn.route.tenant
    CHECK(first.count("plan") == 0);         // not listed: not exported
    CHECK(first.count("status") == 0);
    CHECK(first.count("reason") == 0);
    REQUIRE(integer(first, "decision_us").has_value());
    CHECK(*integer(first, "decision_us") >= 0);
    // Nothing but contract variables and the configured metadata variable.
    for (const auto& [k, v] : first) {
        INFO("variable " << k);
        CHECK((k == "tenant" || std::find(contract::variables.begin(), contract::variables.end(),
                                          k) != contract::variables.end()));
    }

    const auto second = ask(c, http("app1.localhost"));
    CHECK(str(second, "cache") == "hit");
    CHECK(str(second, "kind") == "cached");
    CHECK(str(second, "tenant") == "alpha");
    CHECK(address(second) == "IPV4 127.0.0.1");
    CHECK(integer(second, "port") == 9001);
    CHECK(second.count("decision_us") == 0);  // a hit waited for nothing

    // The Host header is normalised before the lookup: same cache entry.
    const auto third = ask(c, http("App1.LocalHost.:8080"));
    CHECK(str(third, "cache") == "hit");
    CHECK(str(third, "resource") == "app1.localhost");

    // An IPv6 backend comes back typed IPV6.
    const auto v6 = ask(c, http("v6.localhost"));
    CHECK(address(v6) == "IPV6 ::1");
    CHECK(integer(v6, "port") == 9006);

    const auto st = a.router().cache().stats();
    CHECK(st.misses == 2);
    CHECK(st.hits == 2);
    CHECK(a.router().active_resolver().stats().calls == 2);
}

TEST_CASE("route-http: unknown host is 404, then a negative hit", "[router]") {
    routing_agent a(std::make_shared<static_resolver>(example_table()));
    auto c = a.connect();
    const auto first = ask(c, http("unknown.localhost"));
    check_refusal(first, 404, "no http route for 'unknown.localhost'", "miss");
    CHECK(str(first, "resource") == "unknown.localhost");
    const auto second = ask(c, http("unknown.localhost"));
    check_refusal(second, 404, "no http route for 'unknown.localhost'", "negative");
    CHECK(a.router().active_resolver().stats().calls == 1);
    CHECK(first.count("sqlstate") == 0);  // PostgreSQL's alone
}

TEST_CASE("route-http: an error route is 403 and is not cached", "[router]") {
    routing_agent a(std::make_shared<static_resolver>(example_table()));
    auto c = a.connect();
    check_refusal(ask(c, http("suspended.localhost")), 403, "tenant suspended", "miss");
    check_refusal(ask(c, http("suspended.localhost")), 403, "tenant suspended", "miss");
    CHECK(a.router().active_resolver().stats().calls == 2);
}

TEST_CASE("route-http: SSRF refusal is 403 naming the endpoint", "[router]") {
    routing_agent a(std::make_shared<static_resolver>(example_table()));
    auto c = a.connect();
    check_refusal(ask(c, http("public.localhost")), 403,
                  "endpoint 8.8.8.8:80 refused: 8.8.8.8 is not in the allowlist", "miss");
}

TEST_CASE("route-http: path prefixes, longest first, on a wildcard host", "[router]") {
    routing_agent a(std::make_shared<static_resolver>(example_table()));
    auto c = a.connect();
    CHECK(integer(ask(c, http("pr-1.preview.localhost", "/")), "port") == 9001);
    CHECK(integer(ask(c, http("pr-1.preview.localhost", "/api")), "port") == 9002);
    CHECK(integer(ask(c, http("pr-1.preview.localhost", "/api/users")), "port") == 9002);
    CHECK(integer(ask(c, http("pr-1.preview.localhost", "/api/v2/users")), "port") == 9003);
    CHECK(integer(ask(c, http("pr-1.preview.localhost", "/ap")), "port") == 9001);
    const auto other = ask(c, http("pr-2.preview.localhost", "/api"));
    CHECK(integer(other, "port") == 9002);
    CHECK(str(other, "resource") == "pr-2.preview.localhost");
    CHECK(str(other, "cache") == "miss");
    // The apex is not covered by the wildcard.
    check_refusal(ask(c, http("preview.localhost")), 404, "no http route for 'preview.localhost'",
                  "miss");
}

TEST_CASE("route-http: a missing Host is 400", "[router]") {
    routing_agent a(std::make_shared<static_resolver>(example_table()));
    auto c = a.connect();
    const message_spec no_host{std::string(contract::message::http),
                               {{contract::arg::path, typed_value::string("/")},
                                {contract::arg::src, ipv4({192, 0, 2, 10})}}};
    const auto v = ask(c, no_host);
    check_refusal(v, 400, "missing or oversized Host header", "none");
    CHECK(v.count("resource") == 0);
    check_refusal(ask(c, http("")), 400, "missing or oversized Host header", "none");
    check_refusal(ask(c, http(":8080")), 400, "missing or oversized Host header", "none");
    check_refusal(ask(c, http(std::string(300, 'a') + ".localhost")), 400,
                  "missing or oversized Host header", "none");
    // A Host sent with the wrong type (HAProxy sends a string) counts as missing.
    const message_spec binary_host{std::string(contract::message::http),
                                   {{contract::arg::host, typed_value::int32(42)}}};
    check_refusal(ask(c, binary_host), 400, "missing or oversized Host header", "none");
    CHECK(a.router().active_resolver().stats().calls == 0);
}

TEST_CASE("route-pg: StartupMessage database, user, SSLRequest", "[router]") {
    SECTION("default options") {
        routing_agent a(std::make_shared<static_resolver>(example_table()));
        auto c = a.connect();
        const auto v = ask(c, pg(pg_startup({{"user", "alice"}, {"database", "app1"}})));
        CHECK(address(v) == "IPV4 127.0.0.1");
        CHECK(integer(v, "port") == 5433);
        CHECK(str(v, "resource") == "app1");
        CHECK(str(v, "cache") == "miss");
        // No database: the user names it, as the server does.
        CHECK(integer(ask(c, pg(pg_startup({{"user", "app2"}}))), "port") == 5434);
        // Database names are case-sensitive.
        const auto unknown = ask(c, pg(pg_startup({{"user", "u"}, {"database", "APP1"}})));
        check_refusal(unknown, 404, "no postgres route for 'APP1'", "miss");
        CHECK(str(unknown, "sqlstate") == "3D000");  // invalid_catalog_name
        // SSLRequest and GSSENCRequest carry no database: answered 'N' by default, so that
        // the StartupMessage that follows is routed by database.
        for (const auto& request : {pg_ssl_request(), pg_gssenc_request()}) {
            const auto answer = ask(c, pg(request));
            CHECK(str(answer, "negotiation") == "plaintext");
            CHECK(answer.count("status") == 0);
            CHECK(answer.count("ip") == 0);
            CHECK(integer(answer, "decision_us").has_value());
        }
        // A CancelRequest names no backend either, and has no plaintext to go on with.
        const auto cancel = ask(c, pg(pg_cancel_request()));
        check_refusal(cancel, 403, "CancelRequest refused (postgres.cancel_request: reject)",
                      "none");
        CHECK(str(cancel, "sqlstate") == "28000");
        CHECK(cancel.count("negotiation") == 0);
        const auto short_packet = ask(c, pg(std::string("\x00\x00\x00\x03", 4)));
        check_refusal(short_packet, 400,
                      "invalid PostgreSQL startup packet: packet shorter than 8 bytes", "none");
        CHECK(str(short_packet, "sqlstate") == "08P01");  // protocol_violation
        check_refusal(ask(c, pg(pg_startup({{"database", "app1"}}))), 400,
                      "invalid PostgreSQL startup packet: no user parameter", "none");
        // Direct TLS: the SNI names the database.
        const std::string tls_hello("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
        check_refusal(ask(c, pg(tls_hello)), 400,
                      "no resource id in the startup packet (see postgres.resource_from)", "none");
        const auto direct = ask(c, pg(tls_hello, "App1"));
        // SNI is a host name, normalised to lowercase: "app1".
        CHECK(integer(direct, "port") == 5433);
    }
    SECTION("ssl_request and gssenc_request rejected") {
        auto opts = example_options();
        opts.postgres.ssl_request = {postgres_policy::action::reject, {}};
        opts.postgres.gssenc_request = {postgres_policy::action::reject, {}};
        routing_agent a(std::make_shared<static_resolver>(example_table()), opts);
        auto c = a.connect();
        const auto ssl = ask(c, pg(pg_ssl_request()));
        check_refusal(ssl, 403, "SSLRequest refused (postgres.ssl_request: reject)", "none");
        CHECK(str(ssl, "sqlstate") == "28000");
        CHECK(ssl.count("negotiation") == 0);
        check_refusal(ask(c, pg(pg_gssenc_request())), 403,
                      "GSSENCRequest refused (postgres.gssenc_request: reject)", "none");
    }
    SECTION("an unknown user is an unknown role when users name the resource") {
        auto opts = example_options();
        opts.postgres.resource_from = postgres_options::source::user;
        routing_agent a(std::make_shared<static_resolver>(example_table()), opts);
        auto c = a.connect();
        const auto v = ask(c, pg(pg_startup({{"user", "nobody"}, {"database", "app1"}})));
        check_refusal(v, 404, "no postgres route for 'nobody'", "miss");
        CHECK(str(v, "sqlstate") == "28000");
    }
    SECTION("ssl_request routed to a configured database") {
        auto opts = example_options();
        opts.postgres.ssl_request = {postgres_policy::action::route, "default-db"};
        routing_agent a(std::make_shared<static_resolver>(example_table()), opts);
        auto c = a.connect();
        const auto v = ask(c, pg(pg_ssl_request()));
        CHECK(address(v) == "IPV4 127.0.0.1");
        CHECK(integer(v, "port") == 5499);
        CHECK(str(v, "resource") == "default-db");
        CHECK(v.count("status") == 0);
    }
    SECTION("resource from the endpoint option") {
        auto opts = example_options();
        opts.postgres.resource_from = postgres_options::source::endpoint;
        routing_agent a(std::make_shared<static_resolver>(example_table()), opts);
        auto c = a.connect();
        const auto v = ask(
            c, pg(pg_startup(
                   {{"user", "u"}, {"database", "app1"}, {"options", "-c endpoint=ep-cool-1"}})));
        CHECK(integer(v, "port") == 5501);
        CHECK(str(v, "resource") == "ep-cool-1");
        check_refusal(ask(c, pg(pg_startup({{"user", "u"}, {"database", "app1"}}))), 400,
                      "no resource id in the startup packet (see postgres.resource_from)", "none");
    }
}

TEST_CASE("route-tcp: service and destination port", "[router]") {
    routing_agent a(std::make_shared<static_resolver>(example_table()));
    auto c = a.connect();
    const std::array<std::uint8_t, 4> dst{127, 0, 0, 5};
    const message_spec smtp{std::string(contract::message::tcp),
                            {{contract::arg::service, typed_value::string("smtp")},
                             {contract::arg::dst, ipv4(dst)},
                             {contract::arg::dst_port, typed_value::int32(2525)},
                             {contract::arg::src, ipv4({192, 0, 2, 10})}}};
    const auto v = ask(c, smtp);
    CHECK(address(v) == "IPV4 127.0.0.1");
    CHECK(integer(v, "port") == 2526);
    CHECK(str(v, "resource") == "smtp:2525");
    CHECK(str(v, "cache") == "miss");
    CHECK(str(ask(c, smtp), "cache") == "hit");

    // mysql is keyed on the destination address.
    const message_spec mysql{std::string(contract::message::tcp),
                             {{contract::arg::service, typed_value::string("mysql")},
                              {contract::arg::dst, ipv4(dst)},
                              {contract::arg::dst_port, typed_value::int32(3307)}}};
    const auto m = ask(c, mysql);
    CHECK(integer(m, "port") == 3306);
    CHECK(str(m, "resource") == "mysql:127.0.0.5");

    // No destination port for a dst_port service.
    const message_spec no_port{std::string(contract::message::tcp),
                               {{contract::arg::service, typed_value::string("smtp")}}};
    check_refusal(ask(c, no_port), 400,
                  "the connection carries no value for the service's routing key", "none");
    const message_spec unknown{std::string(contract::message::tcp),
                               {{contract::arg::service, typed_value::string("smtp")},
                                {contract::arg::dst_port, typed_value::int32(2527)}}};
    check_refusal(ask(c, unknown), 404, "no tcp route for 'smtp:2527'", "miss");
}

TEST_CASE("route-tls: SNI", "[router]") {
    routing_agent a(std::make_shared<static_resolver>(example_table()));
    auto c = a.connect();
    const message_spec tls{std::string(contract::message::tls),
                           {{contract::arg::service, typed_value::string("tls")},
                            {contract::arg::sni, typed_value::string("Secure.LocalHost")},
                            {contract::arg::alpn, typed_value::string("h2")},
                            {contract::arg::dst_port, typed_value::int32(8443)},
                            {contract::arg::src, ipv4({192, 0, 2, 10})}}};
    const auto v = ask(c, tls);
    CHECK(address(v) == "IPV4 127.0.0.1");
    CHECK(integer(v, "port") == 9443);
    CHECK(str(v, "resource") == "secure.localhost");
    const message_spec no_sni{std::string(contract::message::tls),
                              {{contract::arg::service, typed_value::string("tls")}}};
    check_refusal(ask(c, no_sni), 400, "TLS ClientHello without SNI", "none");
}

TEST_CASE("router: invalidate drops the cached decision", "[router]") {
    routing_agent a(std::make_shared<static_resolver>(example_table()));
    auto c = a.connect();
    CHECK(str(ask(c, http("app1.localhost")), "cache") == "miss");
    CHECK(str(ask(c, http("app1.localhost")), "cache") == "hit");
    CHECK(a.router().invalidate("App1.LocalHost") == 1);  // normalised like requests
    CHECK(str(ask(c, http("app1.localhost")), "cache") == "miss");
    CHECK(a.router().invalidate("nothing.localhost") == 0);
    // Only the named protocol.
    CHECK(str(ask(c, pg(pg_startup({{"user", "app1"}}))), "cache") == "miss");
    CHECK(a.router().invalidate("app1", app_protocol::http) == 0);
    CHECK(a.router().invalidate("app1", app_protocol::postgres) == 1);
}

namespace {

/// A resolver that holds every call until the test releases it.
class gated_resolver final : public resolver {
  public:
    explicit gated_resolver(route answer) : answer_(std::move(answer)) {}
    void resolve(const std::string& id, const resolve_context& /*ctx*/,
                 resolve_callback done) override {
        std::lock_guard lock(mutex_);
        ids_.push_back(id);
        pending_.push_back(std::move(done));
    }
    [[nodiscard]] std::string_view name() const noexcept override { return "gated"; }
    std::size_t calls() {
        std::lock_guard lock(mutex_);
        return ids_.size();
    }
    /// Answers every held call from a thread of its own (resolvers may answer on any thread).
    void release() {
        std::vector<resolve_callback> batch;
        {
            std::lock_guard lock(mutex_);
            batch.swap(pending_);
        }
        std::thread([batch = std::move(batch), answer = answer_]() mutable {
            for (auto& cb : batch)
                cb(answer);
        }).join();
    }

  private:
    std::mutex mutex_;
    route answer_;
    std::vector<std::string> ids_;
    std::vector<resolve_callback> pending_;
};

bool wait_for(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 3s) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(2ms);
    }
    return pred();
}

}  // namespace

TEST_CASE("router: concurrent misses make one resolver call", "[router]") {
    route answer;
    answer.endpoints = {{"127.0.0.1", 7000}};
    auto gated = std::make_shared<gated_resolver>(answer);
    routing_agent a(gated);
    auto c = a.connect();
    // Three pipelined NOTIFYs for one host before the resolver answers.
    for (std::uint64_t sid : {101, 103, 105})
        c.send_notify(sid, 1, http("slow.localhost"));
    // The two followers joined the leader's flight, and the leader's call (posted to the
    // service loop) reached the resolver.
    REQUIRE(
        wait_for([&] { return a.router().cache().stats().coalesced == 2 && gated->calls() == 1; }));
    gated->release();
    std::map<std::uint64_t, ack_vars> acks;
    for (int i = 0; i < 3; ++i) {
        const auto f = c.expect(spop::frame_type::ack);
        acks[f.stream_id] = decode_ack(f);
    }
    REQUIRE(acks.size() == 3);
    std::multiset<std::string> labels;
    for (const auto& [sid, v] : acks) {
        CHECK(integer(v, "port") == 7000);
        labels.insert(str(v, "cache"));
    }
    CHECK(labels == std::multiset<std::string>{"coalesced", "coalesced", "miss"});
    CHECK(gated->calls() == 1);
    CHECK(str(ask(c, http("slow.localhost")), "cache") == "hit");
}

TEST_CASE("router: a resolver that does not answer in time gives 504", "[router]") {
    route answer;
    answer.endpoints = {{"127.0.0.1", 7000}};
    auto gated = std::make_shared<gated_resolver>(answer);
    auto opts = example_options();
    opts.resolve_timeout = 50ms;
    routing_agent a(gated, opts);
    auto c = a.connect();
    check_refusal(ask(c, http("slow.localhost")), 504, "no routing decision within 50 ms", "miss");
    // The late answer is dropped, and the timeout was not cached.
    gated->release();
    std::this_thread::sleep_for(20ms);
    CHECK(a.router().cache().stats().entries == 0);
    bool second_call = false;  // (Catch2 assertions are not thread-safe: checked after join)
    auto second = std::thread([&] {
        second_call = wait_for([&] { return gated->calls() == 2; });
        gated->release();
    });
    const auto v = ask(c, http("slow.localhost"));
    second.join();
    CHECK(second_call);
    CHECK(str(v, "cache") == "miss");
    CHECK(integer(v, "port") == 7000);
}

TEST_CASE("router: /explain from another thread reads without changing anything", "[router]") {
    routing_agent a(std::make_shared<static_resolver>(example_table()));
    const auto explain = [&a](const std::string& query) {
        admin_request req;
        req.method = "GET";
        req.path = "/explain";
        for (std::size_t pos = 0; pos < query.size();) {
            const auto amp = query.find('&', pos);
            const auto part = query.substr(pos, amp == std::string::npos ? amp : amp - pos);
            const auto eq = part.find('=');
            req.query[part.substr(0, eq)] = part.substr(eq + 1);
            pos = amp == std::string::npos ? query.size() : amp + 1;
        }
        return a.router().explain(req);
    };
    const auto before = a.router().cache().stats();
    auto r = explain("id=App1.Localhost&path=/x");
    REQUIRE(r.status == 200);
    CHECK(r.content_type == "application/json");
    CHECK(r.body.find(R"("id":"app1.localhost")") != std::string::npos);
    CHECK(r.body.find(R"("cache":{"state":"absent"})") != std::string::npos);
    CHECK(
        r.body.find(R"("ip":"127.0.0.1","port":9001,"resource":"app1.localhost","cache":"miss")") !=
        std::string::npos);
    CHECK(r.body.find(R"("tenant":"alpha")") != std::string::npos);  // a metadata variable
    r = explain("id=public.localhost");
    CHECK(r.body.find(R"("address":"8.8.8.8","ssrf":"refused")") != std::string::npos);
    CHECK(r.body.find(R"("status":403)") != std::string::npos);
    r = explain("protocol=postgres&id=nosuchdb");
    CHECK(r.body.find(R"("status":404)") != std::string::npos);
    CHECK(r.body.find(R"("sqlstate":"3D000")") != std::string::npos);
    const auto after = a.router().cache().stats();
    CHECK(after.misses == before.misses);
    CHECK(after.entries == before.entries);
    CHECK(after.hits == before.hits);

    // After a real decision, the same id explains as a cache hit.
    auto c = a.connect();
    CHECK(str(ask(c, http("app1.localhost")), "cache") == "miss");
    r = explain("id=app1.localhost");
    CHECK(r.body.find(R"("cache":{"state":"route")") != std::string::npos);
    CHECK(r.body.find(R"("cache":"hit")") != std::string::npos);

    CHECK(explain("protocol=gopher&id=x").status == 400);
    CHECK(explain("protocol=http").status == 400);
    CHECK(explain("id=:80").status == 400);  // a Host that normalises to nothing
}

}  // namespace spoa::handlers::routing
