#include "spoa/handlers/routing/router.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>

#include "route_explainer.hpp"
#include "spoa/agent/json.hpp"
#include "spoa/agent/log_event.hpp"
#include "spoa/handlers/routing/contract.hpp"
#include "spoa/handlers/routing/postgres_sqlstate.hpp"
#include "spoa/handlers/routing/postgres_startup.hpp"
#include "spoa/handlers/routing/resource_id.hpp"

namespace spoa::handlers::routing {
namespace {

std::uint64_t now_ns() noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}

/// Cache keys are "<protocol>:<id>", built on the stack on the hot path.
struct key_buffer {
    char data[640];
    std::size_t size = 0;
    [[nodiscard]] bool build(app_protocol p, std::string_view id) noexcept {
        const std::string_view proto = to_string(p);
        if (proto.size() + 1 + id.size() > sizeof data) return false;
        std::memcpy(data, proto.data(), proto.size());
        data[proto.size()] = ':';
        std::memcpy(data + proto.size() + 1, id.data(), id.size());
        size = proto.size() + 1 + id.size();
        return true;
    }
    [[nodiscard]] std::string_view view() const noexcept { return {data, size}; }
};

/// When the agent started on the frame (read once by the worker), else now.
std::string_view message_name(app_protocol p) noexcept {
    switch (p) {
        case app_protocol::http:
            return contract::message::http;
        case app_protocol::postgres:
            return contract::message::postgres;
        case app_protocol::tcp:
            return contract::message::tcp;
        case app_protocol::tls:
            return contract::message::tls;
    }
    return contract::message::http;
}

std::uint64_t started_of(const message& m) noexcept {
    return m.received_ns() != 0 ? m.received_ns() : now_ns();
}

using contract::cache_label;
using contract::decision_kind;

std::vector<std::uint8_t> bytes_of(const protocol::byte_buffer& b) {
    const auto v = b.view();
    return {v.begin(), v.end()};
}

typed_value ip_value(const ip_address& a) noexcept {
    return a.is_v4() ? typed_value::ipv4(a.v4_bytes()) : typed_value::ipv6(a.v6_bytes());
}

void set_decision_time(reply& r, std::uint64_t started_ns) {
    r.set_int(var_scope::txn, contract::var::decision_us,
              static_cast<std::int64_t>((now_ns() - started_ns) / 1000));
}

}  // namespace

std::optional<tcp_key> parse_tcp_key(std::string_view s) noexcept {
    if (s == "dst_port") return tcp_key::dst_port;
    if (s == "dst") return tcp_key::dst;
    if (s == "dst_addr") return tcp_key::dst_addr;
    if (s == "src") return tcp_key::src;
    if (s == "authority") return tcp_key::authority;
    if (s == "sni") return tcp_key::sni;
    return std::nullopt;
}

/// One routing decision waiting for a resolver answer.
///
/// Made on a loop thread and handed to the route cache as a waiter (see cache_waiter): from
/// then on it belongs to the thread that ends the key's flight, which completes and destroys
/// it. The context is shared read-only with the resolve call the leader starts.
struct router::request final : cache_waiter {
    request(router& r, async_reply rep, const decision& d, std::shared_ptr<const resolve_context> c)
        : owner(r),
          reply(std::move(rep)),
          proto(d.proto),
          id(d.id),
          path(d.path),
          started_ns(d.started_ns),
          connection(d.connection),
          ctx(std::move(c)) {}

    void complete(const std::shared_ptr<const checked_route>& route,
                  const std::shared_ptr<const resolve_error>& error) override {
        answer_as(route, error, joined() ? cache_label::coalesced : cache_label::miss);
    }

    void answer_as(const std::shared_ptr<const checked_route>& route,
                   const std::shared_ptr<const resolve_error>& error, cache_label label) {
        const decision d{proto, id, path, started_ns, connection};
        if (owner.must_wake(route, error)) {
            owner.hold_for_cold_start(std::move(reply), d, route, label, *ctx);
            return;
        }
        owner.answer(reply, d, route, error, label);
        reply.done();
    }

    router& owner;
    async_reply reply;
    app_protocol proto;
    std::string id;
    std::string path;
    std::uint64_t started_ns;
    std::uint64_t connection;
    std::shared_ptr<const resolve_context> ctx;
};

/// One routing decision held while its backend starts.
struct router::cold_request final : cold_waiter {
    cold_request(router& r, async_reply rep, const decision& d, cache_label l)
        : owner(r),
          reply(std::move(rep)),
          proto(d.proto),
          id(d.id),
          path(d.path),
          started_ns(d.started_ns),
          connection(d.connection),
          label(l) {}

    void finish(const std::shared_ptr<const checked_route>& route,
                const std::shared_ptr<const resolve_error>& error, std::uint64_t waited_ms,
                bool woken) override {
        // The wait is reported either way; the decision is "cold" only if a wake was needed.
        owner.answer(reply, decision{proto, id, path, started_ns, connection}, route, error, label,
                     waited_ms, woken);
        reply.done();
    }

    router& owner;
    async_reply reply;
    app_protocol proto;
    std::string id;
    std::string path;
    std::uint64_t started_ns;
    std::uint64_t connection;
    cache_label label;
};

