#pragma once
/// Passive signals from HAProxy's own logs: the shipped configurations log one line per request
/// or connection with `route=<id> proto=<p> to=<ip>:<port> ts=<termination state> in=<bytes>
/// out=<bytes> dur=<ms>`. Sent to the agent over syslog/UDP, each line becomes
///   - a connect failure (ts "SC": refused, "sC": connect timeout) for the endpoint's circuit,
///     and an invalidation of the cached route (a backend gone back to sleep is woken again);
///   - a success for the endpoint otherwise;
///   - resolver::on_disconnect with the byte counts and duration (PostgreSQL/TCP/TLS).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <uv.h>

#include "spoa/agent/config.hpp"
#include "spoa/agent/ip_address.hpp"
#include "spoa/handlers/routing/resolver.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spdlog {
class logger;
}

namespace spoa::handlers::routing {

class router;

struct feedback_event {
    std::string id;
    app_protocol proto = app_protocol::http;
    std::optional<ip_address> ip;
    std::uint16_t port = 0;
    std::string termination;  ///< HAProxy's %ts, e.g. "--", "SC", "sC", "CD"
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::uint64_t duration_ms = 0;

    /// The connection to the server failed (refused or connect timeout).
    [[nodiscard]] bool connect_failed() const noexcept {
        return termination.size() >= 2 && (termination[0] == 'S' || termination[0] == 's') &&
               termination[1] == 'C';
    }
};

/// Parses one log line (syslog header allowed before the fields); nullopt when it carries no
/// routed decision (no `route=` or an empty/`-` one).
[[nodiscard]] std::optional<feedback_event> parse_feedback_line(std::string_view line);

class feedback_log {
  public:
    feedback_log(handlers::service_loop& loop, router& r, resolver& res,
                 std::shared_ptr<spdlog::logger> log);
    ~feedback_log();

    /// Service-loop thread: binds the UDP socket (numeric host:port). Throws on failure.
    void listen(const listen_address& addr);

    [[nodiscard]] std::uint64_t lines() const noexcept { return lines_.load(); }
    [[nodiscard]] std::uint64_t failures() const noexcept { return failures_.load(); }

  private:
    void on_line(std::string_view line);

    handlers::service_loop& loop_;
    router& router_;
    resolver& resolver_;
    std::shared_ptr<spdlog::logger> log_;
    uv_udp_t* udp_ = nullptr;
    std::atomic<std::uint64_t> lines_{0};
    std::atomic<std::uint64_t> failures_{0};
};

}  // namespace spoa::handlers::routing
