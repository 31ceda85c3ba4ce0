#pragma once
/// An asynchronous Redis client (hiredis with its libuv adapter) on the routing service loop: one
/// connection for commands, one for subscriptions. Redis is a helper of the fleet, never on the
/// path of a decision: every failure here completes a command with an error, nothing waits.
///
/// Connections (each on its own, same rules):
/// - connect (numeric address or Unix socket), then `AUTH [user] password` when a password is
///   set, then `SELECT database` (command connection, database != 0). The connection is up once
///   those answered OK; connect plus handshake must finish within connect_timeout.
/// - a failed attempt, a refused AUTH, a timeout or a lost connection: the next attempt waits an
///   exponential back-off between reconnect_min and reconnect_max, with equal jitter (a random
///   delay in [b/2, b]); it starts over at reconnect_min once a connection came up.
/// - logs: one line when a connection comes up, one when it is lost, the first failed attempt,
///   then at most one "still down" line per 30 s (a retry storm writes no more).
/// - the subscription connection sends SUBSCRIBE for every registered channel each time it comes
///   up; `on_resubscribed` runs after such a SUBSCRIBE is confirmed following a loss (not the
///   first time), so the owner can resynchronise what it may have missed.
///
/// Commands: completed exactly once, on the service loop thread (also when the client stops):
/// - not connected: `unavailable` at once (no queue: a command is never sent late).
/// - no answer within command_timeout: `timeout`; the late answer is ignored.
/// - more than max_pending commands owed by Redis: `overloaded` at once.
/// - an error reply: `server`, with Redis's text.
///
/// Ownership / threads (the client is a thin handle; the state lives in detail::redis_state,
/// shared with the tasks it posts):
/// - command, subscribe: any thread; they move their arguments into a task posted to the service
///   loop, where the hiredis contexts, the pending table and the timers are touched, only there.
/// - callbacks (completions, message handlers, on_resubscribed): owned by the state, run on the
///   service loop thread; they may run after the client was destroyed (completions with
///   `unavailable`), so they must own what they use. When the client stops (its loop stops, or
///   it is destroyed) the state releases them all, so a handler may hold what holds the client.
/// - connected, stats, render_metrics: any thread (atomics).
/// - destruction: any thread (also the service loop's); it posts the close of both connections,
///   which completes what is pending with `unavailable`. If the loop stopped first, the loop's
///   at_stop hook has already closed them.
///
/// Health checks, every ping_interval while the command connection is up (a server that stops
/// answering, or a network path that dies, may leave a socket open and silent):
/// - a connection is up only once the server answered a PING (the last handshake step);
/// - the command connection: any answer proves it alive (a slow agent or server is not a dead
///   one); idle for an interval, it is sent a PING; owing answers and hearing none for
///   ping_interval + command_timeout, it is dropped and made again;
/// - a heartbeat PUBLISHed to this client's own channel `<prefix>heartbeat:<random>`, which the
///   subscription connection must deliver within ping_interval + command_timeout: no receiver
///   at the server, or no delivery in time, drops and remakes the subscription connection (and
///   `on_resubscribed` follows).
/// These commands count in the command metrics like any other.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spoa/agent/metrics.hpp"
#include "spoa/handlers/routing/redis_options.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spdlog {
class logger;
}

namespace spoa::handlers::routing {

namespace detail {
class redis_state;
}

enum class redis_error : std::uint8_t { unavailable, timeout, overloaded, server };
inline constexpr std::size_t redis_error_count = 4;
[[nodiscard]] std::string_view to_string(redis_error e) noexcept;

/// The answer to one command: an error, or the reply's value.
struct redis_result {
    std::optional<redis_error> error;
    std::string text;          ///< string or status reply; the error text for `server`
    std::int64_t integer = 0;  ///< integer reply
    bool nil = false;          ///< nil reply
};

/// What went wrong, for a log line: Redis's own text for `server`, else the error's name.
[[nodiscard]] std::string_view describe(const redis_result& r) noexcept;

enum class redis_link : std::uint8_t { command, subscriber };

struct redis_stats {
    bool command_connected = false;
    bool subscriber_connected = false;
    std::uint64_t connections = 0;  ///< connections that came up (both kinds)
    std::uint64_t reconnects = 0;   ///< attempts after the first one (both kinds)
    std::uint64_t pending = 0;      ///< commands owed by Redis now
    std::uint64_t errors[redis_error_count] = {};
    std::uint64_t messages = 0;  ///< messages received on subscribed channels
    /// Connections dropped by a health check, [command, subscriber].
    std::uint64_t health_failures[2] = {};
};

class redis_client {
  public:
    using completion = std::function<void(redis_result)>;
    using message_handler = std::function<void(std::string_view payload)>;

    /// Starts connecting at once (on `service`). `log` may be null (logs nothing).
    redis_client(redis_options opts, std::shared_ptr<handlers::service_loop> service,
                 std::shared_ptr<spdlog::logger> log);
    ~redis_client();
    redis_client(const redis_client&) = delete;
    redis_client& operator=(const redis_client&) = delete;

    /// Sends one command, binary safe (`args[0]` is the command name). See the header comment
    /// for the errors.
    void command(std::vector<std::string> args, completion done);
    /// Subscribes to `channel` (the exact name, prefix included) now and after every reconnect;
    /// `fn` runs on the service loop for each message. One handler per channel (the last wins).
    void subscribe(std::string channel, message_handler fn);
    /// Runs on the service loop after the subscriptions came back following a lost connection.
    void on_resubscribed(std::function<void()> fn);

    [[nodiscard]] bool connected(redis_link which) const noexcept;
    [[nodiscard]] redis_stats stats() const;
    [[nodiscard]] const redis_options& options() const noexcept { return opts_; }
    /// Appends the spoa_redis_* metrics in the Prometheus text format.
    void render_metrics(std::string& out) const;

  private:
    redis_options opts_;
    std::shared_ptr<handlers::service_loop> service_;
    std::shared_ptr<detail::redis_state> state_;
};

}  // namespace spoa::handlers::routing
