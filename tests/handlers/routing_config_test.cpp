// The routing configuration file: the shipped example loads with the values it states, and every
// malformed file is refused with "<file>:<line>: <problem>".

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "spoa/handlers/routing/routing_config.hpp"
#include "spoa/handlers/routing/static_resolver.hpp"
#include "test_util.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace std::chrono_literals;

ip_address ip(std::string_view text) {
    return *ip_address::parse(text);
}

std::string parse_error(const std::string& yaml, const std::string& origin = "inline.yaml") {
    try {
        (void)parse_routing_config(yaml, origin);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "(no error)";
}

std::string load_error(const std::string& path) {
    try {
        (void)load_routing_config(path);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("config: the shipped example configuration loads", "[config]") {
    const auto path = (test::source_dir() / "haproxy" / "routing.example.yaml").string();
    const auto cfg = load_routing_config(path);
    CHECK(cfg.path == path);
    CHECK(cfg.resolver == routing_config::resolver_kind::static_routes);
    CHECK_FALSE(cfg.remote.has_value());
    CHECK(cfg.router.resolve_timeout == 800ms);
    CHECK(cfg.router.cache.ttl == 1000ms);
    CHECK(cfg.router.cache.negative_ttl == 5000ms);
    CHECK(cfg.router.cache.max_entries == 100000);

    CHECK(cfg.ssrf.policy_mode() == ssrf_policy::mode::allowlist);
    CHECK(cfg.ssrf.check(ip("127.0.0.1"), 9001) == std::nullopt);
    CHECK(cfg.ssrf.check(ip("10.1.2.3"), 80) == std::nullopt);
    CHECK(cfg.ssrf.check(ip("172.20.0.1"), 80) == std::nullopt);
    CHECK(cfg.ssrf.check(ip("192.168.1.1"), 80) == std::nullopt);
    CHECK(cfg.ssrf.check(ip("fd00::1"), 80) == std::nullopt);
    CHECK(cfg.ssrf.check(ip("8.8.8.8"), 80) == "8.8.8.8 is not in the allowlist");
    CHECK(cfg.ssrf.check(ip("169.254.169.254"), 80) ==
          "169.254.169.254 is in 169.254.0.0/16 (link-local, cloud metadata (RFC 3927))");

    CHECK(cfg.router.postgres.resource_from == postgres_options::source::database);
    CHECK(cfg.router.postgres.ssl_request.what == postgres_policy::action::plaintext);
    CHECK(cfg.router.postgres.gssenc_request.what == postgres_policy::action::plaintext);
    CHECK(cfg.router.postgres.cancel_request.what == postgres_policy::action::reject);
    CHECK(cfg.router.tcp_services.size() == 2);
    CHECK(cfg.router.tcp_services.at("smtp") == tcp_key::dst_port);
    CHECK(cfg.router.tcp_services.at("mysql") == tcp_key::dst_port);
    CHECK(cfg.router.metadata_variables ==
          std::map<std::string, std::string>{{"tenant", "tenant"}});

    // Its routes load in the static resolver as well.
    static_resolver routes(path);
    const auto t = routes.table();
    CHECK(t->size() == 9);
    CHECK(t->find(app_protocol::http, "app1.localhost") != nullptr);
    CHECK(t->find(app_protocol::http, "x.preview.localhost") != nullptr);
    CHECK(t->find(app_protocol::postgres, "app2") != nullptr);
    CHECK(t->find(app_protocol::tcp, "smtp:2525") != nullptr);
    CHECK(t->find(app_protocol::tls, "secure.localhost") != nullptr);
    const auto* suspended = t->find(app_protocol::http, "suspended.localhost");
    REQUIRE(suspended != nullptr);
    CHECK(std::get<resolve_error>(*suspended).reason == "tenant suspended");
}

TEST_CASE("config: an empty configuration gives the defaults", "[config]") {
    const auto cfg = parse_routing_config("", "empty.yaml");
    CHECK(cfg.path == "empty.yaml");
    CHECK(cfg.resolver == routing_config::resolver_kind::static_routes);
    CHECK(cfg.ssrf.policy_mode() == ssrf_policy::mode::blocklist);
    CHECK(cfg.ssrf.check(ip("127.0.0.1"), 80) == "127.0.0.1 is in 127.0.0.0/8 (loopback)");
    CHECK(cfg.router.cache.ttl == 1000ms);
    CHECK(cfg.router.postgres.resource_from == postgres_options::source::database);
    CHECK(cfg.router.tcp_services.empty());
    CHECK(cfg.router.metadata_variables.empty());
}

TEST_CASE("config: configuration values are read", "[config]") {
    const auto cfg = parse_routing_config(R"(
resolver:
  type: chain
  timeout_ms: 300
  remote:
    address: 127.0.0.1:7070
    timeout_ms: 120
    reconnect_min_ms: 10
    reconnect_max_ms: 900
    max_pending: 42
cache: {ttl_ms: 20, negative_ttl_ms: 30, max_entries: 64}
ssrf:
  mode: blocklist
  block: [8.8.8.0/24, "2606:4700::/32"]
postgres:
  resource_from: endpoint
  ssl_request: route:default-db
  gssenc_request: reject
  cancel_request: route:cancels
tcp:
  services: {smtp: authority, mysql: dst_addr, ldap: src, imaps: sni, redis: dst}
metadata_variables: {tenant: tenant_id, plan: x.plan}
)",
                                          "values.yaml");
    CHECK(cfg.resolver == routing_config::resolver_kind::chain);
    REQUIRE(cfg.remote.has_value());
    REQUIRE(cfg.remote->addresses.size() == 1);
    CHECK(cfg.remote->addresses[0].host == "127.0.0.1");
    CHECK(cfg.remote->addresses[0].port == 7070);
    CHECK(cfg.remote->call_timeout == 120ms);
    CHECK(cfg.remote->reconnect_min == 10ms);
    CHECK(cfg.remote->reconnect_max == 900ms);
    CHECK(cfg.remote->max_pending == 42);
    CHECK(cfg.router.resolve_timeout == 300ms);
    CHECK(cfg.router.cache.ttl == 20ms);
    CHECK(cfg.router.cache.negative_ttl == 30ms);
    CHECK(cfg.router.cache.max_entries == 64);
    CHECK(cfg.ssrf.policy_mode() == ssrf_policy::mode::blocklist);
    CHECK(cfg.ssrf.check(ip("8.8.8.8")) == "8.8.8.8 is in 8.8.8.0/24 (configured block)");
    CHECK(cfg.ssrf.check(ip("2606:4700::1111")) ==
          "2606:4700::1111 is in 2606:4700::/32 (configured block)");
    CHECK(cfg.ssrf.check(ip("10.0.0.1")) == "10.0.0.1 is in 10.0.0.0/8 (private (RFC 1918))");
    CHECK(cfg.ssrf.check(ip("1.1.1.1")) == std::nullopt);
    CHECK(cfg.router.postgres.resource_from == postgres_options::source::endpoint);
    CHECK(cfg.router.postgres.ssl_request.what == postgres_policy::action::route);
    CHECK(cfg.router.postgres.ssl_request.route == "default-db");
    CHECK(cfg.router.postgres.gssenc_request.what == postgres_policy::action::reject);
    CHECK(cfg.router.postgres.cancel_request.what == postgres_policy::action::route);
    CHECK(cfg.router.postgres.cancel_request.route == "cancels");
    CHECK(cfg.router.tcp_services.at("smtp") == tcp_key::authority);
    CHECK(cfg.router.tcp_services.at("mysql") == tcp_key::dst_addr);
    CHECK(cfg.router.tcp_services.at("ldap") == tcp_key::src);
    CHECK(cfg.router.tcp_services.at("imaps") == tcp_key::sni);
    CHECK(cfg.router.tcp_services.at("redis") == tcp_key::dst);
    CHECK(cfg.router.metadata_variables ==
          std::map<std::string, std::string>{{"plan", "x.plan"}, {"tenant", "tenant_id"}});

    const auto remote = parse_routing_config(
        "resolver: {type: remote, remote: {address: 'unix:/run/cp.sock'}}\n", "r.yaml");
    CHECK(remote.resolver == routing_config::resolver_kind::remote);
    REQUIRE(remote.remote->addresses.size() == 1);
    CHECK(remote.remote->addresses[0].type == connect_address::kind::unix_socket);
    CHECK(remote.remote->addresses[0].path == "/run/cp.sock");
    CHECK(remote.remote->call_timeout == 250ms);

    for (const char* key : {"database", "user", "endpoint", "sni"}) {
        INFO(key);
        CHECK_NOTHROW(parse_routing_config(std::string("postgres: {resource_from: ") + key + "}\n",
                                           "pg.yaml"));
    }
    const auto reject = parse_routing_config("postgres: {ssl_request: reject}\n", "pg.yaml");
    CHECK(reject.router.postgres.ssl_request.what == postgres_policy::action::reject);
    CHECK(reject.router.postgres.gssenc_request.what == postgres_policy::action::plaintext);
}

TEST_CASE("config: malformed configurations name the file and the line", "[config]") {
    // (yaml, line, problem): the error must be exactly "<origin>:<line>: <problem>".
    struct bad_case {
        const char* what;
        std::string yaml;
        int line;
        std::string problem;
    };
    const std::vector<bad_case> cases{
        {"unknown section", "cache: {ttl_ms: 5}\nroutez: {}\n", 2,
         "unknown section 'routez' (known: resolver, cache, ssrf, postgres, tcp, "
         "metadata_variables, routes, cold_start, health, breaker, activity, passive, redis)"},
        // A misspelt key is refused at every level, never read as "not set".
        {"unknown key in a section", "cache: {ttl: 5}\n", 1,
         "unknown key 'ttl' in cache (known: ttl_ms, negative_ttl_ms, max_entries)"},
        {"unknown key in a nested section", "cold_start:\n  probe:\n    typ: http\n", 3,
         "unknown key 'typ' in cold_start.probe (known: type, path, expect, timeout_ms)"},
        {"unknown key in resolver.remote",
         "resolver:\n  remote:\n    address: 127.0.0.1:1\n    timeout: 5\n", 4,
         "unknown key 'timeout' in resolver.remote (known: address, timeout_ms, "
         "reconnect_min_ms, reconnect_max_ms, max_pending)"},
        {"unknown key in a route",
         "routes:\n  http:\n    a.example.com: {endpoints: ['10.0.0.1:80'], sate: asleep}\n", 3,
         "unknown key 'sate' in routes.http.a.example.com (known: endpoints, paths, metadata, "
         "ttl_ms, timeout_ms, state)"},
        {"unknown key in an error route",
         "routes:\n  http:\n    x.example.com: {error: forbidden, retry_after: 5}\n", 3,
         "unknown key 'retry_after' in routes.http.x.example.com (known: error, reason, "
         "retry_after_ms)"},
        {"a section that is not a map", "cache: 5\n", 1, "cache must be a map"},
        {"a count below its range", "cache:\n  max_entries: -1\n", 2,
         "cache.max_entries must be a whole number from 1 to 100000000"},
        {"rise 0", "health:\n  rise: 0\n", 2,
         "health.rise must be a whole number from 1 to 1000000000"},
        {"breaker failures 0", "breaker: {failures: 0}\n", 1,
         "breaker.failures must be a whole number from 1 to 1000000000"},
        {"not an HTTP status", "health:\n  expect: [200, 99]\n", 2,
         "health.expect: 99 is not an HTTP status"},
        {"a flag that is not a flag", "health:\n  enabled: maybe\n", 2, "expected true or false"},
        {"block list in allowlist mode",
         "ssrf:\n  mode: allowlist\n  allow: [127.0.0.0/8]\n  block: [10.0.0.0/8]\n", 4,
         "ssrf.block needs ssrf.mode blocklist"},
        {"allow list in blocklist mode", "ssrf:\n  allow: [127.0.0.0/8]\n", 2,
         "ssrf.allow needs ssrf.mode allowlist"},
        {"a negative route TTL",
         "routes:\n  http:\n    a.example.com: {endpoints: ['10.0.0.1:80'], ttl_ms: -1}\n", 3,
         "a duration must not be negative"},
        {"bad health type", "health: {type: udp}\n", 1, "health.type must be tcp or http"},
        {"bad probe type", "cold_start:\n  probe: {type: icmp}\n", 2,
         "cold_start.probe.type must be tcp or http"},
        {"not a map", "- a\n- b\n", 1, "the file must be a YAML map"},
        {"bad CIDR in block", "ssrf:\n  mode: blocklist\n  block: [10.0.0.0/8, 10.0.0.0/33]\n", 3,
         "'10.0.0.0/33' is not a CIDR (e.g. 10.0.0.0/8, fd00::/8)"},
        {"bad CIDR in allow", "ssrf:\n  mode: allowlist\n  allow:\n    - 10.0.0.0/8\n    - nope\n",
         5, "'nope' is not a CIDR (e.g. 10.0.0.0/8, fd00::/8)"},
        {"allow is not a list", "ssrf:\n  mode: allowlist\n  allow: 10.0.0.0/8\n", 3,
         "allow must be a list of CIDRs"},
        {"allowlist without allow", "ssrf:\n  mode: allowlist\n", 2,
         "ssrf.mode allowlist needs a non-empty ssrf.allow"},
        {"allowlist with an empty allow", "ssrf:\n  mode: allowlist\n  allow: []\n", 2,
         "ssrf.mode allowlist needs a non-empty ssrf.allow"},
        {"bad ssrf mode", "ssrf:\n  mode: maybe\n", 2, "ssrf.mode must be allowlist or blocklist"},
        {"bad resource_from", "postgres:\n  resource_from: table\n", 2,
         "postgres.resource_from must be database, user, endpoint or sni"},
        {"bad ssl_request", "postgres:\n  ssl_request: \"route:\"\n", 2,
         "postgres.ssl_request must be plaintext, reject or route:<resource-id>"},
        {"bad gssenc_request", "postgres:\n  gssenc_request: tls\n", 2,
         "postgres.gssenc_request must be plaintext, reject or route:<resource-id>"},
        {"plaintext cancel_request", "postgres:\n  cancel_request: plaintext\n", 2,
         "postgres.cancel_request must be reject or route:<resource-id>"},
        {"bad cancel_request", "postgres:\n  cancel_request: accept\n", 2,
         "postgres.cancel_request must be reject or route:<resource-id>"},
        {"bad tcp key", "tcp:\n  services:\n    smtp: dst_prt\n", 3,
         "routing key must be dst_port, dst, dst_addr, src, authority or sni"},
        {"tcp services not a map", "tcp:\n  services: [smtp]\n", 2,
         "tcp.services must map a service name to a key"},
        {"bad metadata variable name", "metadata_variables:\n  tenant: bad-name\n", 2,
         "'bad-name' is not a valid HAProxy variable name"},
        {"metadata variables not a map", "metadata_variables: [tenant]\n", 1,
         "metadata_variables must map a metadata key to a variable name"},
        {"metadata variable replacing a routing variable", "metadata_variables:\n  addr: ip\n", 2,
         "'ip' is a routing variable (txn.route.ip): metadata must not replace it"},
        {"metadata variable replacing a routing variable",
         "metadata_variables:\n  a: b\n  c: status\n", 3,
         "'status' is a routing variable (txn.route.status): metadata must not replace it"},
        {"bad resolver type", "resolver:\n  type: dns\n", 2,
         "resolver.type must be static, remote, chain or redis"},
        {"remote without address", "resolver:\n  type: remote\n", 2,
         "resolver.type remote needs resolver.remote.address"},
        {"remote block without address",
         "resolver:\n  type: remote\n  remote:\n    timeout_ms: 5\n", 4,
         "resolver.remote.address is required"},
        {"bad remote address", "resolver:\n  remote:\n    address: nowhere\n", 3,
         "address 'nowhere' is not host:port, [v6]:port or unix:/path"},
        {"negative duration", "cache:\n  ttl_ms: -5\n", 2, "a duration must not be negative"},
        {"duration not a number", "resolver:\n  timeout_ms: soon\n", 2,
         "expected a number of milliseconds"},
        {"bad endpoint", "routes:\n  http:\n    a.example.com:\n      endpoints: [10.0.0.1]\n", 4,
         "endpoint '10.0.0.1' is not host:port (IPv6 needs brackets)"},
        {"endpoint port out of range",
         "routes:\n  http:\n    a.example.com: {endpoints: [10.0.0.1:0]}\n", 3,
         "endpoint '10.0.0.1:0': host must be set and port within 1-65535"},
        {"unknown protocol in routes", "routes:\n  http: {}\n  smtp:\n    x: {endpoints: [a:1]}\n",
         3, "unknown protocol 'smtp' (http, postgres, tcp, tls)"},
        {"route without endpoints", "routes:\n  tls:\n    s.example.com: {metadata: {a: b}}\n", 3,
         "a route needs endpoints, paths or error"},
    };
    test::temp_dir dir;
    for (const auto& c : cases) {
        INFO(c.what << ":\n" << c.yaml);
        CHECK(parse_error(c.yaml, "inline.yaml") ==
              "inline.yaml:" + std::to_string(c.line) + ": " + c.problem);
        const auto path = dir.write("case.yaml", c.yaml);
        CHECK(load_error(path) == path + ":" + std::to_string(c.line) + ": " + c.problem);
    }
}

TEST_CASE("config: YAML errors name the file and the line", "[config]") {
    // Errors raised by yaml-cpp itself (syntax, or a value of the wrong type) carry its message.
    const std::vector<std::pair<std::string, int>> cases{
        {"cache:\n  ttl_ms: 5\n  max_entries: [1, 2\n", 4},               // unclosed flow sequence
        {"cache:\n  max_entries: lots\n", 2},                             // not a number
        {"resolver:\n  remote:\n    address: {a: b}\n", 3},               // not a string
        {"ssrf:\n  mode: blocklist\n  block: [{a: b}]\n", 3},             // not a string
        {"routes:\n  http:\n    a: {endpoints: [a:1], ttl_ms: x}\n", 3},  // not a number
        {"routes:\n  http:\n    a:\n      error: forbidden\n      retry_after_ms: soon\n", 5},
    };
    test::temp_dir dir;
    for (const auto& [yaml, line] : cases) {
        INFO(yaml);
        const std::string want = ":" + std::to_string(line) + ":";
        const auto inline_err = parse_error(yaml, "inline.yaml");
        CHECK_THAT(inline_err, Catch::Matchers::StartsWith("inline.yaml" + want));
        const auto path = dir.write("case.yaml", yaml);
        CHECK_THAT(load_error(path), Catch::Matchers::StartsWith(path + want));
    }
    CHECK_THAT(load_error((dir.path() / "absent.yaml").string()),
               Catch::Matchers::EndsWith("absent.yaml: cannot read the file"));
}

TEST_CASE("config: resolver.remote.address takes host names and lists", "[config]") {
    const auto addresses = [](const std::string& value) {
        return parse_routing_config(
                   "resolver:\n  type: remote\n  remote:\n    address: " + value + "\n", "r.yaml")
            .remote->addresses;
    };
    SECTION("one address of each form; a name is kept as written, looked up when connecting") {
        const auto name = addresses("cp.internal:7001");
        REQUIRE(name.size() == 1);
        CHECK(name[0].type == connect_address::kind::tcp);
        CHECK(name[0].host == "cp.internal");
        CHECK(name[0].port == 7001);
        CHECK_FALSE(name[0].numeric_host().has_value());
        CHECK(addresses("localhost:7001")[0].host == "localhost");
        CHECK(addresses("control-plane.ns.svc.cluster.local.:7001")[0].port == 7001);
        const auto v6 = addresses("'[::1]:7001'");
        CHECK(v6[0].host == "::1");
        CHECK(v6[0].to_string() == "[::1]:7001");
        REQUIRE(v6[0].numeric_host().has_value());
        CHECK(addresses("127.0.0.1:7001")[0].numeric_host()->to_string() == "127.0.0.1");
        CHECK(addresses("unix:/run/cp.sock")[0].path == "/run/cp.sock");
    }
    SECTION("a list, in its order") {
        const auto list = addresses("[cp-a.internal:7001, '[fd00::1]:7002', unix:/run/cp.sock]");
        REQUIRE(list.size() == 3);
        CHECK(list[0].to_string() == "cp-a.internal:7001");
        CHECK(list[1].to_string() == "[fd00::1]:7002");
        CHECK(list[2].to_string() == "unix:/run/cp.sock");
        const auto block = parse_routing_config(
            "resolver:\n  remote:\n    address:\n      - cp-a:7001\n      - cp-b:7001\n", "r.yaml");
        REQUIRE(block.remote->addresses.size() == 2);
        CHECK(block.remote->addresses[1].host == "cp-b");
    }
}

TEST_CASE("config: bad resolver.remote.address values name the line", "[config]") {
    struct bad_case {
        const char* yaml;
        int line;
        std::string problem;
    };
    const std::vector<bad_case> cases{
        {"resolver:\n  remote:\n    address: []\n", 3,
         "resolver.remote.address must not be an empty list"},
        {"resolver:\n  remote:\n    address: cp.internal:70000\n", 3,
         "address 'cp.internal:70000' has a bad port (1-65535)"},
        {"resolver:\n  remote:\n    address: cp.internal:0\n", 3,
         "address 'cp.internal:0' has a bad port (1-65535)"},
        {"resolver:\n  remote:\n    address: 'cp.internal:'\n", 3,
         "address 'cp.internal:' has a bad port (1-65535)"},
        {"resolver:\n  remote:\n    address:\n      - cp-a:7001\n      - cp b:7001\n", 5,
         "address 'cp b:7001' has a host that is neither a numeric address nor a host name"},
        {"resolver:\n  remote:\n    address: -cp.internal:7001\n", 3,
         "address '-cp.internal:7001' has a host that is neither a numeric address nor a host "
         "name"},
        {"resolver:\n  remote:\n    address: a..b:7001\n", 3,
         "address 'a..b:7001' has a host that is neither a numeric address nor a host name"},
        {"resolver:\n  remote:\n    address: ':7001'\n", 3, "address ':7001' has no host"},
        {"resolver:\n  remote:\n    address: '[cp.internal]:7001'\n", 3,
         "address '[cp.internal]:7001' needs a numeric IPv6 address inside [ ]"},
        {"resolver:\n  remote:\n    address: 'unix:'\n", 3,
         "address 'unix:' has an empty Unix socket path"},
        {"resolver:\n  remote:\n    address:\n      - cp-a:7001\n      - [cp-b:7001]\n", 5,
         "resolver.remote.address must be an address or a list of addresses"},
    };
    test::temp_dir dir;
    for (const auto& c : cases) {
        INFO(c.yaml);
        CHECK(parse_error(c.yaml, "inline.yaml") ==
              "inline.yaml:" + std::to_string(c.line) + ": " + c.problem);
        const auto path = dir.write("case.yaml", c.yaml);
        CHECK(load_error(path) == path + ":" + std::to_string(c.line) + ": " + c.problem);
    }
}

TEST_CASE("config: the redis section is read, absent by default", "[config][redis]") {
    CHECK_FALSE(parse_routing_config("cache: {ttl_ms: 5}\n", "lone.yaml").redis);
    const auto cfg = parse_routing_config(
        "redis:\n  address: 127.0.0.1:6380\n  database: 3\n  user: fleet\n  password: s3cret\n"
        "  key_prefix: 'prod:'\n  agent_id: edge-1.a\n  connect_timeout_ms: 700\n"
        "  command_timeout_ms: 40\n  reconnect_min_ms: 20\n  reconnect_max_ms: 900\n"
        "  max_pending: 77\n",
        "fleet.yaml");
    REQUIRE(cfg.redis);
    const auto& r = *cfg.redis;
    CHECK(r.address.to_string() == "127.0.0.1:6380");
    CHECK(r.database == 3);
    CHECK(r.user == "fleet");
    CHECK(r.password == "s3cret");
    CHECK(r.key_prefix == "prod:");
    CHECK(r.agent_id == "edge-1.a");
    CHECK(r.connect_timeout.count() == 700);
    CHECK(r.command_timeout.count() == 40);
    CHECK(r.reconnect_min.count() == 20);
    CHECK(r.reconnect_max.count() == 900);
    CHECK(r.max_pending == 77);

    const auto defaults = parse_routing_config("redis: {address: 'unix:/run/redis.sock'}\n", "d");
    REQUIRE(defaults.redis);
    CHECK(defaults.redis->address.type == connect_address::kind::unix_socket);
    CHECK(defaults.redis->key_prefix == "spoa:");
    CHECK(defaults.redis->agent_id.empty());  // random at start
    CHECK(defaults.redis->database == 0);
    CHECK(defaults.redis->password.empty());
    CHECK(
        parse_routing_config("redis: {address: '[::1]:6379'}\n", "v6").redis->address.to_string() ==
        "[::1]:6379");
    // A name is looked up at each connection attempt (redis_options.hpp).
    CHECK(parse_routing_config("redis: {address: 'redis.internal:6379'}\n", "name")
              .redis->address.host == "redis.internal");
}

TEST_CASE("config: bad redis values name the line", "[config][redis]") {
    struct bad_case {
        std::string yaml;
        int line;
        std::string problem;
    };
    const std::vector<bad_case> cases{
        {"redis: {database: 1}\n", 1,
         "redis.address is required (host:port, [v6]:port or unix:/path)"},
        {"redis:\n  address: 127.0.0.1:0\n", 2, "address '127.0.0.1:0' has a bad port (1-65535)"},
        {"redis:\n  address: 127.0.0.1:6379\n  adress: x\n", 3,
         "unknown key 'adress' in redis (known: address, database, user, password, key_prefix, "
         "agent_id, connect_timeout_ms, command_timeout_ms, reconnect_min_ms, reconnect_max_ms, "
         "max_pending, ping_interval_ms, wake_lease_ms, shared_cache, coordinate_resolves, "
         "resolve_lease_ms, activity_interval_ms)"},
        {"redis:\n  address: 127.0.0.1:6379\n  user: fleet\n", 3,
         "redis.user needs redis.password"},
        {"redis:\n  address: 127.0.0.1:6379\n  agent_id: 'a b'\n", 3,
         "redis.agent_id must be 1-64 letters, digits, '.', '_' or '-' (and not \"-\" alone)"},
        {"redis:\n  address: 127.0.0.1:6379\n  agent_id: '-'\n", 3,
         "redis.agent_id must be 1-64 letters, digits, '.', '_' or '-' (and not \"-\" alone)"},
        {"redis:\n  address: 127.0.0.1:6379\n  key_prefix: 'a b'\n", 3,
         "redis.key_prefix must not contain white space"},
        {"redis:\n  address: 127.0.0.1:6379\n  command_timeout_ms: 0\n", 3,
         "redis.command_timeout_ms must be positive"},
        {"redis:\n  address: 127.0.0.1:6379\n  reconnect_min_ms: 500\n  reconnect_max_ms: 100\n", 4,
         "redis.reconnect_max_ms must not be below reconnect_min_ms"},
        {"redis:\n  address: 127.0.0.1:6379\n  database: -1\n", 3,
         "redis.database must be a whole number from 0 to 1000000"},
    };
    for (const auto& c : cases) {
        INFO(c.yaml);
        CHECK(parse_error(c.yaml, "r.yaml") ==
              "r.yaml:" + std::to_string(c.line) + ": " + c.problem);
    }
}

TEST_CASE("config: resolver.type redis and the order of a chain", "[config][redis]") {
    using kind = routing_config::resolver_kind;
    using link = routing_config::chain_link;
    const std::string redis = "redis: {address: 127.0.0.1:6379}\n";
    const auto alone = parse_routing_config("resolver: {type: redis}\n" + redis, "r.yaml");
    CHECK(alone.resolver == kind::redis);
    CHECK_FALSE(alone.remote);

    // Without chain: the file's routes, then the control plane, as before.
    const auto usual = parse_routing_config(
        "resolver: {type: chain, remote: {address: 127.0.0.1:7070}}\n", "r.yaml");
    CHECK(usual.chain == std::vector<link>{link::static_routes, link::remote});

    const auto three = parse_routing_config(
        "resolver:\n  type: chain\n  chain: [static, redis, remote]\n"
        "  remote: {address: 127.0.0.1:7070}\n" +
            redis,
        "r.yaml");
    CHECK(three.resolver == kind::chain);
    CHECK(three.chain == std::vector<link>{link::static_routes, link::redis, link::remote});

    // Any order, any two: only the sources named need their sections.
    const auto pair =
        parse_routing_config("resolver: {type: chain, chain: [redis, static]}\n" + redis, "r.yaml");
    CHECK(pair.chain == std::vector<link>{link::redis, link::static_routes});
    CHECK_FALSE(pair.remote);
    const auto no_redis = parse_routing_config(
        "resolver: {type: chain, chain: [remote, static], remote: {address: 127.0.0.1:1}}\n",
        "r.yaml");
    CHECK(no_redis.chain == std::vector<link>{link::remote, link::static_routes});
}

TEST_CASE("config: bad resolver.type redis and resolver.chain values name the line",
          "[config][redis]") {
    struct bad_case {
        std::string yaml;
        int line;
        std::string problem;
    };
    const std::string redis = "redis:\n  address: 127.0.0.1:6379\n";
    const std::vector<bad_case> cases{
        {"resolver:\n  type: redis\n", 2,
         "resolver.type redis needs a redis: section (the fleet's Redis)"},
        {"resolver:\n  type: chain\n  chain: [static, redis]\n", 3,
         "resolver.chain names redis, which needs a redis: section"},
        {"resolver:\n  type: chain\n  chain: [static, remote]\n" + redis, 2,
         "resolver.type chain needs resolver.remote.address"},
        {"resolver:\n  type: redis\n  chain: [static, redis]\n" + redis, 3,
         "resolver.chain needs resolver.type chain"},
        {"resolver:\n  chain: [static, redis]\n" + redis, 2,
         "resolver.chain needs resolver.type chain"},
        {"resolver:\n  type: chain\n  chain: [redis]\n" + redis, 3,
         "resolver.chain needs at least two of static, redis and remote"},
        {"resolver:\n  type: chain\n  chain: []\n" + redis, 3,
         "resolver.chain needs at least two of static, redis and remote"},
        {"resolver:\n  type: chain\n  chain:\n    - redis\n    - static\n    - redis\n" + redis, 6,
         "resolver.chain names redis twice"},
        {"resolver:\n  type: chain\n  chain:\n    - static\n    - dns\n" + redis, 5,
         "resolver.chain entries must be static, redis or remote"},
        {"resolver:\n  type: chain\n  chain:\n    - static\n    - [redis]\n" + redis, 5,
         "resolver.chain entries must be static, redis or remote"},
        {"resolver:\n  type: chain\n  chain: static\n" + redis, 3,
         "resolver.chain must be a list of static, redis, remote"},
        {"resolver:\n  type: chain\n  chan: [static, redis]\n" + redis, 3,
         "unknown key 'chan' in resolver (known: type, chain, remote, timeout_ms)"},
    };
    for (const auto& c : cases) {
        INFO(c.yaml);
        CHECK(parse_error(c.yaml, "r.yaml") ==
              "r.yaml:" + std::to_string(c.line) + ": " + c.problem);
    }
}

}  // namespace spoa::handlers::routing