router::router(std::shared_ptr<resolver> r, ssrf_policy policy, router_options opts,
               std::shared_ptr<handlers::service_loop> service, std::shared_ptr<spdlog::logger> log)
    : resolver_(std::move(r)),
      opts_(std::move(opts)),
      log_(std::move(log)),
      service_(std::move(service)),
      health_(std::make_unique<endpoint_health>(*service_, opts_.health, opts_.breaker, log_)),
      checker_(*service_, std::move(policy), health_.get()),
      cache_(opts_.cache),
      cold_(std::make_unique<cold_starter>(*service_, *resolver_, checker_, cache_,
                                           opts_.cold_start, log_)),
      activity_(opts_.activity_max_entries),
      explainer_(std::make_unique<route_explainer>(*resolver_, *service_, cache_, *health_,
                                                   checker_.policy(), opts_,
                                                   opts_.cold_start.enabled)) {
    if (!log_) log_ = spdlog::default_logger();
    for (std::size_t l = 0; l < contract::cache_label_count; ++l) {
        for (std::size_t k = 0; k < contract::decision_kind_count; ++k) {
            protocol::byte_buffer b;
            protocol::encode_set_var(b, var_scope::txn, contract::var::cache,
                                     typed_value::string(to_string(static_cast<cache_label>(l))));
            protocol::encode_set_var(b, var_scope::txn, contract::var::kind,
                                     typed_value::string(to_string(static_cast<decision_kind>(k))));
            label_kind_actions_[l][k] = bytes_of(b);
        }
    }
    service_->post([this](uv_loop_t*) { health_->start(); });
}

router::~router() = default;

void router::attach(agent& a) {
    a.on(std::string(contract::message::http),
         [this](const message& m, reply& r) { handle_http(m, r); });
    a.on(std::string(contract::message::postgres),
         [this](const message& m, reply& r) { handle_postgres(m, r); });
    a.on(std::string(contract::message::tcp),
         [this](const message& m, reply& r) { handle_tcp(m, r); });
    a.on(std::string(contract::message::tls),
         [this](const message& m, reply& r) { handle_tls(m, r); });
    a.admin_route("POST", "/invalidate", [this](const admin_request& req) {
        const auto id = req.query.find("id");
        if (id == req.query.end() || id->second.empty()) {
            return admin_response{
                400, "text/plain",
                "usage: POST /invalidate?id=<id>[&protocol=http|postgres|tcp|tls]\n"};
        }
        std::optional<app_protocol> p;
        if (const auto proto = req.query.find("protocol"); proto != req.query.end()) {
            p = parse_app_protocol(proto->second);
            if (!p) return admin_response{400, "text/plain", "unknown protocol\n"};
        }
        const std::size_t n = invalidate(id->second, p);
        if (admin_invalidated_) admin_invalidated_(id->second, p);
        return admin_response{200, "text/plain", "invalidated " + std::to_string(n) + "\n"};
    });
    a.admin_route("GET", "/explain", [this](const admin_request& req) { return explain(req); });
    a.admin_route("GET", "/routes", [this](const admin_request& req) { return list_routes(req); });
    a.admin_route("GET", "/resources", [this](const admin_request&) {
        std::string body = "protocol id decisions last_seen_ms_ago\n";
        const std::uint64_t now = steady_ms();
        activity_.for_each([&](const resource_activity& act) {
            body += std::string(to_string(act.proto)) + " " + act.id + " " +
                    std::to_string(act.decisions.load()) + " " +
                    std::to_string(ms_since(now, act.last_seen_ms.load())) + "\n";
        });
        return admin_response{200, "text/plain", body};
    });
    health_->register_metrics(a.metrics());
    cold_->register_metrics(a.metrics());
    resolve_seconds_ = &a.metrics().add_histogram(
        "spoa_route_resolve_seconds", "Resolver call plus endpoint validation, per cache miss.",
        latency_buckets_seconds());
    a.metrics().add_collector([this](std::string& out) { render_metrics(out); });
}

admin_response router::explain(const admin_request& req) const {
    const auto arg = [&req](const char* name) -> std::string {
        const auto it = req.query.find(name);
        return it == req.query.end() ? std::string() : it->second;
    };
    const std::string proto_text = arg("protocol").empty() ? "http" : arg("protocol");
    const auto proto = parse_app_protocol(proto_text);
    const std::string id = arg("id");
    if (!proto || id.empty()) {
        return {400, "text/plain",
                "usage: GET /explain?id=<id>[&protocol=http|postgres|tcp|tls][&path=/p]\n"};
    }
    try {
        return {200, "application/json", explainer_->explain(*proto, id, arg("path"))};
    } catch (const std::invalid_argument& e) {
        return {400, "text/plain", std::string("cannot explain '") + id + "': " + e.what() + "\n"};
    }
}

