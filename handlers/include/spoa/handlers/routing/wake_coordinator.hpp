#pragma once
/// Who wakes a sleeping resource when several agents need it at the same time (README "Running
/// several agents"). The cold starter asks before each wake call: the agent that wins the claim
/// wakes and later announces how the start ended; the others follow that announcement (and
/// their own readiness polling, in case they miss it) instead of waking again. A lone agent has
/// no coordinator and always wakes.
///
/// Threads: every call (but on_outcome) and every callback runs on the routing service loop.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "spoa/handlers/routing/resolver.hpp"

namespace spoa::handlers::routing {

class wake_coordinator {
  public:
    enum class claim_result : std::uint8_t {
        won,     ///< this agent wakes the resource and must release() the claim
        lost,    ///< another agent holds it: follow its outcome
        unknown  ///< the coordination failed (e.g. Redis down): wake locally, release nothing
    };
    enum class outcome : std::uint8_t { ready, failed };
    using outcome_handler = std::function<void(app_protocol, std::string_view id, outcome)>;

    virtual ~wake_coordinator() = default;

    /// Tries to become the one agent that wakes `id`; `done` runs exactly once.
    virtual void claim(app_protocol p, const std::string& id,
                       std::function<void(claim_result)> done) = 0;
    /// Keeps a won claim alive while the start goes on (call at least every lease() / 2).
    virtual void renew(app_protocol p, const std::string& id) = 0;
    /// Ends a won claim and announces its outcome to the other agents.
    virtual void release(app_protocol p, const std::string& id, outcome o) = 0;
    /// Ends a won claim that is not needed any more (the start ended while the claim was in
    /// flight), announcing nothing.
    virtual void give_up(app_protocol p, const std::string& id) = 0;
    /// Called for every outcome another agent announces. Set once, before any claim, from the
    /// thread that builds the service (before the agent runs).
    virtual void on_outcome(outcome_handler fn) = 0;
    /// How long a claim lives without renewal: a holder that died is replaced after this.
    [[nodiscard]] virtual std::chrono::milliseconds lease() const noexcept = 0;
};

}  // namespace spoa::handlers::routing
