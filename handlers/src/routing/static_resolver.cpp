#include "spoa/handlers/routing/static_resolver.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <stdexcept>

#include "config_section.hpp"
#include "spoa/handlers/routing/resource_id.hpp"

namespace spoa::handlers::routing {
namespace {

[[noreturn]] void bad(const YAML::Node& n, const std::string& what) {
    const auto m = n.Mark();
    throw std::runtime_error("line " + std::to_string(m.line + 1) + ": " + what);
}

std::vector<endpoint> parse_endpoints(const YAML::Node& n) {
    if (!n.IsSequence()) bad(n, "endpoints must be a list of \"host:port\"");
    std::vector<endpoint> out;
    for (const auto& e : n) {
        try {
            out.push_back(endpoint::parse(e.as<std::string>()));
        } catch (const std::invalid_argument& ex) {
            bad(e, ex.what());
        }
    }
    return out;
}

route_table::entry parse_error_entry(const config_section& s) {
    const auto word = *s.text("error");
    const auto code = parse_error_code(word);
    if (!code) {
        s.fail(s["error"], "unknown error '" + word +
                               "' (not_found, forbidden, unavailable, timeout, internal)");
    }
    resolve_error e{*code, s.text("reason").value_or(std::string(to_string(*code))), {}};
    e.retry_after = s.millis("retry_after_ms");
    return e;
}

std::vector<path_route> parse_paths(const config_section& s) {
    std::vector<path_route> out;
    const auto paths = s["paths"];
    if (!paths) return out;
    if (!paths.IsMap()) bad(paths, "paths must map a prefix to a list of endpoints");
    for (const auto& p : paths) {
        const auto prefix = p.first.as<std::string>();
        if (!prefix.starts_with('/'))
            bad(p.first, "path prefix '" + prefix + "' must start with /");
        out.push_back({prefix, parse_endpoints(p.second)});
    }
    std::sort(out.begin(), out.end(), [](const path_route& a, const path_route& b) {
        return a.prefix.size() > b.prefix.size();
    });
    return out;
}

}  // namespace

route_table::entry route_table::parse_entry(const YAML::Node& n, const std::string& where) {
    if (!n.IsMap()) bad(n, "a route must be a map with endpoints (or error)");
    if (n["error"]) {
        return parse_error_entry(
            config_section(n, "", where, {"error", "reason", "retry_after_ms"}));
    }
    const config_section s(n, "", where,
                           {"endpoints", "paths", "metadata", "ttl_ms", "timeout_ms", "state"});
    route r;
    if (const auto eps = s["endpoints"]) r.endpoints = parse_endpoints(eps);
    r.paths = parse_paths(s);
    if (r.endpoints.empty() && r.paths.empty()) bad(n, "a route needs endpoints, paths or error");
    if (const auto md = s["metadata"]) {
        if (!md.IsMap()) bad(md, "metadata must be a map of strings");
        for (const auto& kv : md)
            r.metadata[kv.first.as<std::string>()] = kv.second.as<std::string>();
    }
    r.ttl = s.millis("ttl_ms");
    r.timeout = s.millis("timeout_ms");
    if (const auto st = s.text("state")) {
        const auto state = parse_backend_state(*st);
        if (!state)
            bad(s["state"], "unknown state '" + *st + "' (ready, asleep, starting, failed)");
        r.state = *state;
    }
    return r;
}

YAML::Node load_yaml_file(const std::string& path) {
    try {
        return YAML::LoadFile(path);
    } catch (const YAML::BadFile&) {
        throw std::runtime_error(path + ": cannot read the file");
    } catch (const YAML::Exception& e) {
        throw std::runtime_error(path + ":" + std::to_string(e.mark.line + 1) + ":" +
                                 std::to_string(e.mark.column + 1) + ": " + e.msg);
    }
}

void route_table::add(app_protocol p, std::string id, entry e) {
    auto& t = tables_[static_cast<std::size_t>(p)];
    if (id.starts_with("*.")) {
        t.wildcards.emplace_back(id.substr(1), std::move(e));
        std::stable_sort(t.wildcards.begin(), t.wildcards.end(), [](const auto& a, const auto& b) {
            return a.first.size() > b.first.size();
        });
        return;
    }
    t.exact.insert_or_assign(std::move(id), std::move(e));
}

std::shared_ptr<const route_table> route_table::parse(const YAML::Node& routes) {
    auto table = std::make_shared<route_table>();
    if (!routes) return table;
    if (!routes.IsMap())
        bad(routes, "routes must map a protocol (http, postgres, tcp, tls) to ids");
    for (const auto& proto_node : routes) {
        const auto proto_name = proto_node.first.as<std::string>();
        const auto proto = parse_app_protocol(proto_name);
        if (!proto)
            bad(proto_node.first,
                "unknown protocol '" + proto_name + "' (http, postgres, tcp, tls)");
        if (!proto_node.second.IsMap())
            bad(proto_node.second, "routes." + proto_name + " must map ids to routes");
        for (const auto& r : proto_node.second) {
            std::string id = r.first.as<std::string>();
            // Host-like ids are stored the way requests are looked up.
            if (*proto == app_protocol::http || *proto == app_protocol::tls)
                id = normalize_host(id);
            if (id.empty()) bad(r.first, "empty route id");
            auto entry = parse_entry(r.second, "routes." + proto_name + "." + id);
            table->add(*proto, std::move(id), std::move(entry));
        }
    }
    return table;
}

const route_table::entry* route_table::find(app_protocol p, std::string_view id) const {
    const auto& t = tables_[static_cast<std::size_t>(p)];
    if (const auto it = t.exact.find(id); it != t.exact.end()) return &it->second;
    for (const auto& [suffix, e] : t.wildcards) {
        if (id.size() > suffix.size() && id.ends_with(suffix)) return &e;
    }
    return nullptr;
}

std::size_t route_table::size() const noexcept {
    std::size_t n = 0;
    for (const auto& t : tables_)
        n += t.exact.size() + t.wildcards.size();
    return n;
}

static_resolver::static_resolver(std::string path) : path_(std::move(path)) {
    table_ = route_table::parse(load_yaml_file(path_)["routes"]);
}

static_resolver::static_resolver(std::shared_ptr<const route_table> table)
    : table_(std::move(table)) {}

std::shared_ptr<const route_table> static_resolver::table() const {
    std::lock_guard lock(mutex_);
    return table_;
}

std::optional<std::string> static_resolver::reload() {
    if (path_.empty()) return "this route table has no file to reload";
    // Without this, two reloads racing a file change could install the older read last.
    std::lock_guard reloading(reload_mutex_);
    std::shared_ptr<const route_table> fresh;
    try {
        fresh = route_table::parse(load_yaml_file(path_)["routes"]);
    } catch (const std::exception& e) {
        return std::string(e.what());
    }
    {
        std::lock_guard lock(mutex_);
        table_.swap(fresh);
    }
    // `fresh` now holds the old table: if no reader still has it, it is freed here, outside
    // mutex_, instead of stalling resolve() on the service loop while a large table is freed.
    return std::nullopt;
}

void static_resolver::resolve(const std::string& id, const resolve_context& ctx,
                              resolve_callback done) {
    calls_.fetch_add(1, std::memory_order_relaxed);
    const auto t = table();
    const route_table::entry* e = t->find(ctx.proto, id);
    if (!e) {
        misses_.fetch_add(1, std::memory_order_relaxed);
        done(resolve_error{error_code::not_found,
                           "no " + std::string(to_string(ctx.proto)) + " route for '" + id + "'",
                           {}});
        return;
    }
    done(*e);
}

resolver_stats static_resolver::stats() const {
    return {calls_.load(std::memory_order_relaxed), misses_.load(std::memory_order_relaxed), 0};
}

}  // namespace spoa::handlers::routing