admin_response router::list_routes(const admin_request& req) const {
    const auto number = [&req](const char* name, std::size_t fallback) {
        const auto it = req.query.find(name);
        if (it == req.query.end()) return fallback;
        std::size_t v = 0;
        const auto* end = it->second.data() + it->second.size();
        const auto r = std::from_chars(it->second.data(), end, v);
        return r.ec == std::errc{} && r.ptr == end ? v : fallback;
    };
    constexpr std::size_t max_limit = 1000;
    const std::size_t offset = number("offset", 0);
    const std::size_t limit = std::min(number("limit", 100), max_limit);
    std::size_t total = 0;
    const auto entries = cache_.entries(offset, limit, total);
    const std::uint64_t now = cache_.now_ms();
    std::string out;
    json_writer w(out);
    w.begin_object()
        .member("total", static_cast<std::uint64_t>(total))
        .member("offset", static_cast<std::uint64_t>(offset))
        .member("limit", static_cast<std::uint64_t>(limit));
    if (offset + entries.size() < total)
        w.member("next", "/routes?offset=" + std::to_string(offset + entries.size()) +
                             "&limit=" + std::to_string(limit));
    w.key("routes").begin_array();
    for (const auto& e : entries) {
        const auto colon = e.key.find(':');
        w.begin_object()
            .member("protocol", std::string_view(e.key).substr(0, colon))
            .member("id", std::string_view(e.key).substr(colon + 1))
            .member("expires_in_ms", e.expires_ms > now ? e.expires_ms - now : std::uint64_t{0});
        if (e.route) {
            w.member("backend_state", to_string(e.route->state)).key("endpoints").begin_array();
            for (const auto& ep : e.route->endpoints)
                w.value(endpoint{ep.address.to_string(), ep.port}.to_string());
            w.end_array();
        } else if (e.error) {
            w.member("refusal", to_string(e.error->code)).member("reason", e.error->reason);
        }
        w.end_object();
    }
    w.end_array().end_object();
    out.push_back('\n');
    return {200, "application/json", out};
}

std::size_t router::invalidate(std::string_view raw_id, std::optional<app_protocol> p) {
    std::size_t n = 0;
    for (app_protocol proto :
         {app_protocol::http, app_protocol::postgres, app_protocol::tcp, app_protocol::tls}) {
        if (p && *p != proto) continue;
        const std::string id = (proto == app_protocol::http || proto == app_protocol::tls)
                                   ? normalize_host(raw_id)
                                   : std::string(raw_id);
        key_buffer key;
        if (key.build(proto, id) && cache_.invalidate(key.view())) ++n;
    }
    resolver_->invalidate(std::string(raw_id));
    log_->info("invalidated '{}' ({} cache entr{})", raw_id, n, n == 1 ? "y" : "ies");
    return n;
}

// ---- per-protocol resource ids ---------------------------------------------------------------

void router::handle_http(const message& m, reply& reply) {
    const std::uint64_t started = started_of(m);
    const std::uint64_t conn = m.origin().connection_id;
    char buf[256];
    const std::string_view host =
        normalize_host(m.try_string(contract::arg::host).value_or(""), buf, sizeof buf);
    if (host.empty()) {
        bad_requests_.fetch_add(1, std::memory_order_relaxed);
        answer_refusal(reply, decision{app_protocol::http, {}, {}, started, conn}, 400,
                       "missing or oversized Host header", cache_label::none);
        return;
    }
    const std::string_view path = m.try_string(contract::arg::path).value_or("/");
    decide({app_protocol::http, host, path, started, conn}, reply, [&] {
        resolve_context ctx;
        ctx.proto = app_protocol::http;
        ctx.path = std::string(path);
        ctx.source = m.try_ip(contract::arg::src);
        return ctx;
    });
}

void router::handle_postgres(const message& m, reply& reply) {
    const std::uint64_t started = started_of(m);
    const std::uint64_t conn = m.origin().connection_id;
    const auto startup = parse_postgres_startup(m.try_bytes(contract::arg::startup).value_or(""));
    char sni_buf[256];
    const std::string_view sni =
        normalize_host(m.try_string(contract::arg::sni).value_or(""), sni_buf, sizeof sni_buf);
    std::string_view id;
    const auto& pg = opts_.postgres;
    using kind = postgres_startup::kind;
    switch (startup.type) {
        case kind::startup:
            switch (pg.resource_from) {
                case postgres_options::source::database:
                    id = startup.database;
                    break;
                case postgres_options::source::user:
                    id = startup.user;
                    break;
                case postgres_options::source::endpoint:
                    id = startup.endpoint_option();
                    break;
                case postgres_options::source::sni:
                    id = sni;
                    break;
            }
            break;
        case kind::tls_hello:
            id = sni;
            break;  // direct TLS: only the SNI names the target
        case kind::ssl_request:
        case kind::gss_request:
        case kind::cancel_request: {
            const postgres_policy& policy = startup.type == kind::ssl_request   ? pg.ssl_request
                                            : startup.type == kind::gss_request ? pg.gssenc_request
                                                                                : pg.cancel_request;
            if (policy.what == postgres_policy::action::route) {
                id = policy.route;
                break;
            }
            answer_before_startup(reply, startup.type, policy.what, started, conn);
            return;
        }
        case kind::invalid:
            bad_requests_.fetch_add(1, std::memory_order_relaxed);
            answer_refusal(reply, decision{app_protocol::postgres, {}, {}, started, conn}, 400,
                           std::string("invalid PostgreSQL startup packet: ") + startup.error,
                           cache_label::none);
            return;
    }
    if (id.empty()) {
        bad_requests_.fetch_add(1, std::memory_order_relaxed);
        answer_refusal(reply, decision{app_protocol::postgres, {}, {}, started, conn}, 400,
                       "no resource id in the startup packet (see postgres.resource_from)",
                       cache_label::none);
        return;
    }
    decide({app_protocol::postgres, id, {}, started, conn}, reply, [&] {
        resolve_context ctx;
        ctx.proto = app_protocol::postgres;
        ctx.source = m.try_ip(contract::arg::src);
        ctx.sni = std::string(sni);
        if (startup.type == kind::startup) {
            ctx.attributes["user"] = std::string(startup.user);
            ctx.attributes["database"] = std::string(startup.database);
            if (!startup.application_name.empty()) {
                ctx.attributes["application_name"] = std::string(startup.application_name);
            }
        }
        ctx.attributes["packet"] = startup.type == kind::startup          ? "startup"
                                   : startup.type == kind::tls_hello      ? "tls"
                                   : startup.type == kind::cancel_request ? "cancel"
                                   : startup.type == kind::gss_request    ? "gssenc_request"
                                                                          : "ssl_request";
        return ctx;
    });
}

