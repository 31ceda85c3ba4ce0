#pragma once
/// The fleet's wake coordination on Redis (README "Running several agents"):
///
/// - claim: `SET <prefix>wake:<protocol>:<id> <agent_id> NX PX <lease>`: OK = won, nil = lost,
///   any error (Redis down, slow, refusing) = unknown, and the agent wakes on its own: a Redis
///   outage may cost an extra wake, never a request.
/// - renew: the value is still ours -> `PEXPIRE` (one script, so that a lease taken over by
///   another agent after an expiry is never extended by the old holder).
/// - release: `PUBLISH <prefix>wake "1 <agent_id> <protocol> <ready|failed> <id>"`, then, if the
///   value is still ours (a script again): ready -> the value becomes `ready:<agent_id>` for one
///   more lease, so a follower's claim in that time loses and its own probe finds the backend
///   up instead of waking it again; failed -> `DEL`, and the next start may claim at once.
/// - give_up: the value is still ours -> `DEL`, nothing published.
/// - outcomes of other agents arrive on the subscription to `<prefix>wake`; a platform may
///   publish one too (origin `-`). An agent ignores its own echo and malformed messages
///   (counted).
///
/// Ownership / threads: built and destroyed on the service's thread; every wake_coordinator call
/// runs on the service loop. The outcome handler and the counters live in a state shared with
/// the subscription and the command completions, which may run until the loop ends: what the
/// handler captures must outlive the service loop. render_metrics: any thread (atomics).

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "spoa/handlers/routing/redis_client.hpp"
#include "spoa/handlers/routing/wake_coordinator.hpp"

namespace spdlog {
class logger;
}

namespace spoa::handlers::routing {

/// One message on the wake channel.
struct wake_outcome_message {
    std::string origin;  ///< agent id, or "-"
    app_protocol protocol = app_protocol::http;
    wake_coordinator::outcome what = wake_coordinator::outcome::ready;
    std::string id;  ///< the rest of the message (may hold spaces)
};
[[nodiscard]] std::string encode(const wake_outcome_message& m);
[[nodiscard]] std::optional<wake_outcome_message> parse_wake_outcome(std::string_view text);

class wake_lease final : public wake_coordinator {
  public:
    /// The lease is redis_options::wake_lease (not 0). Subscribes in on_outcome().
    wake_lease(std::shared_ptr<redis_client> redis, std::string agent_id,
               std::shared_ptr<spdlog::logger> log);
    wake_lease(const wake_lease&) = delete;
    wake_lease& operator=(const wake_lease&) = delete;

    void claim(app_protocol p, const std::string& id,
               std::function<void(claim_result)> done) override;
    void renew(app_protocol p, const std::string& id) override;
    void release(app_protocol p, const std::string& id, outcome o) override;
    void give_up(app_protocol p, const std::string& id) override;
    void on_outcome(outcome_handler fn) override;
    [[nodiscard]] std::chrono::milliseconds lease() const noexcept override;

    [[nodiscard]] const std::string& channel() const noexcept { return channel_; }
    /// Appends spoa_redis_wake_claims_total{result} and spoa_redis_wake_outcomes_total{event}.
    void render_metrics(std::string& out) const;

    struct state;  ///< internal: shared with the subscription and the completions

  private:
    [[nodiscard]] std::string key_of(app_protocol p, const std::string& id) const;

    std::shared_ptr<redis_client> redis_;
    std::string channel_;
    std::shared_ptr<state> state_;
};

}  // namespace spoa::handlers::routing
