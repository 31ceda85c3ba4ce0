#pragma once
/// Routes a platform writes into the fleet's Redis, one key per resource id (README "Routes in
/// Redis"):
///
///     <key_prefix>routes:<protocol>:<id>   a string: one route as JSON (or YAML)
///
/// protocol is http, postgres, tcp or tls; id is the resource id as the router looks it up (HTTP
/// and TLS: the normalised host name, lower case, without port or final dot). The value holds
/// the fields of one route of the static file's `routes:` section, read by the same parser
/// (route_table::parse_entry): endpoints, paths, metadata, ttl_ms, timeout_ms, state, or error,
/// reason, retry_after_ms. Ids are exact: there are no wildcard keys.
///
/// Answers (resolve sends one `GET`):
/// - the key holds a valid route (or error entry): that route (or error).
/// - no such key: `not_found`, so a chain asks its next resolver.
/// - a value over max_value_bytes, one that does not parse, or a key that is not a string
///   (WRONGTYPE): `internal`, with a reason naming the key; logged, at most one line per
///   malformed_log_period (with the count of lines left out).
/// - Redis down, overloaded or refusing the command: `unavailable`; no answer within the
///   client's command_timeout: `timeout`. Never `not_found`: an outage must not make a chain fall
///   through to another source's answer for the same id.
///
/// Nothing is cached here: the router's cache holds the answers, and a platform that changes a
/// key publishes an invalidation (invalidation_message.hpp) that every agent applies to it.
///
/// Ownership / threads: shares the redis client with the service (and the fan-out). resolve: any
/// thread; the completion runs on the service loop (or on the caller's thread, `unavailable`, if
/// the loop has stopped), where the value is parsed; it owns the shared counters it updates, so
/// it may run after the resolver is gone. invalidate, stats, outcome_stats: any thread (atomics).
/// The log limiter is shared the same way and guarded by its own mutex.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "spoa/handlers/routing/redis_client.hpp"
#include "spoa/handlers/routing/resolver.hpp"

namespace spdlog {
class logger;
}

namespace spoa::handlers::routing {

/// How the resolutions ended, for tests and metrics.
struct redis_resolver_stats {
    std::uint64_t found = 0;      ///< a route (or an error entry) read from its key
    std::uint64_t missing = 0;    ///< no key: not_found
    std::uint64_t malformed = 0;  ///< too large, unparsable, or not a string: internal
    std::uint64_t failed = 0;     ///< Redis unavailable, overloaded, refusing, or too slow
};

class redis_resolver final : public resolver {
  public:
    /// Values larger than this are refused before they are parsed: parsing runs on the service
    /// loop, and a 16 KiB value (about 880 endpoints) takes about 1 ms there, 64 KiB ten times
    /// more.
    static constexpr std::size_t default_max_value_bytes = 16 * 1024;
    static constexpr std::chrono::seconds malformed_log_period{10};

    /// `redis` must not be null (std::invalid_argument); `log` may be (logs nothing).
    redis_resolver(std::shared_ptr<redis_client> redis, std::shared_ptr<spdlog::logger> log,
                   std::size_t max_value_bytes = default_max_value_bytes);

    void resolve(const std::string& id, const resolve_context& ctx, resolve_callback done) override;
    /// Nothing is cached here; counted, so that /metrics shows the channel reaches it.
    void invalidate(const std::string& id) override;
    /// calls, errors (every error answer, not_found included), invalidations.
    [[nodiscard]] resolver_stats stats() const override;
    [[nodiscard]] redis_resolver_stats outcome_stats() const;
    [[nodiscard]] std::string_view name() const noexcept override { return "redis"; }

    /// The key that holds the route of `id` for protocol `p`.
    [[nodiscard]] std::string key_of(app_protocol p, std::string_view id) const;

    struct state;  ///< internal: counters and log limiter, shared with completions in flight

  private:
    std::shared_ptr<redis_client> redis_;
    std::string key_prefix_;
    std::size_t max_value_bytes_;
    std::shared_ptr<state> state_;
};

}  // namespace spoa::handlers::routing
