#include "spoa/handlers/routing/routing_config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <stdexcept>

#include "spoa/handlers/routing/contract.hpp"
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
        "resolver", "cache",      "ssrf",   "postgres", "tcp",      "metadata_variables",
        "routes",   "cold_start", "health", "breaker",  "activity", "passive"};
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
            // The router sets metadata variables after ip/port/status: a metadata value under a
            // routing name would replace the SSRF-checked address or the refusal status.
            if (std::find(contract::variables.begin(), contract::variables.end(), var) !=
                contract::variables.end()) {
                bad(origin, kv.second,
                    "'" + var + "' is a routing variable (txn." +
                        std::string(contract::var_prefix) + "." + var +
                        "): metadata must not replace it");
            }
            cfg.router.metadata_variables[kv.first.as<std::string>()] = var;
        }
    }
    const auto flag = [&](const YAML::Node& n) {
        try {
            return n.as<bool>();
        } catch (const YAML::Exception&) {
            bad(origin, n, "expected true or false");
        }
    };
    const auto statuses = [&](const YAML::Node& n) {
        if (!n.IsSequence()) bad(origin, n, "expected a list of HTTP statuses");
        std::vector<long> out;
        for (const auto& v : n)
            out.push_back(v.as<long>());
        return out;
    };
    if (const auto cs = root["cold_start"]) {
        auto& o = cfg.router.cold_start;
        o.enabled = cs["enabled"] ? flag(cs["enabled"]) : true;
        if (const auto w = cs["waker"]) {
            const auto v = w.as<std::string>();
            if (v == "resolver")
                o.waker = cold_start_options::waker_kind::resolver;
            else if (v == "http")
                o.waker = cold_start_options::waker_kind::http;
            else
                bad(origin, w, "cold_start.waker must be resolver or http");
        }
        if (const auto h = cs["http"]) {
            if (!h["url"])
                bad(origin, h, "cold_start.http.url is required (e.g. http://cp/wake/{id})");
            o.http.url = h["url"].as<std::string>();
            o.http.method = h["method"] ? h["method"].as<std::string>() : "POST";
            if (h["body"]) o.http.body = h["body"].as<std::string>();
            if (const auto hs = h["headers"]) {
                for (const auto& x : hs)
                    o.http.headers.push_back(x.as<std::string>());
            }
            if (h["ok_statuses"]) o.http_ok = statuses(h["ok_statuses"]);
            if (h["timeout_ms"]) o.http.timeout = ms(origin, h["timeout_ms"]);
        }
        if (o.waker == cold_start_options::waker_kind::http && o.http.url.empty()) {
            bad(origin, cs, "cold_start.waker http needs cold_start.http.url");
        }
        if (cs["timeout_ms"]) o.timeout = ms(origin, cs["timeout_ms"]);
        if (cs["processing_timeout_ms"])
            o.processing_timeout = ms(origin, cs["processing_timeout_ms"]);
        if (cs["margin_ms"]) o.margin = ms(origin, cs["margin_ms"]);
        if (o.margin >= o.processing_timeout) {
            bad(origin, cs, "cold_start.margin_ms must be below processing_timeout_ms");
        }
        if (cs["max_waiters_per_resource"])
            o.max_waiters_per_resource = cs["max_waiters_per_resource"].as<std::size_t>();
        if (cs["max_waiters"]) o.max_waiters = cs["max_waiters"].as<std::size_t>();
        if (cs["poll_initial_ms"]) o.poll_initial = ms(origin, cs["poll_initial_ms"]);
        if (cs["poll_max_ms"]) o.poll_max = ms(origin, cs["poll_max_ms"]);
        if (cs["failure_ttl_ms"]) o.failure_ttl = ms(origin, cs["failure_ttl_ms"]);
        if (const auto pr = cs["probe"]) {
            const auto type = pr["type"] ? pr["type"].as<std::string>() : "tcp";
            if (type != "tcp" && type != "http")
                bad(origin, pr, "cold_start.probe.type must be tcp or http");
            o.probe_http = type == "http";
            if (pr["path"]) o.probe_path = pr["path"].as<std::string>();
            if (pr["expect"]) o.probe_expect = statuses(pr["expect"]);
            if (pr["timeout_ms"]) o.probe_timeout = ms(origin, pr["timeout_ms"]);
        }
    }
    if (const auto h = root["health"]) {
        auto& o = cfg.router.health;
        o.enabled = h["enabled"] ? flag(h["enabled"]) : true;
        if (const auto t = h["type"]) {
            const auto v = t.as<std::string>();
            if (v == "tcp")
                o.kind = health_options::check_kind::tcp;
            else if (v == "http")
                o.kind = health_options::check_kind::http;
            else
                bad(origin, t, "health.type must be tcp or http");
        }
        if (h["path"]) o.http_path = h["path"].as<std::string>();
        if (h["expect"]) o.http_expect = statuses(h["expect"]);
        if (h["interval_ms"]) o.interval = ms(origin, h["interval_ms"]);
        if (h["timeout_ms"]) o.timeout = ms(origin, h["timeout_ms"]);
        if (h["rise"]) o.rise = h["rise"].as<unsigned>();
        if (h["fall"]) o.fall = h["fall"].as<unsigned>();
        if (h["recent_use_ms"]) o.recent_use = ms(origin, h["recent_use_ms"]);
        if (o.rise == 0 || o.fall == 0)
            bad(origin, h, "health.rise and health.fall must be at least 1");
        if (o.interval.count() == 0) bad(origin, h, "health.interval_ms must be positive");
    }
    if (const auto b = root["breaker"]) {
        auto& o = cfg.router.breaker;
        o.enabled = b["enabled"] ? flag(b["enabled"]) : true;
        if (b["failures"]) o.failures = b["failures"].as<unsigned>();
        if (b["cooldown_ms"]) o.cooldown = ms(origin, b["cooldown_ms"]);
        if (o.failures == 0) bad(origin, b, "breaker.failures must be at least 1");
    }
    if (const auto pv = root["passive"]) {
        if (!pv["listen"]) bad(origin, pv, "passive.listen (udp host:port) is required");
        try {
            cfg.feedback_listen = listen_address::parse(pv["listen"].as<std::string>());
        } catch (const std::invalid_argument& e) {
            bad(origin, pv["listen"], e.what());
        }
        if (cfg.feedback_listen->type != listen_address::kind::tcp) {
            bad(origin, pv["listen"], "passive.listen must be a numeric host:port (UDP)");
        }
    }
    if (const auto a = root["activity"]) {
        if (a["throttle_ms"]) cfg.router.activity_throttle = ms(origin, a["throttle_ms"]);
        if (a["connect_events"]) cfg.router.connect_events = flag(a["connect_events"]);
        if (a["max_entries"]) cfg.router.activity_max_entries = a["max_entries"].as<std::size_t>();
    }
    // Validate the route table now so that a broken file fails at start, with its line.
    try {
        (void)route_table::parse(root["routes"]);
    } catch (const YAML::Exception& e) {
        // A value of the wrong type inside a route (yaml-cpp's own message, with its mark).
        throw std::runtime_error(origin + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
    } catch (const std::runtime_error& e) {
        // route_table::parse says "line N: problem"; keep this file's "<file>:N: problem".
        std::string_view what = e.what();
        if (what.starts_with("line ")) what.remove_prefix(5);
        throw std::runtime_error(origin + ":" + std::string(what));
    }
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

}  // namespace spoa::routing