void router::answer_before_startup(reply& reply, postgres_startup::kind packet,
                                   postgres_policy::action what, std::uint64_t started,
                                   std::uint64_t conn) const {
    using kind = postgres_startup::kind;
    // A CancelRequest has no plaintext to go on with: only a route lets it through.
    if (what == postgres_policy::action::plaintext && packet != kind::cancel_request) {
        plaintext_answers_.fetch_add(1, std::memory_order_relaxed);
        reply.set_string(var_scope::txn, contract::var::negotiation,
                         to_string(contract::negotiation_answer::plaintext));
        set_decision_time(reply, started);
        return;
    }
    const std::string_view reason =
        packet == kind::ssl_request   ? "SSLRequest refused (postgres.ssl_request: reject)"
        : packet == kind::gss_request ? "GSSENCRequest refused (postgres.gssenc_request: reject)"
                                      : "CancelRequest refused (postgres.cancel_request: reject)";
    answer_refusal(reply, decision{app_protocol::postgres, {}, {}, started, conn}, 403, reason,
                   cache_label::none);
}

void router::handle_tcp(const message& m, reply& reply) {
    const std::uint64_t started = started_of(m);
    const std::uint64_t conn = m.origin().connection_id;
    const std::string_view service = m.try_string(contract::arg::service).value_or("tcp");
    const auto src = m.try_ip(contract::arg::src);
    const auto dst = m.try_ip(contract::arg::dst);
    const auto port_arg = m.try_int(contract::arg::dst_port);
    const std::uint16_t dst_port =
        port_arg && *port_arg > 0 && *port_arg < 65536 ? static_cast<std::uint16_t>(*port_arg) : 0;
    const auto it = opts_.tcp_services.find(service);
    const tcp_key key = it == opts_.tcp_services.end() ? tcp_key::dst_port : it->second;
    std::string value;
    switch (key) {
        case tcp_key::dst_port:
            if (dst_port != 0) value = std::to_string(dst_port);
            break;
        case tcp_key::dst:
            if (dst) value = dst->to_string();
            break;
        case tcp_key::dst_addr:
            if (dst && dst_port != 0) value = endpoint{dst->to_string(), dst_port}.to_string();
            break;
        case tcp_key::src:
            if (src) value = src->to_string();
            break;
        case tcp_key::authority:
            value = normalize_host(m.try_string(contract::arg::authority).value_or(""));
            break;
        case tcp_key::sni:
            value = normalize_host(m.try_string(contract::arg::sni).value_or(""));
            break;
    }
    if (value.empty()) {
        bad_requests_.fetch_add(1, std::memory_order_relaxed);
        answer_refusal(reply, decision{app_protocol::tcp, {}, {}, started, conn}, 400,
                       "the connection carries no value for the service's routing key",
                       cache_label::none);
        return;
    }
    const std::string id = std::string(service) + ":" + value;
    decide({app_protocol::tcp, id, {}, started, conn}, reply, [&] {
        resolve_context ctx;
        ctx.proto = app_protocol::tcp;
        ctx.service = std::string(service);
        ctx.source = src;
        ctx.destination = dst;
        ctx.destination_port = dst_port;
        return ctx;
    });
}

void router::handle_tls(const message& m, reply& reply) {
    const std::uint64_t started = started_of(m);
    const std::uint64_t conn = m.origin().connection_id;
    char buf[256];
    const std::string_view sni =
        normalize_host(m.try_string(contract::arg::sni).value_or(""), buf, sizeof buf);
    if (sni.empty()) {
        bad_requests_.fetch_add(1, std::memory_order_relaxed);
        answer_refusal(reply, decision{app_protocol::tls, {}, {}, started, conn}, 400,
                       "TLS ClientHello without SNI", cache_label::none);
        return;
    }
    decide({app_protocol::tls, sni, {}, started, conn}, reply, [&] {
        resolve_context ctx;
        ctx.proto = app_protocol::tls;
        ctx.service = std::string(m.try_string(contract::arg::service).value_or("tls"));
        ctx.sni = std::string(sni);
        ctx.source = m.try_ip(contract::arg::src);
        const auto port = m.try_int(contract::arg::dst_port);
        if (port && *port > 0 && *port < 65536)
            ctx.destination_port = static_cast<std::uint16_t>(*port);
        if (const auto alpn = m.try_string(contract::arg::alpn))
            ctx.attributes["alpn"] = std::string(*alpn);
        return ctx;
    });
}

// ---- decision ----------------------------------------------------------------------------------

