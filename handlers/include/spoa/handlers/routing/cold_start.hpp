#pragma once
/// Cold starts: a backend that sleeps is woken on first use, and the routing decision is held
/// until it is ready (the control plane says so and an active probe connects) or a deadline
/// passes, so the client sees a slow first response instead of an error.
///
/// One start per resource at a time, whatever the number of waiting requests and threads; every
/// waiter attaches to the same pending start. Waiters are bounded per resource and globally
/// (beyond: an immediate 503). A failed wake is remembered until its retry hint (or a default),
/// so a broken backend is not hammered.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "spoa/agent/metrics.hpp"
#include "spoa/handlers/http_client.hpp"
#include "spoa/handlers/routing/endpoint_checker.hpp"
#include "spoa/handlers/routing/resolver.hpp"
#include "spoa/handlers/routing/route_cache.hpp"
#include "spoa/handlers/routing/wake_coordinator.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spdlog {
class logger;
}

namespace spoa::handlers::routing {

struct cold_start_options {
    bool enabled = false;
    enum class waker_kind : std::uint8_t { resolver, http };
    waker_kind waker = waker_kind::resolver;
    /// HTTP waker: `{id}` and `{protocol}` in the URL and body are replaced (URL-encoded in
    /// the URL). Statuses in `http_ok` are success; 409 ("already starting") is one by default.
    handlers::http_request http;
    std::vector<long> http_ok{200, 201, 202, 204, 409};

    /// Longest wait for a start, from the wake.
    std::chrono::milliseconds timeout{10000};
    /// HAProxy's `timeout processing` and the margin to answer before it: a request waits at
    /// most min(timeout, processing_timeout - margin) and is then answered 504.
    std::chrono::milliseconds processing_timeout{5000};
    std::chrono::milliseconds margin{300};
    std::size_t max_waiters_per_resource = 10000;
    std::size_t max_waiters = 50000;
    /// Readiness polling: the delay starts here and grows by half each time up to the cap.
    std::chrono::milliseconds poll_initial{2};
    std::chrono::milliseconds poll_max{25};
    /// Readiness probe: TCP connect, or HTTP GET `probe_path` expecting `probe_expect`.
    bool probe_http = false;
    std::string probe_path = "/";
    std::vector<long> probe_expect{200};
    std::chrono::milliseconds probe_timeout{500};
    /// A failed wake is remembered this long (unless the resolver gave a retry hint).
    std::chrono::milliseconds failure_ttl{2000};
};

/// How a cold start ended (label `outcome` of spoa_cold_starts_total).
enum class cold_start_outcome : std::uint8_t {
    ready,         ///< woken, then ready
    wake_failed,   ///< the wake call failed
    timeout,       ///< not ready within the start timeout
    start_failed,  ///< the control plane said the start failed, or the route went away
    busy,          ///< refused: too many requests waiting
    already_up     ///< no wake needed: the backend answered the first probe
};
inline constexpr std::size_t cold_start_outcome_count = 6;
[[nodiscard]] std::string_view to_string(cold_start_outcome o) noexcept;

/// A request held during a cold start.
///
/// Ownership: cold_starter::wait() takes it (under the starter's lock) unless it refuses; from
/// then on the service loop owns it and finishes and destroys it (ready, failed, or its own
/// deadline), possibly before wait() returns. The caller puts everything finish() needs into it
/// beforehand and never touches it after a successful wait(); on a refusal it is still the
/// caller's, untouched.
class cold_waiter {
  public:
    virtual ~cold_waiter() = default;
    /// Exactly one of route / error; `waited_ms` since the request started; `woken` is false
    /// when the backend turned out to be up already (no wake was needed).
    virtual void finish(const std::shared_ptr<const checked_route>& route,
                        const std::shared_ptr<const resolve_error>& error, std::uint64_t waited_ms,
                        bool woken) = 0;
};

class cold_starter {
  public:
    cold_starter(handlers::service_loop& loop, resolver& r, endpoint_checker& checker,
                 route_cache& cache, cold_start_options opts, std::shared_ptr<spdlog::logger> log);
    ~cold_starter();

    [[nodiscard]] bool enabled() const noexcept { return opts_.enabled; }
    [[nodiscard]] const cold_start_options& options() const noexcept { return opts_; }

    /// Any thread. Holds `w` until `id` is ready. Returns the error to answer at once instead
    /// (too many waiters, a recent failed wake); `w` is untouched then.
    [[nodiscard]] std::optional<resolve_error> wait(const std::string& key, const std::string& id,
                                                    const resolve_context& ctx,
                                                    std::shared_ptr<const checked_route> cold_route,
                                                    std::uint64_t started_ns,
                                                    std::unique_ptr<cold_waiter>& w);

    /// A fleet: each wake is claimed through `c` first; an agent that loses the claim follows
    /// the winner's outcome and its own readiness polling, and claims again (taking over) when
    /// the winner's lease ran out. Set once, before the agent runs.
    void coordinate_wakes(std::shared_ptr<wake_coordinator> c);

    void register_metrics(metrics_registry& m);
    [[nodiscard]] std::size_t waiting() const noexcept { return waiting_.load(); }

    struct pending;

  private:
    void begin(const std::shared_ptr<pending>& p);
    void wake(const std::shared_ptr<pending>& p);
    void claim(const std::shared_ptr<pending>& p);
    void follow(const std::shared_ptr<pending>& p);
    void send_wake(const std::shared_ptr<pending>& p);
    void keep_lease(const std::shared_ptr<pending>& p);
    void release_lease(const pending& p, wake_coordinator::outcome o);
    void other_agent_outcome(app_protocol proto, std::string_view id, wake_coordinator::outcome o);
    void poll(const std::shared_ptr<pending>& p);
    void probe(const std::shared_ptr<pending>& p);
    void schedule_poll(const std::shared_ptr<pending>& p);
    void ready(const std::shared_ptr<pending>& p);
    void fail(const std::shared_ptr<pending>& p, resolve_error err, cold_start_outcome outcome);
    void count(cold_start_outcome o) noexcept {
        outcomes_[static_cast<std::size_t>(o)].fetch_add(1, std::memory_order_relaxed);
    }
    void sweep();
    void schedule_sweep();
    /// Under mutex_: makes room in failed_.
    void forget_failures(std::uint64_t now);

    handlers::service_loop& loop_;
    resolver& resolver_;
    endpoint_checker& checker_;
    route_cache& cache_;
    cold_start_options opts_;
    std::shared_ptr<spdlog::logger> log_;
    std::unique_ptr<handlers::http_client> http_;    ///< created on the loop thread
    std::shared_ptr<wake_coordinator> coordinator_;  ///< a fleet's; set before the agent runs

    /// Guards pending_, failed_ and every pending's waiters; wait() runs on loop threads, the
    /// rest of the starter on the service loop.
    std::mutex mutex_;
    std::map<std::string, std::shared_ptr<pending>> pending_;                ///< by resource key
    std::map<std::string, std::pair<std::uint64_t, resolve_error>> failed_;  ///< until, error
    std::atomic<std::size_t> waiting_{0};
    bool sweeping_ = false;  ///< service loop only
    std::atomic<bool> stopping_{false};

    histogram* wake_seconds_ = nullptr;
    std::atomic<std::uint64_t> outcomes_[cold_start_outcome_count]{};
    std::atomic<std::uint64_t> wakes_{0};
    std::atomic<std::uint64_t> waiter_timeouts_{0};
};

}  // namespace spoa::handlers::routing
