#pragma once
// GET /explain: what the router would decide for one resource id, and why, as JSON: the cache
// entry, what the resolver answers now, the SSRF verdict of every address, health and circuit
// per endpoint, the cold-start state, and the variables HAProxy would receive.
//
// Without side effects on routing: the cache is read without counting a hit, endpoint health
// is read without tracking new endpoints, nothing is woken, and the fresh resolver answer is
// neither cached nor counted as a decision. (A remote resolver does count the call.)

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "spoa/handlers/routing/endpoint_checker.hpp"
#include "spoa/handlers/routing/endpoint_health.hpp"
#include "spoa/handlers/routing/resolver.hpp"
#include "spoa/handlers/routing/route_cache.hpp"
#include "spoa/handlers/routing/router.hpp"
#include "spoa/handlers/routing/ssrf.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spoa::handlers::routing {

/// Threads: explain() runs on the admin thread and blocks it (at most the resolve timeout plus
/// name lookups); the resolver call and the SSRF check run on the service loop, whose results
/// come back through shared state that outlives a caller that stopped waiting.
class route_explainer {
  public:
    route_explainer(resolver& r, handlers::service_loop& loop, const route_cache& cache,
                    const endpoint_health& health, ssrf_policy policy, const router_options& opts,
                    bool cold_starts);

    /// The JSON document, or throws std::invalid_argument for an id that names nothing.
    [[nodiscard]] std::string explain(app_protocol proto, std::string_view raw_id,
                                      std::string_view path) const;

  private:
    resolver& resolver_;
    handlers::service_loop& loop_;
    const route_cache& cache_;
    const endpoint_health& health_;
    const ssrf_policy policy_;
    /// Its own checker, without health tracking: the same verdict the router's would give.
    /// Shared with callbacks that may run after explain() returned.
    std::shared_ptr<endpoint_checker> checker_;
    const router_options& opts_;
    const bool cold_starts_;
};

}  // namespace spoa::handlers::routing