template <typename MakeContext>
void router::decide(const decision& d, reply& reply, MakeContext&& make_ctx) {
    key_buffer key;
    if (!key.build(d.proto, d.id)) {
        bad_requests_.fetch_add(1, std::memory_order_relaxed);
        answer_refusal(reply, decision{d.proto, {}, {}, d.started_ns, d.connection}, 400,
                       "resource id too long", cache_label::none);
        return;
    }
    // Hits are answered right here, on the loop thread, without allocating.
    const auto fast = cache_.peek(key.view(), d.started_ns / 1'000'000);
    if (fast.status == route_cache::lookup_status::hit ||
        fast.status == route_cache::lookup_status::negative_hit) {
        const cache_label label = fast.status == route_cache::lookup_status::hit
                                      ? cache_label::hit
                                      : cache_label::negative;
        if (must_wake(*fast.route, *fast.error)) {
            hold_for_cold_start(reply.defer(), d, *fast.route, label, make_ctx());
            return;
        }
        answer(reply, d, *fast.route, *fast.error, label);
        return;
    }
    // A miss: the answer comes later, from the thread that completes the lookup. Once the
    // cache has taken the waiter it may be answered and destroyed on another thread before
    // lookup() returns, so nothing here reaches into it afterwards: the leader resolves with
    // its own reference to the context.
    auto ctx = std::make_shared<const resolve_context>(make_ctx());
    std::unique_ptr<cache_waiter> waiter = std::make_unique<request>(*this, reply.defer(), d, ctx);
    const auto r = cache_.lookup(key.view(), waiter);
    switch (r.status) {
        case route_cache::lookup_status::hit:
        case route_cache::lookup_status::negative_hit:
            // Filled in between peek() and lookup(): the waiter was not taken and is ours.
            static_cast<request&>(*waiter).answer_as(
                r.route, r.error, r.route ? cache_label::hit : cache_label::negative);
            return;
        case route_cache::lookup_status::joined:
            return;
        case route_cache::lookup_status::leader:
            start_resolve(std::string(key.view()), std::string(d.id), *ctx);
            return;
        case route_cache::lookup_status::miss:
            return;  // not produced by lookup()
    }
}

void router::start_resolve(std::string key, std::string id, resolve_context ctx) {
    service_->post([this, key = std::move(key), id = std::move(id),
                    ctx = std::move(ctx)](uv_loop_t*) mutable {
        struct flight {
            bool done = false;
            bool leader = false;  ///< holds the fleet's resolve lease for this key
            std::uint64_t timer = 0;
            std::uint64_t started_ns = now_ns();
        };
        auto f = std::make_shared<flight>();
        const app_protocol proto = ctx.proto;
        const auto timeout_ms = static_cast<std::uint64_t>(opts_.resolve_timeout.count());
        f->timer = service_->start_timer(timeout_ms, [this, f, key, timeout_ms, proto, id] {
            if (f->done) return;
            f->done = true;
            resolve_timeouts_.fetch_add(1, std::memory_order_relaxed);
            // The fleet's followers of this key stop waiting for an answer that will not come.
            if (f->leader)
                shared_->resolved(proto, id, nullptr, std::chrono::milliseconds(0), true);
            finish_resolve(key, nullptr,
                           std::make_shared<resolve_error>(resolve_error{
                               error_code::timeout,
                               "no routing decision within " + std::to_string(timeout_ms) + " ms",
                               {}}),
                           std::nullopt);
        });
        auto fail = [this, f, key](resolve_error err) {
            f->done = true;
            service_->cancel_timer(f->timer);
            resolve_seconds_->observe(static_cast<double>(now_ns() - f->started_ns) * 1e-9);
            finish_resolve(key, nullptr, std::make_shared<resolve_error>(std::move(err)),
                           std::nullopt);
        };
        // A route, from the resolver or the shared tier, checked against this agent's policy.
        auto check = [this, f, key, proto, id](route r,
                                               std::optional<std::chrono::milliseconds> ttl) {
            checker_.check(std::move(r), [this, f, key, ttl, proto, id](
                                             std::shared_ptr<checked_route> checked,
                                             std::optional<resolve_error> err) {
                if (f->done) return;
                f->done = true;
                service_->cancel_timer(f->timer);
                resolve_seconds_->observe(static_cast<double>(now_ns() - f->started_ns) * 1e-9);
                if (err) {
                    if (err->code == error_code::forbidden) {
                        ssrf_refusals_.fetch_add(1, std::memory_order_relaxed);
                        log_->warn("route {} refused by SSRF policy: {}", key, err->reason);
                    }
                    finish_resolve(key, nullptr, std::make_shared<resolve_error>(std::move(*err)),
                                   std::nullopt);
                    return;
                }
                checked->activity = activity_.record(proto, key, id);
                encode_answers(*checked, id);
                finish_resolve(key, std::move(checked), nullptr, ttl);
            });
        };
        auto on_result = [this, f, proto, id, fail, check](resolve_result res) {
            if (f->done) return;
            // The resolver's answer is shared as it came, before this agent's checks.
            if (shared_)
                shared_->resolved(proto, id, &res, shared_ttl(res, opts_.cache), f->leader);
            if (auto* err = std::get_if<resolve_error>(&res)) {
                fail(std::move(*err));
                return;
            }
            route r = std::get<route>(std::move(res));
            const auto ttl = r.ttl;
            check(std::move(r), ttl);
        };
        // Resolvers may answer on any thread; the rest of the work happens on the service loop.
        auto call_resolver = [this, id, ctx, on_result] {
            resolver_->resolve(id, ctx, [this, on_result](resolve_result res) mutable {
                if (service_->on_loop_thread()) {
                    on_result(std::move(res));
                    return;
                }
                service_->post([on_result, res = std::move(res)](uv_loop_t*) mutable {
                    on_result(std::move(res));
                });
            });
        };
        if (!shared_) {
            call_resolver();
            return;
        }
        // The shared tier first; a follower of another agent's resolve waits at most half the
        // deadline, so that a resolve of its own still fits in the rest.
        shared_->begin_miss(
            proto, id, opts_.resolve_timeout / 2,
            [this, f, proto, id, fail, check, call_resolver](shared_route_tier::miss_start s) {
                if (f->done) {
                    if (s.leader)
                        shared_->resolved(proto, id, nullptr, std::chrono::milliseconds(0), true);
                    return;
                }
                f->leader = s.leader;
                if (!s.shared) {
                    call_resolver();
                    return;
                }
                if (auto* err = std::get_if<resolve_error>(&s.shared->answer)) {
                    fail(std::move(*err));
                    return;
                }
                route r = std::get<route>(std::move(s.shared->answer));
                const auto ttl = s.shared->ttl_left ? s.shared->ttl_left : r.ttl;
                check(std::move(r), ttl);
            });
    });
}

