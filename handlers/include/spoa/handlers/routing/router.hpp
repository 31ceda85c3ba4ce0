#pragma once
/// The routing handlers: for each SPOE routing message (see contract.hpp) derive the resource id,
/// look it up in the route cache, resolve misses once (single-flight) through the resolver,
/// validate the endpoints (SSRF), and answer HAProxy with the checked address and port, or with
/// the HTTP status and reason of a typed error.

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "spoa/agent/agent.hpp"
#include "spoa/handlers/routing/activity_table.hpp"
#include "spoa/handlers/routing/cold_start.hpp"
#include "spoa/handlers/routing/contract.hpp"
#include "spoa/handlers/routing/endpoint_checker.hpp"
#include "spoa/handlers/routing/endpoint_health.hpp"
#include "spoa/handlers/routing/postgres_startup.hpp"
#include "spoa/handlers/routing/resolver.hpp"
#include "spoa/handlers/routing/route_cache.hpp"
#include "spoa/handlers/routing/shared_route_tier.hpp"
#include "spoa/handlers/routing/ssrf.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spdlog {
class logger;
}

namespace spoa::handlers::routing {

class route_explainer;

/// Which part of a server-speaks-first connection names the resource (`route-tcp`).
enum class tcp_key : std::uint8_t { dst_port, dst, dst_addr, src, authority, sni };
[[nodiscard]] std::optional<tcp_key> parse_tcp_key(std::string_view s) noexcept;

/// What the agent answers to a PostgreSQL packet that comes before the StartupMessage and so
/// names no database: an SSLRequest, a GSSENCRequest or a CancelRequest.
struct postgres_policy {
    enum class action : std::uint8_t {
        plaintext,  ///< answer 'N' (txn.route.negotiation): the client goes on unencrypted
        reject,     ///< refuse the connection
        route,      ///< send the whole connection, request included, to `route`'s backend
    };
    action what = action::reject;
    std::string route;  ///< resource id, for action::route
};

struct postgres_options {
    enum class source : std::uint8_t { database, user, endpoint, sni };
    source resource_from = source::database;
    /// libpq's default (sslmode=prefer) opens with an SSLRequest, and with a GSSENCRequest
    /// when it holds Kerberos credentials: answering 'N' lets such clients be routed by
    /// database. `plaintext` is not valid for cancel_request.
    postgres_policy ssl_request{postgres_policy::action::plaintext, {}};
    postgres_policy gssenc_request{postgres_policy::action::plaintext, {}};
    postgres_policy cancel_request{postgres_policy::action::reject, {}};
};

struct router_options {
    cache_options cache;
    /// A miss not resolved (and checked) within this time is answered as a timeout (504).
    std::chrono::milliseconds resolve_timeout{800};
    postgres_options postgres;
    /// route-tcp: service name -> key; services not listed use dst_port.
    std::map<std::string, tcp_key, std::less<>> tcp_services;
    /// Resolver metadata key -> txn variable name passed back to HAProxy.
    std::map<std::string, std::string> metadata_variables;
    cold_start_options cold_start;
    health_options health;
    breaker_options breaker;
    /// resolver::track_activity is called at most once per resource per `activity_throttle`.
    std::chrono::milliseconds activity_throttle{30000};
    /// Activity records kept (one per resolved resource id); the least recently resolved is
    /// dropped beyond this.
    std::size_t activity_max_entries = 100000;
    /// Call resolver::on_connect for every PostgreSQL/TCP/TLS decision (a new connection).
    bool connect_events = false;
};

class router {
  public:
    /// `service` runs resolutions and checks; it may be shared with the resolver.
    router(std::shared_ptr<resolver> r, ssrf_policy policy, router_options opts,
           std::shared_ptr<handlers::service_loop> service, std::shared_ptr<spdlog::logger> log);
    ~router();
    router(const router&) = delete;
    router& operator=(const router&) = delete;

    /// Registers route-http, route-pg, route-tcp and route-tls, the admin route
    /// POST /invalidate?id=<id>[&protocol=<p>] and the routing metrics.
    void attach(agent& a);

    /// Drops `id` (every protocol when `p` is empty) from the cache and tells the resolver.
    std::size_t invalidate(std::string_view id, std::optional<app_protocol> p = std::nullopt);
    using invalidation_observer =
        std::function<void(std::string_view id, std::optional<app_protocol> p)>;
    /// Called (on the admin thread) after each POST /invalidate was applied here, e.g. to tell
    /// the other agents of a fleet. Not called by invalidate() itself, so that an invalidation
    /// received from elsewhere is not sent on again. Set before attach().
    void on_admin_invalidate(invalidation_observer fn) { admin_invalidated_ = std::move(fn); }

    /// The fleet's shared cache tier, read on misses and written with what the resolver
    /// answered (shared_route_tier.hpp). Set before attach(); null (the default): none.
    void share_routes(std::shared_ptr<shared_route_tier> tier) { shared_ = std::move(tier); }

