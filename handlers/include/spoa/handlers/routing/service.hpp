#pragma once
/// The routing agent as one object: what `spoa-agent --config` runs, usable by any program that
/// links spoa::handlers (with its own resolver if it likes, see handlers/examples/).

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "spoa/agent/agent.hpp"
#include "spoa/handlers/routing/resolver.hpp"
#include "spoa/handlers/routing/routing_config.hpp"

namespace spdlog {
class logger;
}

namespace spoa::handlers {
class service_loop;
}

namespace spoa::handlers::routing {

class activity_exporter;
class feedback_log;
class invalidation_fanout;
class redis_client;
class remote_resolver;
class router;
class shared_route_tier;
class static_resolver;
class wake_lease;

/// Wires, in the one order that is safe to build and to tear down: a service loop (resolver
/// calls, checks, timers, cold starts), the resolver (the one the configuration names, or the
/// caller's), the router with its cache, cold starts and health checks, attached to the agent
/// (the route-* messages, /invalidate, /resources, metrics), the listener of HAProxy's log lines
/// (`passive`), a SIGHUP reload of the static route file, and with a `redis:` section the
/// fleet's shared invalidations (invalidation_fanout.hpp).
///
/// Lifetime: build it after the agent and destroy it before (declare it after the agent): the
/// destructor joins the service loop first (its tasks use the router and the agent's metrics),
/// then frees the listener, the router and the resolvers. The handlers it registered point into
/// it, so destroy it only once agent::run() has returned, or if the agent never ran.
/// Threads: built and destroyed on one thread, the one that runs the agent.
class service {
  public:
    /// The resolver `cfg` names: `static` (the routes of cfg.path), `remote` or `chain`.
    /// Throws std::runtime_error on a configuration it cannot start (e.g. passive.listen that
    /// cannot bind).
    service(const routing_config& cfg, agent& a, std::shared_ptr<spdlog::logger> logger);
    /// With the caller's own resolver: cfg.resolver, cfg.remote and the file's routes are not
    /// used, and there is no reload hook (the caller's resolver owns its data).
    service(std::shared_ptr<resolver> own, const routing_config& cfg, agent& a,
            std::shared_ptr<spdlog::logger> logger);
    ~service();
    service(const service&) = delete;
    service& operator=(const service&) = delete;

    [[nodiscard]] routing::router& decisions() noexcept { return *router_; }
    [[nodiscard]] handlers::service_loop& loop() noexcept { return *loop_; }

  private:
    void start(std::shared_ptr<resolver> active, const routing_config& cfg, agent& a);
    void add_reload(const std::string& path, agent& a);
    void start_fleet(const redis_options& opts, agent& a);
    /// An invalidation made here (POST /invalidate, a control-plane push) for the whole fleet:
    /// the shared cache entry dropped, then the other agents told. Service loop or admin thread.
    void share_invalidation(std::string_view id, std::optional<app_protocol> p);

    std::shared_ptr<spdlog::logger> logger_;
    std::shared_ptr<handlers::service_loop> loop_;
    std::shared_ptr<static_resolver> static_routes_;  ///< the file's routes, if used
    std::shared_ptr<remote_resolver> remote_;         ///< the control plane, if used
    std::unique_ptr<routing::router> router_;
    std::unique_ptr<feedback_log> feedback_;
    /// The fleet's Redis, if configured: made first, as the `redis` resolver uses it too.
    std::shared_ptr<redis_client> redis_;
    bool routes_in_redis_ = false;  ///< the `redis` resolver is used (readiness needs Redis)
    std::shared_ptr<invalidation_fanout> fanout_;  ///< invalidations shared through it
    std::shared_ptr<wake_lease> wakes_;            ///< one wake per resource across the fleet
    std::shared_ptr<shared_route_tier> shared_;    ///< the route cache's second tier
    std::shared_ptr<activity_exporter> activity_;  ///< activity counts written to Redis
};

/// Loads and validates a routing file as the service would (throws std::runtime_error
/// "<file>:<line>: <problem>"); returns the number of routes in it.
[[nodiscard]] std::size_t check_routing_file(const std::string& path);

}  // namespace spoa::handlers::routing
