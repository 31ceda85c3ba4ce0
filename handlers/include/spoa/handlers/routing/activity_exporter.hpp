#pragma once
/// Activity in one place: every `redis_options::activity_interval` (0: never) the agent adds to
/// Redis what its activity table counted since the last flush, so that a platform reads one
/// request count and one last-seen time per resource for the whole fleet (scale-to-zero).
///
/// Keys (`P` = redis_options::key_prefix, `M` = `<protocol>:<id>`, protocol as to_string):
/// - `P activity:M` (one hash per resource): field `requests`, the decisions of every agent,
///   added with HINCRBY; PEXPIRE activity_key_ttl at each write.
/// - `P activity:last_seen` (one sorted set): member `M`, score the Unix time in milliseconds of
///   the resource's latest decision, the maximum over the agents (ZADD GT). Each flush that wrote
///   removes the members older than activity_key_ttl (ZREMRANGEBYSCORE) and sets PEXPIRE
///   activity_key_ttl on the key, so resources never seen again leave Redis.
///
/// A flush is one task on the service loop: it skips when the command connection is down
/// (nothing is taken from the records, they keep counting), otherwise takes what moved in each
/// record (and what an earlier flush must retry), issues all its commands at once (hiredis
/// writes them together: one pipeline) and waits for nothing.
///
/// Exactness: a request is written at most once, and exactly once while Redis is up.
/// - HINCRBY answered: written.
/// - not sent (unavailable before it left the agent, overloaded) or refused by Redis (an error
///   reply applies nothing): the delta is carried to the next flush (`retried`).
/// - timed out, or the connection lost while it was in flight: Redis may or may not have
///   applied it; it is not sent again (`uncertain`), so a count is never doubled.
/// - carried deltas are bounded (activity_max_carried resources): beyond, dropped (`dropped`).
/// - a record evicted from the activity table (more resources than activity.max_entries) takes
///   with it what it counted since its last flush; decisions made through routes still cached
///   on an evicted record are not exported either.
/// The last-seen score is idempotent (ZADD GT), so a failed ZADD of any kind is simply retried.
/// A flush is bounded: at most activity_max_records_per_flush resources, and commands for no more
/// than half the room redis_options::max_pending leaves (the rest is for the commands decisions
/// wait on). What does not fit waits for the next flush (`deferred`), which starts in the table
/// where this one stopped, so resources that keep moving never starve the others.
///
/// Times: the table keeps steady-clock milliseconds; a flush turns them into Unix time with the
/// wall clock it reads at that moment, so agents' scores are comparable as far as their clocks
/// agree.
///
/// Ownership / threads: the exporter is a handle; its state (detail below) is shared with the
/// timer and the command completions it posts, all run on the service loop thread, which alone
/// touches the carried deltas and the records' exported_* fields. start, stats, render_metrics:
/// any thread (atomics). Destruction: any thread; the timer is cancelled on the loop. The table
/// must outlive the service loop (the routing service joins the loop before it frees the router);
/// one exporter per table.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "spoa/handlers/routing/activity_table.hpp"
#include "spoa/handlers/routing/redis_client.hpp"
#include "spoa/handlers/routing/redis_options.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spdlog {
class logger;
}

namespace spoa::handlers::routing {

/// How long an activity key outlives its last write: a resource idle this long is gone from
/// Redis (a platform treats an absent resource as idle).
inline constexpr std::chrono::hours activity_key_ttl{24};
/// Resources written per flush at most (two commands each).
inline constexpr std::size_t activity_max_records_per_flush = 2000;
/// Resources whose delta waits for a retry at most (memory bound while Redis refuses writes).
inline constexpr std::size_t activity_max_carried = 100000;

/// What the exporter did since it was made. Requests are decision counts, by their fate.
struct activity_export_stats {
    std::uint64_t flushes_sent = 0;      ///< flushes that issued commands
    std::uint64_t flushes_idle = 0;      ///< nothing had moved
    std::uint64_t flushes_skipped = 0;   ///< Redis down or max_pending reached: nothing taken
    std::uint64_t records_written = 0;   ///< HINCRBY answered
    std::uint64_t records_deferred = 0;  ///< moved, left for a later flush (flush bound)
    std::uint64_t requests_written = 0;
    std::uint64_t requests_retried = 0;    ///< carried to a later flush (counted each time)
    std::uint64_t requests_uncertain = 0;  ///< timed out or lost in flight: not sent again
    std::uint64_t requests_dropped = 0;    ///< carry bound reached
    std::uint64_t requests_carried = 0;    ///< waiting for a retry now (gauge)
    std::uint64_t commands_failed[redis_error_count] = {};
};

class activity_exporter {
  public:
    activity_exporter(std::shared_ptr<redis_client> redis, const activity_table& table,
                      const redis_options& opts, std::shared_ptr<handlers::service_loop> service,
                      std::shared_ptr<spdlog::logger> log);
    ~activity_exporter();
    activity_exporter(const activity_exporter&) = delete;
    activity_exporter& operator=(const activity_exporter&) = delete;

    /// Arms the repeating flush (nothing when activity_interval is 0). Call once.
    void start();
    /// At shutdown, once no more decisions come: stops the repeating flush, flushes what moved
    /// since the last one and waits until Redis has answered it, `limit` at most (an agent that
    /// stops, e.g. in a rolling restart, loses no counts). True when Redis answered in time;
    /// false at once when Redis is not connected. Any thread but the service loop's, which
    /// must be running.
    bool flush_before_stop(std::chrono::milliseconds limit);

    [[nodiscard]] activity_export_stats stats() const noexcept;
    /// Appends the spoa_redis_activity_* metrics in the Prometheus text format.
    void render_metrics(std::string& out) const;

    struct state;  ///< internal: shared with the timer and the command completions

  private:
    std::shared_ptr<handlers::service_loop> service_;
    std::shared_ptr<state> state_;
};

}  // namespace spoa::handlers::routing
