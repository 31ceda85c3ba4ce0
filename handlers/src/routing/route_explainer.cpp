#include "route_explainer.hpp"

#include <netdb.h>
#include <sys/socket.h>

#include <array>
#include <cstring>
#include <future>
#include <optional>
#include <stdexcept>
#include <variant>
#include <vector>

#include "spoa/agent/json.hpp"
#include "spoa/handlers/routing/contract.hpp"
#include "spoa/handlers/routing/postgres_sqlstate.hpp"
#include "spoa/handlers/routing/resource_id.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace std::chrono_literals;

/// A result delivered once from the service loop to the admin thread, which may have stopped
/// waiting: both hold the promise through this shared state.
template <typename T>
struct handoff {
    std::promise<T> promise;
    std::atomic<bool> set{false};
    void deliver(T value) {
        if (!set.exchange(true)) promise.set_value(std::move(value));
    }
};

/// Every address `host` stands for (a literal, or what the system resolver says); blocking,
/// on the admin thread.
std::variant<std::vector<ip_address>, std::string> addresses_of(const std::string& host) {
    if (auto ip = ip_address::parse(host)) return std::vector<ip_address>{*ip};
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0)
        return std::string("cannot resolve ") + host + ": " + ::gai_strerror(rc);
    std::vector<ip_address> out;
    for (addrinfo* a = res; a; a = a->ai_next) {
        if (a->ai_family == AF_INET) {
            std::array<std::uint8_t, 4> b{};
            std::memcpy(b.data(), &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr, 4);
            out.push_back(ip_address::v4(b));
        } else if (a->ai_family == AF_INET6) {
            std::array<std::uint8_t, 16> b{};
            std::memcpy(b.data(), &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr,
                        16);
            out.push_back(ip_address::v6(b));
        }
    }
    ::freeaddrinfo(res);
    return out;
}

void write_route(json_writer& w, const route& r) {
    const auto endpoints = [&w](const std::vector<endpoint>& eps) {
        w.begin_array();
        for (const auto& ep : eps)
            w.value(ep.to_string());
        w.end_array();
    };
    w.begin_object().member("backend_state", to_string(r.state)).key("endpoints");
    endpoints(r.endpoints);
    w.key("paths").begin_array();
    for (const auto& p : r.paths) {
        w.begin_object().member("prefix", p.prefix).key("endpoints");
        endpoints(p.endpoints);
        w.end_object();
    }
    w.end_array().key("metadata").begin_object();
    for (const auto& [k, v] : r.metadata)
        w.member(k, v);
    w.end_object();
    if (r.ttl) w.member("ttl_ms", static_cast<std::int64_t>(r.ttl->count()));
    w.end_object();
}

void write_error(json_writer& w, const resolve_error& e) {
    w.begin_object()
        .member("code", to_string(e.code))
        .member("status", http_status(e.code))
        .member("reason", e.reason)
        .end_object();
}

}  // namespace

route_explainer::route_explainer(resolver& r, handlers::service_loop& loop,
                                 const route_cache& cache, const endpoint_health& health,
                                 ssrf_policy policy, const router_options& opts, bool cold_starts)
    : resolver_(r),
      loop_(loop),
      cache_(cache),
      health_(health),
      policy_(policy),
      checker_(std::make_shared<endpoint_checker>(loop, std::move(policy))),
      opts_(opts),
      cold_starts_(cold_starts) {}

