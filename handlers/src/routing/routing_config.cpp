#include "spoa/handlers/routing/routing_config.hpp"

#include <yaml-cpp/yaml.h>

#include <stdexcept>

#include "spoa/handlers/routing/static_resolver.hpp"

namespace spoa::routing {
namespace {

[[noreturn]] void bad(const std::string& origin, const YAML::Node& n, const std::string& what) {
    throw std::runtime_error(origin + ":" + std::to_string(n.Mark().line + 1) + ": " + what);
}

std::chrono::milliseconds ms(const std::string& origin, const YAML::Node& n) {
    try {
        const long v = n.as<long>();
        if (v < 0) bad(origin, n, "a duration must not be negative");
        return std::chrono::milliseconds(v);
    } catch (const YAML::Exception&) {
        bad(origin, n, "expected a number of milliseconds");
    }
}

std::vector<named_range> ranges(const std::string& origin, const YAML::Node& n, const char* what) {
    std::vector<named_range> out;
    if (!n) return out;
    if (!n.IsSequence()) bad(origin, n, std::string(what) + " must be a list of CIDRs");
    for (const auto& item : n) {
        const auto text = item.as<std::string>();
        const auto c = cidr::parse(text);
        if (!c) bad(origin, item, "'" + text + "' is not a CIDR (e.g. 10.0.0.0/8, fd00::/8)");
        out.push_back({*c, std::string("configured ") + what});
    }
    return out;
}

routing_config from_node(const YAML::Node& root, const std::string& origin) {
    routing_config cfg;
    cfg.path = origin;
    if (!root || root.IsNull()) return cfg;
    if (!root.IsMap()) bad(origin, root, "the file must be a YAML map");
    static const char* known[] = {
        "resolver",           "cache",  "ssrf",       "postgres", "tcp",
        "metadata_variables", "routes", "cold_start", "health",   "activity"};
    for (const auto& kv : root) {
        const auto key = kv.first.as<std::string>();
        if (std::find(std::begin(known), std::end(known), key) == std::end(known)) {
            bad(origin, kv.first, "unknown section '" + key + "'");
        }
    }
    if (const auto r = root["resolver"]) {
        const auto type = r["type"] ? r["type"].as<std::string>() : "static";
        if (type == "static") {
            cfg.resolver = routing_config::resolver_kind::static_routes;
        } else if (type == "remote") {
            cfg.resolver = routing_config::resolver_kind::remote;
        } else if (type == "chain") {
            cfg.resolver = routing_config::resolver_kind::chain;
        } else {
            bad(origin, r["type"], "resolver.type must be static, remote or chain");
        }
        if (const auto rem = r["remote"]) {
            remote_resolver_options o;
            if (!rem["address"]) bad(origin, rem, "resolver.remote.address is required");
            try {
                o.address = listen_address::parse(rem["address"].as<std::string>());
            } catch (const std::invalid_argument& e) {
                bad(origin, rem["address"], e.what());
            }
            if (rem["timeout_ms"]) o.call_timeout = ms(origin, rem["timeout_ms"]);
            if (rem["reconnect_min_ms"]) o.reconnect_min = ms(origin, rem["reconnect_min_ms"]);
            if (rem["reconnect_max_ms"]) o.reconnect_max = ms(origin, rem["reconnect_max_ms"]);
            if (rem["max_pending"]) o.max_pending = rem["max_pending"].as<std::size_t>();
            cfg.remote = o;
        }
        if (cfg.resolver != routing_config::resolver_kind::static_routes && !cfg.remote) {
            bad(origin, r, "resolver.type " + type + " needs resolver.remote.address");
        }
        if (r["timeout_ms"]) cfg.router.resolve_timeout = ms(origin, r["timeout_ms"]);
    }
    if (const auto c = root["cache"]) {
        if (c["ttl_ms"]) cfg.router.cache.ttl = ms(origin, c["ttl_ms"]);
        if (c["negative_ttl_ms"]) cfg.router.cache.negative_ttl = ms(origin, c["negative_ttl_ms"]);
        if (c["max_entries"]) cfg.router.cache.max_entries = c["max_entries"].as<std::size_t>();
    }
    if (const auto s = root["ssrf"]) {
        const auto mode = s["mode"] ? s["mode"].as<std::string>() : "blocklist";
        if (mode == "allowlist") {
            auto allowed = ranges(origin, s["allow"], "allow");
            if (allowed.empty()) bad(origin, s, "ssrf.mode allowlist needs a non-empty ssrf.allow");
            cfg.ssrf = ssrf_policy::allowlist(std::move(allowed));
        } else if (mode == "blocklist") {
            cfg.ssrf = ssrf_policy::blocklist(ranges(origin, s["block"], "block"));
        } else {
            bad(origin, s["mode"], "ssrf.mode must be allowlist or blocklist");
        }
    }
    if (const auto pg = root["postgres"]) {
        if (const auto from = pg["resource_from"]) {
            const auto v = from.as<std::string>();
            using src = postgres_options::source;
            if (v == "database")
                cfg.router.postgres.resource_from = src::database;
            else if (v == "user")
                cfg.router.postgres.resource_from = src::user;
            else if (v == "endpoint")
                cfg.router.postgres.resource_from = src::endpoint;
            else if (v == "sni")
                cfg.router.postgres.resource_from = src::sni;
            else
                bad(origin, from, "postgres.resource_from must be database, user, endpoint or sni");
        }
        const auto policy = [&](const char* key, std::string& out) {
            const auto n = pg[key];
            if (!n) return;
            const auto v = n.as<std::string>();
            if (v == "reject") {
                out.clear();
            } else if (v.starts_with("route:") && v.size() > 6) {
                out = v.substr(6);
            } else {
                bad(origin, n,
                    std::string("postgres.") + key + " must be reject or route:<resource-id>");
            }
        };
        policy("ssl_request", cfg.router.postgres.ssl_request_route);
        policy("cancel_request", cfg.router.postgres.cancel_request_route);
    }
    if (const auto tcp = root["tcp"]) {
        if (const auto services = tcp["services"]) {
            if (!services.IsMap())
                bad(origin, services, "tcp.services must map a service name to a key");
            for (const auto& kv : services) {
                const auto key = parse_tcp_key(kv.second.as<std::string>());
                if (!key) {
                    bad(origin, kv.second,
                        "routing key must be dst_port, dst, dst_addr, src, authority or sni");
                }
                cfg.router.tcp_services[kv.first.as<std::string>()] = *key;
            }
        }
    }
    if (const auto md = root["metadata_variables"]) {
        if (!md.IsMap())
            bad(origin, md, "metadata_variables must map a metadata key to a variable name");
        for (const auto& kv : md) {
            const auto var = kv.second.as<std::string>();
            if (!reply::valid_name(var))
                bad(origin, kv.second, "'" + var + "' is not a valid HAProxy variable name");
            cfg.router.metadata_variables[kv.first.as<std::string>()] = var;
        }
    }
    // Validate the route table now so that a broken file fails at start, with its line.
    try {
        (void)route_table::parse(root["routes"]);
    } catch (const std::runtime_error& e) {
        throw std::runtime_error(origin + ": " + e.what());
    }
    return cfg;
}

}  // namespace

routing_config load_routing_config(const std::string& path) {
    return from_node(load_yaml_file(path), path);
}

routing_config parse_routing_config(const std::string& yaml, const std::string& origin) {
    try {
        return from_node(YAML::Load(yaml), origin);
    } catch (const YAML::Exception& e) {
        throw std::runtime_error(origin + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    }
}

}  // namespace spoa::routing