    [[nodiscard]] route_cache& cache() noexcept { return cache_; }
    [[nodiscard]] const activity_table& activity() const noexcept { return activity_; }
    [[nodiscard]] endpoint_health& health() noexcept { return *health_; }
    [[nodiscard]] cold_starter& cold_starts() noexcept { return *cold_; }
    /// Reports a failed connection to ip:port (passive signal): counts for its circuit and
    /// drops the cached route of `id`, so that a backend gone back to sleep is woken again.
    void report_connect_failure(std::string_view key, const ip_address& ip, std::uint16_t port,
                                std::string_view why);
    [[nodiscard]] resolver& active_resolver() noexcept { return *resolver_; }
    [[nodiscard]] handlers::service_loop& service() noexcept { return *service_; }

    struct request;       ///< internal: one routing decision waiting for the resolver
    struct cold_request;  ///< internal: one routing decision waiting for a cold start

    /// What an answer needs to know about the request (views: valid during the answer).
    struct decision {
        app_protocol proto;
        std::string_view id;
        std::string_view path;
        std::uint64_t started_ns;
        std::uint64_t connection = 0;  ///< the agent's id of the SPOP connection, for logs
    };

  private:
    void handle_http(const message& m, reply& reply);
    void handle_postgres(const message& m, reply& reply);
    void handle_tcp(const message& m, reply& reply);
    void handle_tls(const message& m, reply& reply);
    /// Cache lookup and, on a miss, resolution: a hit is answered into `reply` during the call;
    /// a miss (or a sleeping backend) defers it and answers later. The context is only built
    /// (by `make_ctx`) when the decision has to wait, so hits allocate nothing.
    template <typename MakeContext>
    void decide(const decision& d, reply& reply, MakeContext&& make_ctx);
    void start_resolve(std::string key, std::string id, resolve_context ctx);
    void finish_resolve(const std::string& key, std::shared_ptr<const checked_route> route,
                        std::shared_ptr<const resolve_error> error,
                        std::optional<std::chrono::milliseconds> ttl);
    void render_metrics(std::string& out) const;
    /// Encodes the actions a hit on `route` (the route of resource `id`) answers with that do
    /// not change between hits.
    void encode_answers(checked_route& route, std::string_view id) const;
    void note_activity(const decision& d, const checked_route& route, std::uint64_t now_ms);

  public:
    // Used by request objects (any thread).
    /// True when the answer must wait for the route's backend to start.
    [[nodiscard]] bool must_wake(const std::shared_ptr<const checked_route>& route,
                                 const std::shared_ptr<const resolve_error>& error) const noexcept;
    /// Hands `reply` to the cold starter, which answers it once the backend is ready or the
    /// deadline passed.
    void hold_for_cold_start(async_reply reply, const decision& d,
                             const std::shared_ptr<const checked_route>& route,
                             contract::cache_label label, resolve_context ctx);
    /// Writes the variables of a decision. `waited_ms` is set for a cold start.
    void answer(reply& r, const decision& d, const std::shared_ptr<const checked_route>& route,
                const std::shared_ptr<const resolve_error>& error, contract::cache_label label,
                std::optional<std::uint64_t> waited_ms = std::nullopt, bool woken = false);
    /// The answer to an SSLRequest, GSSENCRequest or CancelRequest whose policy is not a route.
    void answer_before_startup(reply& r, postgres_startup::kind packet,
                               postgres_policy::action what, std::uint64_t started,
                               std::uint64_t conn) const;
    /// Writes a refusal: status and reason, and for PostgreSQL the SQLSTATE its client sees.
    void answer_refusal(reply& r, const decision& d, int status, std::string_view reason,
                        contract::cache_label label) const;
    /// GET /explain and GET /routes (admin thread).
    [[nodiscard]] admin_response explain(const admin_request& req) const;
    [[nodiscard]] admin_response list_routes(const admin_request& req) const;
    /// The debug line of a decision (log level debug only).
    void log_decision(const decision& d, const checked_endpoint& chosen,
                      contract::cache_label label, contract::decision_kind kind) const;
    void log_refusal(const decision& d, int status, std::string_view reason,
                     contract::cache_label label) const;

  private:
    std::shared_ptr<resolver> resolver_;
    router_options opts_;
    std::shared_ptr<spdlog::logger> log_;
    std::shared_ptr<handlers::service_loop> service_;
    std::unique_ptr<endpoint_health> health_;
    endpoint_checker checker_;
    route_cache cache_;
    std::unique_ptr<cold_starter> cold_;
    activity_table activity_;
    std::unique_ptr<route_explainer> explainer_;  ///< GET /explain (admin thread)
    invalidation_observer admin_invalidated_;     ///< set before attach(); admin thread
    std::shared_ptr<shared_route_tier> shared_;   ///< set before attach(); service loop
    std::atomic<std::uint64_t> decisions_ok_[4]{};
    std::atomic<std::uint64_t> decisions_err_[4][5]{};
    std::atomic<std::uint64_t> bad_requests_{0};
    mutable std::atomic<std::uint64_t> plaintext_answers_{0};
    std::atomic<std::uint64_t> ssrf_refusals_{0};
    std::atomic<std::uint64_t> resolve_timeouts_{0};
    std::atomic<std::uint64_t> no_healthy_endpoint_{0};
    std::atomic<std::uint64_t> activity_reports_{0};
    histogram* resolve_seconds_ = nullptr;
    /// set-var cache=<label> and kind=<kind>, encoded once: [label][kind].
    std::vector<std::uint8_t> label_kind_actions_[contract::cache_label_count]
                                                 [contract::decision_kind_count];
};

}  // namespace spoa::handlers::routing
