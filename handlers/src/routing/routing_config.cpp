#include "spoa/handlers/routing/routing_config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <stdexcept>

#include "config_section.hpp"
#include "spoa/handlers/routing/contract.hpp"
#include "spoa/handlers/routing/invalidation_message.hpp"
#include "spoa/handlers/routing/static_resolver.hpp"

namespace spoa::handlers::routing {
namespace {

constexpr std::uint64_t max_table_size = 100'000'000;
/// Consecutive checks or failures: "never" in practice is a large number (a test sets fall to a
/// million so that only the breaker decides).
constexpr std::uint64_t max_count = 1'000'000'000;

std::vector<named_range> ranges(const config_section& s, std::string_view key) {
    std::vector<named_range> out;
    const auto n = s[key];
    if (!n) return out;
    if (!n.IsSequence()) s.fail(n, std::string(key) + " must be a list of CIDRs");
    for (const auto& item : n) {
        const auto text = item.as<std::string>();
        const auto c = cidr::parse(text);
        if (!c) s.fail(item, "'" + text + "' is not a CIDR (e.g. 10.0.0.0/8, fd00::/8)");
        out.push_back({*c, "configured " + std::string(key)});
    }
    return out;
}

listen_address address(const config_section& s, std::string_view key) {
    try {
        return listen_address::parse(*s.text(key));
    } catch (const std::invalid_argument& e) {
        s.fail(s[key], e.what());
    }
}

connect_address control_plane_address(const config_section& s, const YAML::Node& item) {
    if (!item.IsScalar())
        s.fail(item, "resolver.remote.address must be an address or a list of addresses");
    try {
        return connect_address::parse(item.as<std::string>());
    } catch (const std::invalid_argument& e) {
        s.fail(item, e.what());
    }
}

/// One address, or a list tried in order. Only the syntax is checked here: names are looked up
/// at each connection attempt, so a name not yet in DNS (a compose service starting) is no error.
std::vector<connect_address> control_plane_addresses(const config_section& s) {
    const auto node = s["address"];
    if (!node.IsSequence()) return {control_plane_address(s, node)};
    if (node.size() == 0) s.fail(node, "resolver.remote.address must not be an empty list");
    std::vector<connect_address> out;
    for (const auto& item : node)
        out.push_back(control_plane_address(s, item));
    return out;
}

remote_resolver_options parse_remote(const config_section& s) {
    remote_resolver_options o;
    if (!s.has("address")) s.fail("resolver.remote.address is required");
    o.addresses = control_plane_addresses(s);
    o.call_timeout = s.millis("timeout_ms").value_or(o.call_timeout);
    o.reconnect_min = s.millis("reconnect_min_ms").value_or(o.reconnect_min);
    o.reconnect_max = s.millis("reconnect_max_ms").value_or(o.reconnect_max);
    o.max_pending = s.count("max_pending", 1, max_table_size).value_or(o.max_pending);
    return o;
}

using chain_link = routing_config::chain_link;

constexpr std::pair<std::string_view, chain_link> chain_names[] = {
    {"static", chain_link::static_routes},
    {"redis", chain_link::redis},
    {"remote", chain_link::remote}};

chain_link chain_entry(const config_section& s, const YAML::Node& item) {
    const auto word = item.IsScalar() ? item.as<std::string>() : std::string();
    for (const auto& [name, link] : chain_names)
        if (name == word) return link;
    s.fail(item, "resolver.chain entries must be static, redis or remote");
}

/// `resolver.chain`: the order a chain asks its resolvers in; each at most once, two or more.
std::vector<chain_link> parse_chain(const config_section& s) {
    const auto node = s["chain"];
    if (!node.IsSequence()) s.fail(node, "resolver.chain must be a list of static, redis, remote");
    std::vector<chain_link> out;
    for (const auto& item : node) {
        const auto link = chain_entry(s, item);
        if (std::find(out.begin(), out.end(), link) != out.end())
            s.fail(item, "resolver.chain names " + item.as<std::string>() + " twice");
        out.push_back(link);
    }
    if (out.size() < 2)
        s.fail(node, "resolver.chain needs at least two of static, redis and remote");
    return out;
}

bool chains(const routing_config& cfg, chain_link link) {
    return cfg.resolver == routing_config::resolver_kind::chain &&
           std::find(cfg.chain.begin(), cfg.chain.end(), link) != cfg.chain.end();
}

/// `has_redis`: the file has a `redis:` section (read after this one), which the `redis`
/// resolver needs.
void parse_resolver(const config_section& s, bool has_redis, routing_config& cfg) {
    using kind = routing_config::resolver_kind;
    cfg.resolver = s.choice<kind>("type", {{"static", kind::static_routes},
                                           {"remote", kind::remote},
                                           {"chain", kind::chain},
                                           {"redis", kind::redis}})
                       .value_or(kind::static_routes);
    if (s.has("chain")) {
        if (cfg.resolver != kind::chain)
            s.fail(s["chain"], "resolver.chain needs resolver.type chain");
        cfg.chain = parse_chain(s);
    }
    if (const auto rem = s.section("remote", {"address", "timeout_ms", "reconnect_min_ms",
                                              "reconnect_max_ms", "max_pending"})) {
        cfg.remote = parse_remote(*rem);
    }
    if ((cfg.resolver == kind::remote || chains(cfg, chain_link::remote)) && !cfg.remote) {
        s.fail("resolver.type " + *s.text("type") + " needs resolver.remote.address");
    }
    if (!has_redis && cfg.resolver == kind::redis)
        s.fail(s["type"], "resolver.type redis needs a redis: section (the fleet's Redis)");
    if (!has_redis && chains(cfg, chain_link::redis))
        s.fail(s["chain"], "resolver.chain names redis, which needs a redis: section");
    cfg.router.resolve_timeout = s.millis("timeout_ms").value_or(cfg.router.resolve_timeout);
}

void parse_cache(const config_section& s, cache_options& o) {
    o.ttl = s.millis("ttl_ms").value_or(o.ttl);
    o.negative_ttl = s.millis("negative_ttl_ms").value_or(o.negative_ttl);
    o.max_entries = s.count("max_entries", 1, max_table_size).value_or(o.max_entries);
}

ssrf_policy parse_ssrf(const config_section& s) {
    enum class mode : std::uint8_t { allowlist, blocklist };
    const auto m =
        s.choice<mode>("mode", {{"allowlist", mode::allowlist}, {"blocklist", mode::blocklist}})
            .value_or(mode::blocklist);
    if (m == mode::blocklist) {
        if (s.has("allow")) s.fail(s["allow"], "ssrf.allow needs ssrf.mode allowlist");
        return ssrf_policy::blocklist(ranges(s, "block"));
    }
    if (s.has("block")) s.fail(s["block"], "ssrf.block needs ssrf.mode blocklist");
    auto allowed = ranges(s, "allow");
    if (allowed.empty()) s.fail("ssrf.mode allowlist needs a non-empty ssrf.allow");
    return ssrf_policy::allowlist(std::move(allowed));
}

/// "reject", "route:<resource-id>", and "plaintext" where `plaintext_allowed`.
void parse_startup_policy(const config_section& s, std::string_view key, postgres_policy& policy,
                          bool plaintext_allowed) {
    using action = postgres_policy::action;
    const auto v = s.text(key);
    if (!v) return;
    if (*v == "reject") {
        policy = {action::reject, {}};
    } else if (*v == "plaintext" && plaintext_allowed) {
        policy = {action::plaintext, {}};
    } else if (v->starts_with("route:") && v->size() > 6) {
        policy = {action::route, std::string(v->substr(6))};
    } else {
        s.fail(s[key], s.name_of(key) + (plaintext_allowed
                                             ? " must be plaintext, reject or route:<resource-id>"
                                             : " must be reject or route:<resource-id>"));
    }
}

void parse_postgres(const config_section& s, postgres_options& o) {
    using src = postgres_options::source;
    o.resource_from = s.choice<src>("resource_from", {{"database", src::database},
                                                      {"user", src::user},
                                                      {"endpoint", src::endpoint},
                                                      {"sni", src::sni}})
                          .value_or(o.resource_from);
    parse_startup_policy(s, "ssl_request", o.ssl_request, true);
    parse_startup_policy(s, "gssenc_request", o.gssenc_request, true);
    parse_startup_policy(s, "cancel_request", o.cancel_request, false);
}

void parse_tcp(const config_section& s, router_options& o) {
    const auto services = s["services"];
    if (!services) return;
    if (!services.IsMap()) s.fail(services, "tcp.services must map a service name to a key");
    for (const auto& kv : services) {
        const auto key = parse_tcp_key(kv.second.as<std::string>());
        if (!key) {
            s.fail(kv.second, "routing key must be dst_port, dst, dst_addr, src, authority or sni");
        }
        o.tcp_services[kv.first.as<std::string>()] = *key;
    }
}

void parse_metadata_variables(const YAML::Node& md, const std::string& origin, router_options& o) {
    if (!md.IsMap())
        config_error(origin, md, "metadata_variables must map a metadata key to a variable name");
    for (const auto& kv : md) {
        const auto var = kv.second.as<std::string>();
        if (!reply::valid_name(var))
            config_error(origin, kv.second, "'" + var + "' is not a valid HAProxy variable name");
        // The router sets metadata variables after ip/port/status: a metadata value under a
        // routing name would replace the SSRF-checked address or the refusal status.
        if (std::find(contract::variables.begin(), contract::variables.end(), var) !=
            contract::variables.end()) {
            config_error(origin, kv.second,
                         "'" + var + "' is a routing variable (txn." +
                             std::string(contract::var_prefix) + "." + var +
                             "): metadata must not replace it");
        }
        o.metadata_variables[kv.first.as<std::string>()] = var;
    }
}

void parse_wake_http(const config_section& s, cold_start_options& o) {
    if (!s.has("url")) s.fail("cold_start.http.url is required (e.g. http://cp/wake/{id})");
    o.http.url = *s.text("url");
    o.http.method = s.text("method").value_or("POST");
    if (const auto body = s.text("body")) o.http.body = *body;
    if (const auto hs = s["headers"]) {
        if (!hs.IsSequence())
            s.fail(hs, "cold_start.http.headers must be a list of \"Name: value\"");
        for (const auto& x : hs)
            o.http.headers.push_back(x.as<std::string>());
    }
    o.http_ok = s.statuses("ok_statuses").value_or(o.http_ok);
    o.http.timeout = s.millis("timeout_ms").value_or(o.http.timeout);
}

void parse_probe(const config_section& s, cold_start_options& o) {
    enum class probe : std::uint8_t { tcp, http };
    o.probe_http = s.choice<probe>("type", {{"tcp", probe::tcp}, {"http", probe::http}})
                       .value_or(probe::tcp) == probe::http;
    if (const auto path = s.text("path")) o.probe_path = *path;
    o.probe_expect = s.statuses("expect").value_or(o.probe_expect);
    o.probe_timeout = s.millis("timeout_ms").value_or(o.probe_timeout);
}

void parse_cold_start(const config_section& s, cold_start_options& o) {
    using waker = cold_start_options::waker_kind;
    o.enabled = s.flag("enabled").value_or(true);
    o.waker = s.choice<waker>("waker", {{"resolver", waker::resolver}, {"http", waker::http}})
                  .value_or(o.waker);
    if (const auto h =
            s.section("http", {"url", "method", "body", "headers", "ok_statuses", "timeout_ms"})) {
        parse_wake_http(*h, o);
    }
    if (o.waker == waker::http && o.http.url.empty()) {
        s.fail("cold_start.waker http needs cold_start.http.url");
    }
    o.timeout = s.millis("timeout_ms").value_or(o.timeout);
    o.processing_timeout = s.millis("processing_timeout_ms").value_or(o.processing_timeout);
    o.margin = s.millis("margin_ms").value_or(o.margin);
    if (o.margin >= o.processing_timeout) {
        s.fail("cold_start.margin_ms must be below processing_timeout_ms");
    }
    o.max_waiters_per_resource =
        s.count("max_waiters_per_resource", 1, max_table_size).value_or(o.max_waiters_per_resource);
    o.max_waiters = s.count("max_waiters", 1, max_table_size).value_or(o.max_waiters);
    o.poll_initial = s.millis("poll_initial_ms").value_or(o.poll_initial);
    o.poll_max = s.millis("poll_max_ms").value_or(o.poll_max);
    o.failure_ttl = s.millis("failure_ttl_ms").value_or(o.failure_ttl);
    if (const auto pr = s.section("probe", {"type", "path", "expect", "timeout_ms"})) {
        parse_probe(*pr, o);
    }
}

void parse_health(const config_section& s, health_options& o) {
    using check = health_options::check_kind;
    o.enabled = s.flag("enabled").value_or(true);
    o.kind = s.choice<check>("type", {{"tcp", check::tcp}, {"http", check::http}}).value_or(o.kind);
    if (const auto path = s.text("path")) o.http_path = *path;
    o.http_expect = s.statuses("expect").value_or(o.http_expect);
    o.interval = s.millis("interval_ms").value_or(o.interval);
    o.timeout = s.millis("timeout_ms").value_or(o.timeout);
    o.rise = static_cast<unsigned>(s.count("rise", 1, max_count).value_or(o.rise));
    o.fall = static_cast<unsigned>(s.count("fall", 1, max_count).value_or(o.fall));
    o.recent_use = s.millis("recent_use_ms").value_or(o.recent_use);
    if (o.interval.count() == 0) s.fail("health.interval_ms must be positive");
}

void parse_breaker(const config_section& s, breaker_options& o) {
    o.enabled = s.flag("enabled").value_or(true);
    o.failures = static_cast<unsigned>(s.count("failures", 1, max_count).value_or(o.failures));
    o.cooldown = s.millis("cooldown_ms").value_or(o.cooldown);
}

std::optional<listen_address> parse_passive(const config_section& s) {
    if (!s.has("listen")) s.fail("passive.listen (udp host:port) is required");
    const auto a = address(s, "listen");
    if (a.type != listen_address::kind::tcp) {
        s.fail(s["listen"], "passive.listen must be a numeric host:port (UDP)");
    }
    return a;
}

void parse_activity(const config_section& s, router_options& o) {
    o.activity_throttle = s.millis("throttle_ms").value_or(o.activity_throttle);
    o.connect_events = s.flag("connect_events").value_or(o.connect_events);
    o.activity_max_entries =
        s.count("max_entries", 1, max_table_size).value_or(o.activity_max_entries);
}

connect_address redis_address(const config_section& s) {
    if (!s.has("address")) s.fail("redis.address is required (host:port, [v6]:port or unix:/path)");
    connect_address a;
    try {
        a = connect_address::parse(*s.text("address"));
    } catch (const std::invalid_argument& e) {
        s.fail(s["address"], e.what());
    }
    return a;
}

std::chrono::milliseconds positive_millis(const config_section& s, std::string_view key,
                                          std::chrono::milliseconds fallback) {
    const auto v = s.millis(key).value_or(fallback);
    if (v.count() == 0) s.fail(s[key], s.name_of(key) + " must be positive");
    return v;
}

redis_options parse_redis(const config_section& s) {
    redis_options o;
    o.address = redis_address(s);
    o.database = s.count("database", 0, 1'000'000).value_or(o.database);
    o.user = s.text("user").value_or("");
    o.password = s.text("password").value_or("");
    if (!o.user.empty() && o.password.empty()) s.fail(s["user"], "redis.user needs redis.password");
    o.key_prefix = s.text("key_prefix").value_or(o.key_prefix);
    if (o.key_prefix.find_first_of(" \t\r\n") != std::string::npos)
        s.fail(s["key_prefix"], "redis.key_prefix must not contain white space");
    o.agent_id = s.text("agent_id").value_or("");
    if (s.has("agent_id") && !valid_agent_id(o.agent_id)) {
        s.fail(s["agent_id"],
               "redis.agent_id must be 1-64 letters, digits, '.', '_' or '-' "
               "(and not \"-\" alone)");
    }
    o.connect_timeout = positive_millis(s, "connect_timeout_ms", o.connect_timeout);
    o.command_timeout = positive_millis(s, "command_timeout_ms", o.command_timeout);
    o.reconnect_min = positive_millis(s, "reconnect_min_ms", o.reconnect_min);
    o.reconnect_max = positive_millis(s, "reconnect_max_ms", o.reconnect_max);
    if (o.reconnect_max < o.reconnect_min)
        s.fail(s["reconnect_max_ms"], "redis.reconnect_max_ms must not be below reconnect_min_ms");
    o.max_pending = s.count("max_pending", 1, max_table_size).value_or(o.max_pending);
    o.ping_interval = positive_millis(s, "ping_interval_ms", o.ping_interval);
    o.wake_lease = s.millis("wake_lease_ms").value_or(o.wake_lease);
    o.shared_cache = s.flag("shared_cache").value_or(o.shared_cache);
    o.coordinate_resolves = s.flag("coordinate_resolves").value_or(o.coordinate_resolves);
    o.resolve_lease = positive_millis(s, "resolve_lease_ms", o.resolve_lease);
    o.activity_interval = s.millis("activity_interval_ms").value_or(o.activity_interval);
    return o;
}

/// Validates the route table now so that a broken file fails at start, with its line.
void check_routes(const YAML::Node& routes, const std::string& origin) {
    try {
        (void)route_table::parse(routes);
    } catch (const YAML::Exception& e) {
        // A value of the wrong type inside a route (yaml-cpp's own message, with its mark).
        throw std::runtime_error(origin + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    } catch (const std::runtime_error& e) {
        // route_table::parse says "line N: problem"; keep this file's "<file>:N: problem".
        std::string_view what = e.what();
        if (what.starts_with("line ")) what.remove_prefix(5);
        throw std::runtime_error(origin + ":" + std::string(what));
    }
}

routing_config from_node(const YAML::Node& root, const std::string& origin) {
    routing_config cfg;
    cfg.path = origin;
    if (!root || root.IsNull()) return cfg;
    const config_section top(
        root, origin, "",
        {"resolver", "cache", "ssrf", "postgres", "tcp", "metadata_variables", "routes",
         "cold_start", "health", "breaker", "activity", "passive", "redis"});
    if (const auto s = top.section("resolver", {"type", "chain", "remote", "timeout_ms"}))
        parse_resolver(*s, top.has("redis"), cfg);
    if (const auto s = top.section("cache", {"ttl_ms", "negative_ttl_ms", "max_entries"}))
        parse_cache(*s, cfg.router.cache);
    if (const auto s = top.section("ssrf", {"mode", "allow", "block"})) cfg.ssrf = parse_ssrf(*s);
    if (const auto s = top.section(
            "postgres", {"resource_from", "ssl_request", "gssenc_request", "cancel_request"}))
        parse_postgres(*s, cfg.router.postgres);
    if (const auto s = top.section("tcp", {"services"})) parse_tcp(*s, cfg.router);
    if (const auto md = top["metadata_variables"]) parse_metadata_variables(md, origin, cfg.router);
    if (const auto s = top.section(
            "cold_start", {"enabled", "waker", "http", "timeout_ms", "processing_timeout_ms",
                           "margin_ms", "max_waiters_per_resource", "max_waiters",
                           "poll_initial_ms", "poll_max_ms", "failure_ttl_ms", "probe"}))
        parse_cold_start(*s, cfg.router.cold_start);
    if (const auto s = top.section("health", {"enabled", "type", "path", "expect", "interval_ms",
                                              "timeout_ms", "rise", "fall", "recent_use_ms"}))
        parse_health(*s, cfg.router.health);
    if (const auto s = top.section("breaker", {"enabled", "failures", "cooldown_ms"}))
        parse_breaker(*s, cfg.router.breaker);
    if (const auto s = top.section("activity", {"throttle_ms", "connect_events", "max_entries"}))
        parse_activity(*s, cfg.router);
    if (const auto s = top.section("passive", {"listen"})) cfg.feedback_listen = parse_passive(*s);
    if (const auto s = top.section(
            "redis",
            {"address", "database", "user", "password", "key_prefix", "agent_id",
             "connect_timeout_ms", "command_timeout_ms", "reconnect_min_ms", "reconnect_max_ms",
             "max_pending", "ping_interval_ms", "wake_lease_ms", "shared_cache",
             "coordinate_resolves", "resolve_lease_ms", "activity_interval_ms"}))
        cfg.redis = parse_redis(*s);
    check_routes(top["routes"], origin);
    return cfg;
}

}  // namespace

routing_config load_routing_config(const std::string& path) {
    const YAML::Node root = load_yaml_file(path);
    try {
        return from_node(root, path);
    } catch (const YAML::Exception& e) {
        // A value of the wrong type (e.g. max_entries: lots): yaml-cpp's message would not name
        // the file.
        throw std::runtime_error(path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    }
}

routing_config parse_routing_config(const std::string& yaml, const std::string& origin) {
    try {
        return from_node(YAML::Load(yaml), origin);
    } catch (const YAML::Exception& e) {
        throw std::runtime_error(origin + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    }
}

}  // namespace spoa::handlers::routing
