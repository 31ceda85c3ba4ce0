#pragma once
/// Turns a resolver's route into a checked_route: every host name is resolved asynchronously
/// (uv_getaddrinfo on the service loop), every address is checked against the SSRF policy, and
/// only checked IP addresses are kept, so HAProxy never gets a name to resolve again (no DNS
/// rebinding window between the check and the connection).

#include <functional>
#include <memory>
#include <optional>

#include "spoa/handlers/routing/endpoint_health.hpp"
#include "spoa/handlers/routing/resolver.hpp"
#include "spoa/handlers/routing/route_cache.hpp"
#include "spoa/handlers/routing/ssrf.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spoa::handlers::routing {

class endpoint_checker {
  public:
    using done_fn =
        std::function<void(std::shared_ptr<checked_route>, std::optional<resolve_error>)>;

    /// With `health`, every checked endpoint carries its health/circuit state.
    endpoint_checker(handlers::service_loop& loop, ssrf_policy policy,
                     endpoint_health* health = nullptr)
        : loop_(loop), policy_(std::move(policy)), health_(health) {}

    /// Service-loop thread only. Completes `done` on the service loop: a checked route, or
    /// forbidden (an address or port the policy refuses, with the reason) or unavailable (a
    /// name that does not resolve).
    void check(route r, done_fn done);

    [[nodiscard]] const ssrf_policy& policy() const noexcept { return policy_; }

  private:
    handlers::service_loop& loop_;
    ssrf_policy policy_;
    endpoint_health* health_;
};

}  // namespace spoa::handlers::routing
