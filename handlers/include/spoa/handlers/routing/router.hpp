#pragma once
/// The routing handlers: for each SPOE routing message (see contract.hpp) derive the resource id,
/// look it up in the route cache, resolve misses once (single-flight) through the resolver,
/// validate the endpoints (SSRF), and answer HAProxy with the checked address and port, or with
/// the HTTP status and reason of a typed error.

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "spoa/agent/agent.hpp"
#include "spoa/handlers/routing/endpoint_checker.hpp"
#include "spoa/handlers/routing/resolver.hpp"
#include "spoa/handlers/routing/route_cache.hpp"
#include "spoa/handlers/routing/ssrf.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spdlog {
class logger;
}

namespace spoa::routing {

/// Which part of a server-speaks-first connection names the resource (`route-tcp`).
enum class tcp_key : std::uint8_t { dst_port, dst, dst_addr, src, authority, sni };
[[nodiscard]] std::optional<tcp_key> parse_tcp_key(std::string_view s) noexcept;

struct postgres_options {
    enum class source : std::uint8_t { database, user, endpoint, sni };
    source resource_from = source::database;
    /// Resource id used for SSLRequest/GSSENCRequest connections; empty = reject them.
    std::string ssl_request_route;
    /// Resource id used for CancelRequest connections; empty = reject them.
    std::string cancel_request_route;
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
    std::size_t invalidate(std::string_view id, std::optional<protocol> p = std::nullopt);

    [[nodiscard]] route_cache& cache() noexcept { return cache_; }
    [[nodiscard]] resolver& active_resolver() noexcept { return *resolver_; }
    [[nodiscard]] handlers::service_loop& service() noexcept { return *service_; }

    struct request;  ///< internal: one routing decision waiting for the resolver

    /// What an answer needs to know about the request (views: valid during the answer).
    struct decision {
        protocol proto;
        std::string_view id;
        std::string_view path;
        std::uint64_t started_ns;
    };

  private:
    void handle_http(const message& m, async_reply reply);
    void handle_postgres(const message& m, async_reply reply);
    void handle_tcp(const message& m, async_reply reply);
    void handle_tls(const message& m, async_reply reply);
    /// Cache lookup and, on a miss, resolution; `reply` is answered now or later. The context
    /// is only built (by `make_ctx`) on a miss, so hits allocate nothing.
    template <typename MakeContext>
    void decide(const decision& d, async_reply reply, MakeContext&& make_ctx);
    void start_resolve(std::string key, std::string id, resolve_context ctx);
    void finish_resolve(const std::string& key, std::shared_ptr<const checked_route> route,
                        std::shared_ptr<const resolve_error> error,
                        std::optional<std::chrono::milliseconds> ttl);
    void render_metrics(std::string& out) const;

  public:
    // Used by request objects (any thread).
    void answer(reply& r, const decision& d, const std::shared_ptr<const checked_route>& route,
                const std::shared_ptr<const resolve_error>& error, std::string_view cache_label);
    static void answer_refusal(reply& r, std::string_view id, int status, std::string_view reason,
                               std::string_view cache_label, std::uint64_t started_ns);

  private:
    std::shared_ptr<resolver> resolver_;
    router_options opts_;
    std::shared_ptr<spdlog::logger> log_;
    std::shared_ptr<handlers::service_loop> service_;
    endpoint_checker checker_;
    route_cache cache_;
    std::atomic<std::uint64_t> round_robin_{0};
    std::atomic<std::uint64_t> decisions_ok_[4]{};
    std::atomic<std::uint64_t> decisions_err_[4][5]{};
    std::atomic<std::uint64_t> bad_requests_{0};
    std::atomic<std::uint64_t> ssrf_refusals_{0};
    std::atomic<std::uint64_t> resolve_timeouts_{0};
    histogram* resolve_seconds_ = nullptr;
};

}  // namespace spoa::routing
