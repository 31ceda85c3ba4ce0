#pragma once
/// Health of backend endpoints: active checks (TCP connect or HTTP GET) for endpoints in recent
/// use, with interval, timeout, rise and fall; and a circuit breaker per endpoint
///   closed -> open after N consecutive failures (active or passive)
///   open -> half-open after a cool-down, letting one trial through
///   half-open -> closed on success, open again on failure.
/// The routing hot path only reads atomics of a state object it already holds (no lookup).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "spoa/agent/ip_address.hpp"
#include "spoa/agent/metrics.hpp"
#include "spoa/handlers/http_client.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spdlog {
class logger;
}

namespace spoa::handlers::routing {

struct health_options {
    bool enabled = false;  ///< active checks
    enum class check_kind : std::uint8_t { tcp, http };
    check_kind kind = check_kind::tcp;
    std::string http_path = "/";
    std::vector<long> http_expect{200};  ///< accepted statuses; empty = any 2xx/3xx
    std::chrono::milliseconds interval{2000};
    std::chrono::milliseconds timeout{1000};
    unsigned rise = 2;  ///< consecutive successes to become healthy again
    unsigned fall = 3;  ///< consecutive failures to become unhealthy
    /// Only endpoints routed to within this window are checked.
    std::chrono::milliseconds recent_use{60000};
};

struct breaker_options {
    bool enabled = true;
    unsigned failures = 5;  ///< consecutive failures that open the circuit
    std::chrono::milliseconds cooldown{5000};
};

/// Shared state of one endpoint (ip:port). Written by checks and reports, read by routing.
///
/// Ownership: shared (shared_ptr) by endpoint_health's table, the cached routes whose
/// endpoints it describes, and checks in progress; it lives while any of them holds it.
/// Threads: the atomics are read and written by any thread (loop threads admit and report,
/// the service loop checks); the plain counters below are the service loop's alone.
class endpoint_state {
  public:
    enum class breaker : std::uint8_t { closed, open, half_open };

    endpoint_state(ip_address ip, std::uint16_t port) : ip_(ip), port_(port) {}

    [[nodiscard]] const ip_address& ip() const noexcept { return ip_; }
    [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
    [[nodiscard]] std::string name() const;
    [[nodiscard]] bool healthy() const noexcept { return healthy_.load(std::memory_order_relaxed); }
    [[nodiscard]] breaker circuit() const noexcept {
        return circuit_.load(std::memory_order_acquire);
    }

    // Fields below are managed by endpoint_health.
    std::atomic<bool> healthy_{true};
    std::atomic<breaker> circuit_{breaker::closed};
    std::atomic<std::uint64_t> last_used_ms_{0};
    std::atomic<std::uint64_t> opened_at_ms_{0};
    std::atomic<bool> trial_taken_{false};
    std::atomic<std::uint32_t> breaker_failures_{0};
    std::uint32_t check_successes_ = 0;  ///< service loop only
    std::uint32_t check_failures_ = 0;   ///< service loop only
    bool checking_ = false;              ///< service loop only

  private:
    ip_address ip_;
    std::uint16_t port_;
};

/// "closed", "open", "half_open": in logs, metric labels and /explain alike.
[[nodiscard]] std::string_view to_string(endpoint_state::breaker b) noexcept;

class endpoint_health {
  public:
    endpoint_health(handlers::service_loop& loop, health_options health, breaker_options breaker,
                    std::shared_ptr<spdlog::logger> log);
    ~endpoint_health();

    /// The state object of ip:port (created on first use). Thread-safe.
    [[nodiscard]] std::shared_ptr<endpoint_state> state_of(const ip_address& ip,
                                                           std::uint16_t port);
    /// The state of ip:port if tracked, else null; creates nothing (for /explain).
    [[nodiscard]] std::shared_ptr<endpoint_state> find(const ip_address& ip,
                                                       std::uint16_t port) const;

    enum class verdict : std::uint8_t { ok, trial, unhealthy, open };
    /// May a request be sent there now? Marks the endpoint as used. `trial` means the circuit
    /// was half-open and this request is its one trial. Any thread, no lock.
    /// `now_ms` is the caller's steady_clock time in milliseconds (a decision already has it:
    /// no clock read here).
    [[nodiscard]] verdict admit(endpoint_state& s, std::uint64_t now_ms) noexcept;

    /// Passive or active outcome of a connection to the endpoint. Any thread.
    void report_success(endpoint_state& s) noexcept;
    void report_failure(endpoint_state& s, std::string_view why) noexcept;

    /// Endpoints with a state object in the table (metrics, tests). Thread-safe.
    [[nodiscard]] std::size_t tracked() const;

    /// Starts the periodic active checks (service-loop thread).
    void start();
    void register_metrics(metrics_registry& m);

    [[nodiscard]] const health_options& health() const noexcept { return health_; }
    [[nodiscard]] const breaker_options& breaker() const noexcept { return breaker_; }

  private:
    void schedule_checks();
    void run_checks();
    void check_one(const std::shared_ptr<endpoint_state>& s);
    void check_result(endpoint_state& s, bool ok, const std::string& why);
    void transition(endpoint_state& s, endpoint_state::breaker to, std::string_view why) noexcept;

    handlers::service_loop& loop_;
    health_options health_;
    breaker_options breaker_;
    std::shared_ptr<spdlog::logger> log_;
    std::unique_ptr<handlers::http_client> http_;  ///< created on the loop thread by start()
    /// Under mutex_: drops states nobody uses; the next prune waits for twice what remains.
    void prune_unused();
    static constexpr std::size_t min_prune_at = 1024;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::shared_ptr<endpoint_state>> states_;
    std::size_t prune_at_ = min_prune_at;          ///< guarded by mutex_
    std::atomic<std::uint64_t> transitions_[3]{};  ///< to closed, open, half-open
    std::atomic<std::uint64_t> checks_ok_{0};
    std::atomic<std::uint64_t> checks_failed_{0};
    std::atomic<std::uint64_t> rejected_open_{0};
    std::atomic<std::uint64_t> rejected_unhealthy_{0};
    std::atomic<bool> stopping_{false};
};

}  // namespace spoa::handlers::routing