void router::encode_answers(checked_route& route, std::string_view id) const {
    protocol::byte_buffer tail;  // the same for every endpoint: metadata, resource
    std::size_t tail_count = 0;
    for (const auto& [key, var] : opts_.metadata_variables) {
        const auto it = route.metadata.find(key);
        if (it == route.metadata.end() || !reply::valid_name(var)) continue;
        protocol::encode_set_var(tail, var_scope::txn, var, typed_value::string(it->second));
        ++tail_count;
    }
    protocol::encode_set_var(tail, var_scope::txn, contract::var::resource,
                             typed_value::string(id));
    ++tail_count;
    const auto encode_endpoint = [&](checked_endpoint& ep) {
        protocol::byte_buffer b;
        protocol::encode_set_var(b, var_scope::txn, contract::var::ip, ip_value(ep.address));
        protocol::encode_set_var(b, var_scope::txn, contract::var::port,
                                 typed_value::int64(ep.port));
        b.append(tail.view());
        ep.answer_actions = bytes_of(b);
        ep.answer_count = 2 + tail_count;
    };
    for (auto& ep : route.endpoints)
        encode_endpoint(ep);
    for (auto& p : route.paths) {
        for (auto& ep : p.endpoints)
            encode_endpoint(ep);
    }
    route.encoded_for = std::string(id);
    route.encoded = true;
}

void router::finish_resolve(const std::string& key, std::shared_ptr<const checked_route> route,
                            std::shared_ptr<const resolve_error> error,
                            std::optional<std::chrono::milliseconds> ttl) {
    auto waiters = cache_.complete(key, route, error, ttl);
    for (auto& w : waiters)
        w->complete(route, error);
}

// ---- answers -----------------------------------------------------------------------------------

void router::answer_refusal(reply& r, const decision& d, int status, std::string_view reason,
                            cache_label label) const {
    r.set_int(var_scope::txn, contract::var::status, status);
    r.set_string(var_scope::txn, contract::var::reason, reason);
    if (d.proto == app_protocol::postgres) {
        const bool role = opts_.postgres.resource_from == postgres_options::source::user;
        r.set_string(var_scope::txn, contract::var::sqlstate, postgres_sqlstate(status, role));
    }
    if (!d.id.empty()) r.set_string(var_scope::txn, contract::var::resource, d.id);
    r.set_string(var_scope::txn, contract::var::cache, to_string(label));
    set_decision_time(r, d.started_ns);
    if (log_->should_log(spdlog::level::debug)) log_refusal(d, status, reason, label);
}

bool router::must_wake(const std::shared_ptr<const checked_route>& route,
                       const std::shared_ptr<const resolve_error>& error) const noexcept {
    return !error && route && route->state != backend_state::ready && cold_->enabled();
}

void router::hold_for_cold_start(async_reply reply, const decision& d,
                                 const std::shared_ptr<const checked_route>& route,
                                 cache_label label, resolve_context ctx) {
    key_buffer key;
    (void)key.build(d.proto, d.id);
    std::unique_ptr<cold_waiter> waiter =
        std::make_unique<cold_request>(*this, std::move(reply), d, label);
    if (auto refused = cold_->wait(std::string(key.view()), std::string(d.id), std::move(ctx),
                                   route, d.started_ns, waiter)) {
        waiter->finish(nullptr, std::make_shared<const resolve_error>(std::move(*refused)), 0,
                       false);
    }
}