std::string route_explainer::explain(app_protocol proto, std::string_view raw_id,
                                     std::string_view path) const {
    const bool host_like = proto == app_protocol::http || proto == app_protocol::tls;
    const std::string id = host_like ? normalize_host(raw_id) : std::string(raw_id);
    if (id.empty()) throw std::invalid_argument("no usable id");
    const std::string key = std::string(to_string(proto)) + ":" + id;

    // The resolver's answer now, then the SSRF check of the router (on the service loop).
    using answer = std::variant<route, resolve_error>;
    auto resolved = std::make_shared<handoff<answer>>();
    resolve_context ctx;
    ctx.proto = proto;
    ctx.path = std::string(path);
    loop_.post([this, resolved, id, ctx](uv_loop_t*) {
        resolver_.resolve(id, ctx,
                          [resolved](resolve_result r) { resolved->deliver(std::move(r)); });
    });
    auto fresh_future = resolved->promise.get_future();
    const auto wait = opts_.resolve_timeout + 200ms;
    std::optional<answer> fresh;
    if (fresh_future.wait_for(wait) == std::future_status::ready) fresh = fresh_future.get();

    using verdict = std::pair<std::shared_ptr<checked_route>, std::optional<resolve_error>>;
    std::optional<verdict> checked;
    if (fresh && std::holds_alternative<route>(*fresh)) {
        auto done = std::make_shared<handoff<verdict>>();
        loop_.post([checker = checker_, done, r = std::get<route>(*fresh)](uv_loop_t*) mutable {
            checker->check(std::move(r), [done](std::shared_ptr<checked_route> c,
                                                std::optional<resolve_error> e) {
                done->deliver({std::move(c), std::move(e)});
            });
        });
        auto f = done->promise.get_future();
        if (f.wait_for(10s) == std::future_status::ready) checked = f.get();
    }

    std::string out;
    json_writer w(out);
    w.begin_object()
        .member("protocol", to_string(proto))
        .member("id", id)
        .member("path", path)
        .member("key", key);

    // -- the cache ------------------------------------------------------------------------
    const std::uint64_t now = cache_.now_ms();
    const auto entry = cache_.inspect(key);
    w.key("cache").begin_object();
    if (!entry || (!entry->cached && !entry->in_flight)) {
        w.member("state", "absent");
    } else if (!entry->cached) {
        w.member("state", "in_flight");
    } else {
        const bool live = entry->expires_ms > now;
        w.member("state", !live          ? "expired"
                          : entry->route ? "route"
                                         : "negative")
            .member("age_ms", ms_since(now, entry->stored_ms))
            .member("ttl_ms", entry->expires_ms - entry->stored_ms)
            .member("expires_in_ms", live ? entry->expires_ms - now : std::uint64_t{0})
            .member("in_flight", entry->in_flight);
        if (entry->error) {
            w.key("error");
            write_error(w, *entry->error);
        }
    }
    w.end_object();

    // -- the resolver, now ----------------------------------------------------------------
    w.key("resolver").begin_object().member("name", resolver_.name());
    if (!fresh) {
        w.member("answer", "timeout")
            .member("reason",
                    "no answer within " + std::to_string(opts_.resolve_timeout.count()) + " ms");
    } else if (const auto* e = std::get_if<resolve_error>(&*fresh)) {
        w.member("answer", "error").key("error");
        write_error(w, *e);
    } else {
        w.member("answer", "route").key("route");
        write_route(w, std::get<route>(*fresh));
    }
    w.end_object();

    // -- every endpoint: addresses, SSRF, health --------------------------------------------
    w.key("endpoints").begin_array();
    if (fresh && std::holds_alternative<route>(*fresh)) {
        const route& r = std::get<route>(*fresh);
        const auto describe = [&](const endpoint& ep, std::string_view prefix) {
            w.begin_object().member("endpoint", ep.to_string());
            if (!prefix.empty()) w.member("path_prefix", prefix);
            auto addrs = addresses_of(ep.host);
            if (const auto* err = std::get_if<std::string>(&addrs)) {
                w.member("lookup_error", *err).end_object();
                return;
            }
            w.key("addresses").begin_array();
            for (const auto& ip : std::get<std::vector<ip_address>>(addrs)) {
                w.begin_object().member("address", ip.to_string());
                if (auto why = policy_.check(ip, ep.port)) {
                    w.member("ssrf", "refused").member("ssrf_reason", *why);
                } else {
                    w.member("ssrf", "allowed");
                }
                if (const auto st = health_.find(ip, ep.port)) {
                    w.member("health_tracked", true)
                        .member("healthy", st->healthy())
                        .member("breaker", to_string(st->circuit()));
                } else {
                    w.member("health_tracked", false);
                }
                w.end_object();
            }
            w.end_array().end_object();
        };
        for (const auto& ep : r.endpoints)
            describe(ep, {});
        for (const auto& p : r.paths) {
            for (const auto& ep : p.endpoints)
                describe(ep, p.prefix);
        }
    }
    w.end_array();

    // -- cold start ---------------------------------------------------------------------------
    w.key("cold_start").begin_object().member("enabled", cold_starts_);
    if (fresh && std::holds_alternative<route>(*fresh)) {
        const auto state = std::get<route>(*fresh).state;
        w.member("backend_state", to_string(state))
            .member("would_wake", cold_starts_ && state != backend_state::ready);
    }
    w.end_object();

    // -- what HAProxy would receive -------------------------------------------------------------
    // A live cache entry answers first, as on the hot path; otherwise the fresh answer, checked.
    const bool role = opts_.postgres.resource_from == postgres_options::source::user;
    const auto refusal = [&](int status, std::string_view reason, std::string_view cache) {
        w.member("status", status).member("reason", reason);
        if (proto == app_protocol::postgres) w.member("sqlstate", postgres_sqlstate(status, role));
        w.member("resource", id).member("cache", cache);
    };
    const auto forward = [&](const checked_route& cr, std::string_view cache) {
        const std::vector<checked_endpoint>* eps = &cr.endpoints;
        for (const auto& p : cr.paths) {
            if (path_has_prefix(path, p.prefix)) {
                eps = &p.endpoints;
                break;
            }
        }
        if (cr.state != backend_state::ready && !cold_starts_) {
            refusal(503,
                    "backend is " + std::string(to_string(cr.state)) + " (cold starts are off)",
                    cache);
            return;
        }
        if (eps->empty()) {
            refusal(503, "no endpoint for this path", cache);
            return;
        }
        const checked_endpoint& first = eps->front();
        w.member("ip", first.address.to_string())
            .member("port", first.port)
            .member("resource", id)
            .member("cache", cache)
            .member("candidates", static_cast<std::uint64_t>(eps->size()));
        for (const auto& [name, var] : opts_.metadata_variables) {
            if (const auto it = cr.metadata.find(name); it != cr.metadata.end())
                w.member(var, it->second);
        }
        if (cr.state != backend_state::ready) w.member("after_cold_start", true);
    };
    w.key("haproxy_variables").begin_object();
    if (entry && entry->cached && entry->expires_ms > now) {
        if (entry->route) {
            forward(*entry->route, "hit");
        } else {
            refusal(http_status(entry->error->code), entry->error->reason, "negative");
        }
    } else if (!fresh) {
        refusal(
            504,
            "no routing decision within " + std::to_string(opts_.resolve_timeout.count()) + " ms",
            "miss");
    } else if (const auto* e = std::get_if<resolve_error>(&*fresh)) {
        refusal(http_status(e->code), e->reason, "miss");
    } else if (!checked) {
        refusal(504, "endpoint checks did not finish", "miss");
    } else if (checked->second) {
        refusal(http_status(checked->second->code), checked->second->reason, "miss");
    } else {
        forward(*checked->first, "miss");
    }
    w.end_object().end_object();
    out.push_back('\n');
    return out;
}

}  // namespace spoa::handlers::routing
