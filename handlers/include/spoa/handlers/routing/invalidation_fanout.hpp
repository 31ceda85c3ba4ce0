#pragma once
/// Invalidations shared by the agents of a fleet through Redis pub/sub: what one agent drops
/// from its cache (POST /invalidate, a control-plane push) it publishes on
/// `<key_prefix>invalidate` (format: invalidation_message.hpp); every agent subscribed there
/// applies what others publish, and what a platform publishes itself, to its own first tier.
///
/// Failure behaviour (Redis is never on the path of a decision):
/// - publishing while Redis is down or slow: the message is dropped and counted (`dropped`),
///   not queued: the local invalidation has happened, the other agents keep their entry until
///   its TTL or until they resynchronise (below).
/// - the subscription lost and back: messages sent meanwhile are lost to this agent, so it runs
///   `resync` (the service clears its route cache) once it is subscribed again.
/// - a malformed message: ignored and counted; its own echo: ignored and counted.
///
/// Ownership / threads: built and destroyed on the service's thread. publish: any thread (it
/// hands a copy of the message to the redis client). `apply` and `resync` run on the service
/// loop thread; they are kept in a state shared with the client's handlers, so what they capture
/// must outlive the service loop (the routing service joins the loop before it frees the
/// router). render_metrics, stats: any thread (atomics).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "spoa/handlers/routing/redis_client.hpp"
#include "spoa/handlers/routing/resolver.hpp"

namespace spdlog {
class logger;
}

namespace spoa::handlers::routing {

struct fanout_stats {
    std::uint64_t published = 0;  ///< messages Redis accepted
    std::uint64_t dropped = 0;    ///< messages not published (Redis down, slow or refusing)
    std::uint64_t applied = 0;    ///< messages of other agents (or the platform) applied
    std::uint64_t own = 0;        ///< this agent's own echoes, ignored
    std::uint64_t malformed = 0;
    std::uint64_t resyncs = 0;  ///< cache clears after the subscription came back
};

class invalidation_fanout {
  public:
    using apply_fn = std::function<void(const std::string& id, std::optional<app_protocol> p)>;

    /// Subscribes at once. `agent_id` must be valid_agent_id(). `from_platform`, if set, also
    /// runs (before `apply`) for the messages a platform published itself (origin `-`): what it
    /// changed was not changed through an agent, so e.g. the shared cache entry is still there.
    invalidation_fanout(std::shared_ptr<redis_client> redis, std::string agent_id, apply_fn apply,
                        std::function<void()> resync, std::shared_ptr<spdlog::logger> log,
                        apply_fn from_platform = {});
    invalidation_fanout(const invalidation_fanout&) = delete;
    invalidation_fanout& operator=(const invalidation_fanout&) = delete;

    /// Tells the other agents to drop `id` (every protocol when `p` is empty).
    void publish(std::string_view id, std::optional<app_protocol> p);

    [[nodiscard]] const std::string& agent_id() const noexcept;
    [[nodiscard]] const std::string& channel() const noexcept { return channel_; }
    [[nodiscard]] fanout_stats stats() const noexcept;
    /// Appends spoa_redis_invalidations_total{event} and spoa_redis_agent_info.
    void render_metrics(std::string& out) const;

    struct state;  ///< internal: shared with the subscription handler

  private:
    std::shared_ptr<redis_client> redis_;
    std::string channel_;
    std::shared_ptr<state> state_;
};

}  // namespace spoa::handlers::routing