void router::answer(reply& r, const decision& req,
                    const std::shared_ptr<const checked_route>& route,
                    const std::shared_ptr<const resolve_error>& error, cache_label label,
                    std::optional<std::uint64_t> waited_ms, bool woken) {
    const auto proto_index = static_cast<std::size_t>(req.proto);
    if (waited_ms)
        r.set_int(var_scope::txn, contract::var::wait_ms, static_cast<std::int64_t>(*waited_ms));
    if (error) {
        decisions_err_[proto_index][static_cast<std::size_t>(error->code)].fetch_add(
            1, std::memory_order_relaxed);
        answer_refusal(r, req, http_status(error->code), error->reason, label);
        return;
    }
    const std::vector<checked_endpoint>* eps = &route->endpoints;
    if (req.proto == app_protocol::http) {
        // Longest prefix first (the resolver sorted them); the host's own endpoints otherwise.
        for (const auto& p : route->paths) {
            if (path_has_prefix(req.path, p.prefix)) {
                eps = &p.endpoints;
                break;
            }
        }
    }
    const auto refuse = [&](std::string reason) {
        decisions_err_[proto_index][static_cast<std::size_t>(error_code::unavailable)].fetch_add(
            1, std::memory_order_relaxed);
        answer_refusal(r, req, 503, reason, label);
    };
    if (route->state != backend_state::ready) {
        refuse("backend is " + std::string(to_string(route->state)) + " (cold starts are off)");
        return;
    }
    if (eps->empty()) {
        refuse("no endpoint for this path");
        return;
    }
    // Round robin over the endpoints the health checks and circuit breakers admit.
    // The rotation is per loop thread: a shared counter would be one more cache line that
    // every thread writes on every decision.
    // Cache hits are answered within the frame's dispatch: its arrival time is the time now.
    // Answers that waited (a resolve, a cold start) read the clock.
    const bool in_call =
        !waited_ms && (label == cache_label::hit || label == cache_label::negative);
    const std::uint64_t now_ms = in_call ? req.started_ns / 1'000'000 : steady_ms();
    const std::size_t n = eps->size();
    thread_local std::size_t round_robin = 0;
    const std::size_t first = n == 1 ? 0 : round_robin++ % n;
    const checked_endpoint* chosen = nullptr;
    for (std::size_t i = 0; i < n && !chosen; ++i) {
        const checked_endpoint& ep = (*eps)[(first + i) % n];
        if (!ep.health) {
            chosen = &ep;
            continue;
        }
        const auto v = health_->admit(*ep.health, now_ms);
        if (v == endpoint_health::verdict::ok || v == endpoint_health::verdict::trial) chosen = &ep;
    }
    if (!chosen) {
        no_healthy_endpoint_.fetch_add(1, std::memory_order_relaxed);
        std::string reason = "no healthy endpoint:";
        for (const auto& ep : *eps) {
            const bool open = ep.health && ep.health->circuit() != endpoint_state::breaker::closed;
            reason += " " + ep.health->name() + (open ? " (circuit open)" : " (failing checks)");
        }
        refuse(std::move(reason));
        return;
    }
    decisions_ok_[proto_index].fetch_add(1, std::memory_order_relaxed);
    // What does not change from one hit to the next was encoded once (encode_answers).
    if (route->encoded && route->encoded_for == req.id) {
        r.append_encoded(chosen->answer_actions, chosen->answer_count);
    } else {
        r.set_ip(var_scope::txn, contract::var::ip, chosen->address);
        r.set_int(var_scope::txn, contract::var::port, chosen->port);
        for (const auto& [key, var] : opts_.metadata_variables) {
            if (const auto it = route->metadata.find(key); it != route->metadata.end()) {
                r.set_string(var_scope::txn, var, it->second);
            }
        }
        r.set_string(var_scope::txn, contract::var::resource, req.id);
    }
    const decision_kind kind = woken                       ? decision_kind::cold
                               : label == cache_label::hit ? decision_kind::cached
                                                           : decision_kind::warm;
    r.append_encoded(
        label_kind_actions_[static_cast<std::size_t>(label)][static_cast<std::size_t>(kind)], 2);
    if (log_->should_log(spdlog::level::debug)) log_decision(req, *chosen, label, kind);
    // A hit answered during the frame's dispatch has no decision time worth a clock read (it
    // is under a microsecond; spoa_handler_latency_seconds has it): decision_us is only set
    // on answers that waited for something.
    if (!in_call) set_decision_time(r, req.started_ns);
    note_activity(req, *route, now_ms);
}

void router::log_decision(const decision& d, const checked_endpoint& chosen, cache_label label,
                          decision_kind kind) const {
    const std::string where = endpoint{chosen.address.to_string(), chosen.port}.to_string();
    log_event(*log_, spdlog::level::debug, "decision",
              {{"connection", d.connection},
               {"spoe_message", message_name(d.proto)},
               {"resource", d.id},
               {"cache", to_string(label)},
               {"kind", to_string(kind)},
               {"endpoint", where},
               {"latency_us", (now_ns() - d.started_ns) / 1000}});
}

void router::log_refusal(const decision& d, int status, std::string_view reason,
                         cache_label label) const {
    log_event(*log_, spdlog::level::debug, "refusal",
              {{"connection", d.connection},
               {"spoe_message", message_name(d.proto)},
               {"resource", d.id},
               {"cache", to_string(label)},
               {"status", status},
               {"reason", reason},
               {"latency_us", (now_ns() - d.started_ns) / 1000}});
}

