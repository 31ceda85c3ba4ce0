#pragma once
/// The second tier of the route cache, shared by the agents of a fleet in Redis (README "Running
/// several agents"). The in-process route_cache stays the first tier: hits never come here. On a
/// miss the router reads `<key_prefix>cache:<protocol>:<id>` before calling its resolver, and
/// writes what the resolver answered with its TTL (SET ... PX): ready routes for the route TTL,
/// not_found for the negative TTL. The value is the resolver's answer (shared_route_value.hpp),
/// so every agent runs it through its own endpoint checker (SSRF policy) as if it had resolved
/// it itself.
///
/// Coordinated misses (redis.coordinate_resolves): the first agent to miss takes
/// `SET <key_prefix>resolve:<protocol>:<id> <agent_id> NX PX <resolve_lease>`, resolves, writes
/// the entry, releases the lease and publishes `1 <agent_id> <protocol> <id>` (the format of
/// invalidation_message.hpp) on `<key_prefix>resolved`. The others wait: the message (or a poll
/// of the entry every `poll_interval`, in case the message is lost) ends the wait with the
/// entry; the leader sharing nothing, a Redis failure or the end of the wait budget send them
/// to their own resolver.
///
/// Failures: Redis down, slow or refusing costs a miss at most one command_timeout (the GET,
/// PTTL and SET NX of a miss are sent together), and the agent resolves on its own, as without
/// Redis. A value that does not decode is a miss (counted, logged at most every 10 s).
///
/// Ownership / threads: the tier is built (before router::attach) and destroyed on the
/// service's thread. begin_miss and resolved: the service loop thread only (they keep the
/// waiting followers, their timers and the subscription handler's view of them in `state`,
/// which the Redis completions share, so a completion after the tier is gone finds it alive).
/// lookup, store, invalidate: any thread (they hand copies to redis_client::command); their
/// callbacks run on the service loop. render_metrics, stats: any thread (atomics).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "spoa/handlers/routing/redis_client.hpp"
#include "spoa/handlers/routing/resolver.hpp"
#include "spoa/handlers/routing/route_cache.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spdlog {
class logger;
}

namespace spoa::handlers::routing {

/// What a follower's wait ended with (metric label `outcome`).
enum class follow_outcome : std::uint8_t {
    shared,     ///< the leader's answer, read from the shared tier
    no_share,   ///< the leader announced an answer it does not share: resolve here
    deadline,   ///< the wait budget passed: resolve here
    error,      ///< Redis failed while waiting: resolve here
    wait_limit  ///< too many waits already: resolve here at once
};
inline constexpr std::size_t follow_outcome_count = 5;
[[nodiscard]] std::string_view to_string(follow_outcome o) noexcept;

struct shared_tier_stats {
    std::uint64_t hits = 0;           ///< lookups that found a valid entry
    std::uint64_t misses = 0;         ///< lookups that found none
    std::uint64_t bad_values = 0;     ///< entries that did not decode (counted as misses too)
    std::uint64_t errors = 0;         ///< commands Redis did not answer well (any operation)
    std::uint64_t stores = 0;         ///< entries written
    std::uint64_t invalidations = 0;  ///< DEL commands sent by invalidate()
    std::uint64_t leases_taken = 0;   ///< coordinated misses this agent resolved for the fleet
    std::uint64_t leases_held = 0;    ///< coordinated misses another agent was resolving
    std::uint64_t follows[follow_outcome_count] = {};
    std::uint64_t waiting = 0;  ///< followers waiting now
};

/// The TTL to share `answer` with: the route's own TTL or `cache.ttl` for a ready route, the
/// retry hint or `cache.negative_ttl` for not_found; 0 (not shared) for anything else: other
/// errors are not cached at all, and a backend that is not ready changes state within seconds
/// (the cold starter follows it).
[[nodiscard]] std::chrono::milliseconds shared_ttl(const resolve_result& answer,
                                                   const cache_options& cache) noexcept;

class shared_route_tier {
  public:
    struct options {
        /// A follower re-reads the entry this often while it waits (the message may be lost).
        std::chrono::milliseconds poll_interval{50};
        /// Followers waiting at once (one per key being resolved elsewhere); beyond it a miss
        /// resolves on its own.
        std::size_t max_waits = 10000;
    };

    /// Subscribes to `<key_prefix>resolved` when redis.coordinate_resolves is set. `agent_id`
    /// must be valid_agent_id() (the lease's value). `log` may be null.
    shared_route_tier(std::shared_ptr<redis_client> redis, std::string agent_id,
                      std::shared_ptr<handlers::service_loop> service,
                      std::shared_ptr<spdlog::logger> log, options opts);
    shared_route_tier(std::shared_ptr<redis_client> redis, std::string agent_id,
                      std::shared_ptr<handlers::service_loop> service,
                      std::shared_ptr<spdlog::logger> log)
        : shared_route_tier(std::move(redis), std::move(agent_id), std::move(service),
                            std::move(log), options{}) {}
    ~shared_route_tier();
    shared_route_tier(const shared_route_tier&) = delete;
    shared_route_tier& operator=(const shared_route_tier&) = delete;

    /// A shared entry: the resolver's answer and what is left of its TTL (nullopt: the key has
    /// no expiry, e.g. written by hand; the reader uses its own TTL).
    struct entry {
        resolve_result answer;
        std::optional<std::chrono::milliseconds> ttl_left;
    };
    enum class lookup_status : std::uint8_t { hit, miss, error };
    struct lookup_result {
        lookup_status status = lookup_status::miss;
        std::optional<entry> found;  ///< hit
    };

    /// GET and PTTL of the entry; `done` runs once, on the service loop.
    void lookup(app_protocol p, std::string_view id, std::function<void(lookup_result)> done);
    /// SET the entry PX `ttl` (nothing when ttl <= 0). Fire and forget.
    void store(app_protocol p, std::string_view id, const resolve_result& answer,
               std::chrono::milliseconds ttl);
    /// DEL the entry of `id` for `p`, or for every protocol (HTTP and TLS ids normalised as for
    /// POST /invalidate). Called by the agent that originates an invalidation, BEFORE it
    /// publishes it on the same client: Redis runs both in order, so an agent that applies the
    /// message cannot read the old route back.
    void invalidate(std::string_view id, std::optional<app_protocol> p);

    /// What a miss starts with (service loop only): the shared entry if there is one; else the
    /// go-ahead to resolve, as the fleet's leader for this key when `leader` (then resolved()
    /// must follow). A follower's wait ends within `wait_budget`.
    struct miss_start {
        std::optional<entry> shared;
        bool leader = false;
    };
    void begin_miss(app_protocol p, std::string id, std::chrono::milliseconds wait_budget,
                    std::function<void(miss_start)> done);
    /// After the resolver answered (service loop only): stores the answer when `ttl` > 0; as
    /// leader, releases the lease and tells the followers. `answer` null: the leader gave up
    /// (its own deadline passed), the followers are told to resolve on their own.
    void resolved(app_protocol p, std::string_view id, const resolve_result* answer,
                  std::chrono::milliseconds ttl, bool leader);

    [[nodiscard]] bool coordinated() const noexcept;
    [[nodiscard]] shared_tier_stats stats() const noexcept;
    /// Appends the spoa_redis_shared_cache_* metrics.
    void render_metrics(std::string& out) const;

    struct state;  ///< internal: shared with Redis completions, timers and the subscription

  private:
    std::shared_ptr<redis_client> redis_;
    std::shared_ptr<state> state_;
};

}  // namespace spoa::handlers::routing