void router::note_activity(const decision& d, const checked_route& route, std::uint64_t now) {
    resource_activity* a = route.activity.get();
    if (!a) return;
    // Written at most once per millisecond so that loop threads answering the same resource
    // do not keep taking the cache line from each other.
    a->decisions.fetch_add(1, std::memory_order_relaxed);
    if (a->last_seen_ms.load(std::memory_order_relaxed) < now)
        a->last_seen_ms.store(now, std::memory_order_relaxed);
    // Throttled idle signal: one track_activity per resource per interval, whatever the rate.
    if (a->claim_report(now, static_cast<std::uint64_t>(opts_.activity_throttle.count()))) {
        activity_reports_.fetch_add(1, std::memory_order_relaxed);
        service_->post(
            [this, id = a->id, p = a->proto](uv_loop_t*) { resolver_->track_activity(id, p); });
    }
    if (opts_.connect_events && d.proto != app_protocol::http) {
        service_->post([this, id = a->id, p = a->proto](uv_loop_t*) {
            resolve_context ctx;
            ctx.proto = p;
            resolver_->on_connect(id, ctx);
        });
    }
}

void router::report_connect_failure(std::string_view key, const ip_address& ip, std::uint16_t port,
                                    std::string_view why) {
    health_->report_failure(*health_->state_of(ip, port), why);
    // The cached endpoint may be gone (a backend back to sleep): resolve again next time.
    cache_.invalidate(key);
}

void router::render_metrics(std::string& out) const {
    namespace prom = spoa::prometheus;
    prom::header(out, "spoa_route_decisions_total", "Routing decisions, by protocol and result.",
                 "counter");
    for (app_protocol p :
         {app_protocol::http, app_protocol::postgres, app_protocol::tcp, app_protocol::tls}) {
        const auto i = static_cast<std::size_t>(p);
        const std::string proto = "protocol=\"" + std::string(to_string(p)) + "\"";
        prom::sample(out, "spoa_route_decisions_total", proto + ",result=\"ok\"",
                     decisions_ok_[i].load(std::memory_order_relaxed));
        for (std::size_t e = 0; e < 5; ++e) {
            prom::sample(
                out, "spoa_route_decisions_total",
                proto + ",result=\"" + std::string(to_string(static_cast<error_code>(e))) + "\"",
                decisions_err_[i][e].load(std::memory_order_relaxed));
        }
    }
    const auto st = cache_.stats();
    const auto counter = [&out](const char* name, const char* help, std::uint64_t v) {
        prom::header(out, name, help, "counter");
        prom::sample(out, name, "", v);
    };
    counter("spoa_route_cache_hits_total", "Route cache hits.", st.hits);
    counter("spoa_route_cache_negative_hits_total", "Cached not_found answers served.",
            st.negative_hits);
    counter("spoa_route_cache_misses_total", "Misses that called the resolver.", st.misses);
    counter("spoa_route_cache_coalesced_total",
            "Misses that waited on another miss's resolver call.", st.coalesced);
    counter("spoa_route_cache_evictions_total", "Entries evicted by the size limit.", st.evictions);
    counter("spoa_route_cache_expirations_total", "Entries dropped after their TTL.",
            st.expirations);
    counter("spoa_route_cache_invalidations_total", "Entries dropped by invalidation.",
            st.invalidations);
    prom::header(out, "spoa_route_cache_entries", "Cached routes and negative answers.", "gauge");
    prom::sample(out, "spoa_route_cache_entries", "", st.entries);
    // No hit ratio gauge: a ratio since start hides a recent fall. It is computed in PromQL
    // from the four counters above over a window (haproxy/monitoring/).
    counter("spoa_route_ssrf_refusals_total", "Resolver answers refused by the SSRF policy.",
            ssrf_refusals_.load(std::memory_order_relaxed));
    counter("spoa_route_resolve_timeouts_total", "Misses answered as timeouts (504).",
            resolve_timeouts_.load(std::memory_order_relaxed));
    counter("spoa_route_bad_requests_total", "Messages without a usable resource id (400).",
            bad_requests_.load(std::memory_order_relaxed));
    counter("spoa_route_postgres_plaintext_answers_total",
            "SSLRequests and GSSENCRequests answered 'N' (go on unencrypted).",
            plaintext_answers_.load(std::memory_order_relaxed));
    counter("spoa_route_no_healthy_endpoint_total",
            "Decisions refused: every endpoint unhealthy or open.",
            no_healthy_endpoint_.load(std::memory_order_relaxed));
    counter("spoa_activity_reports_total", "track_activity calls made (throttled per resource).",
            activity_reports_.load(std::memory_order_relaxed));
    const auto act = activity_.stats();
    prom::header(out, "spoa_activity_resources", "Resources with an activity record.", "gauge");
    prom::sample(out, "spoa_activity_resources", "", act.entries);
    counter("spoa_activity_evictions_total",
            "Activity records dropped (least recently resolved first) to stay within "
            "activity.max_entries.",
            act.evictions);
    const auto rs = resolver_->stats();
    prom::header(out, "spoa_resolver_calls_total", "Calls made to the resolver.", "counter");
    prom::sample(out, "spoa_resolver_calls_total",
                 "resolver=\"" + std::string(resolver_->name()) + "\"", rs.calls);
    prom::header(out, "spoa_resolver_errors_total", "Resolver calls that returned an error.",
                 "counter");
    prom::sample(out, "spoa_resolver_errors_total",
                 "resolver=\"" + std::string(resolver_->name()) + "\"", rs.errors);
}

}  // namespace spoa::handlers::routing
