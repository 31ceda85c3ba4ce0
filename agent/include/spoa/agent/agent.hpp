#pragma once
/// The agent: listeners, loop threads, SPOP sessions, and the registry of message handlers.
///
/// @code
///   spoa::agent_config cfg;
///   cfg.listeners.push_back(spoa::listen_address::parse("127.0.0.1:12345"));
///   spoa::agent a(cfg);
///   a.on("check-client", [](const spoa::message& m, spoa::reply& r) {
///       r.set_int(spoa::var_scope::txn, "score", m.get_ip("ip").is_v4() ? 10 : 20);
///   });
///   a.run();  // until SIGTERM/SIGINT
/// @endcode

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "spoa/agent/admin.hpp"
#include "spoa/agent/config.hpp"
#include "spoa/agent/handler.hpp"
#include "spoa/agent/metrics.hpp"

namespace spoa {

namespace detail {
class runtime;
}

class agent {
  public:
    explicit agent(agent_config config);
    ~agent();
    agent(const agent&) = delete;
    agent& operator=(const agent&) = delete;

    /// Registers the handler of SPOE message `name` (before start()). Several messages of one
    /// NOTIFY are dispatched in order and answered by a single ACK.
    agent& on(std::string name, sync_handler handler);
    agent& on_async(std::string name, async_handler handler);
    /// Handler for messages no other handler claims (default: answered with no variable).
    agent& on_any(sync_handler handler);
    agent& on_any_async(async_handler handler);

    /// Extra admin endpoint route, e.g. ("POST", "/invalidate").
    agent& admin_route(std::string method, std::string path, admin_handler handler);
    /// A condition of readiness (GET /readyz): `not_ready` returns why the agent cannot serve
    /// yet (e.g. "remote resolver: not connected"), or nothing when ready. Called on the admin
    /// thread, concurrently with the loops: it must be thread-safe. Register before start().
    agent& readiness_check(std::function<std::optional<std::string>()> not_ready);
    /// A degraded mode GET /readyz reports without failing: `degraded` returns what works less
    /// well (e.g. "redis: unreachable, deciding locally"), or nothing. The agent stays ready
    /// (200) and the body has one "degraded: ..." line per note. Same thread rules as
    /// readiness_check.
    agent& readiness_note(std::function<std::optional<std::string>()> degraded);

    /// Called on SIGHUP (from run()'s signal thread) or reload(), e.g. to re-read a route table.
    /// Hooks run in registration order; an exception is logged and does not stop the agent.
    agent& on_reload(std::function<void()> hook);
    /// Runs the reload hooks now (thread-safe with respect to the loops; hooks run in the caller).
    void reload();

    /// The registry served on /metrics; handlers add their own metrics here.
    [[nodiscard]] metrics_registry& metrics() noexcept;
    [[nodiscard]] const agent_config& config() const noexcept;

    /// Binds every listener and starts the loop threads. Throws std::runtime_error naming the
    /// address when a bind fails.
    void start();
    /// start() if needed, then blocks until the agent has stopped (drained or forced).
    void run();
    /// Thread-safe. drain = stop accepting, answer in-flight frames (bounded by their deadline),
    /// say AGENT-DISCONNECT to every connection, then stop. Otherwise close everything now.
    void stop(bool drain = true) noexcept;
    /// Blocks until the loop threads have exited (after stop()).
    void wait();

    /// Actual listening addresses (ports resolved when 0 was asked), in config order.
    [[nodiscard]] std::vector<listen_address> bound_addresses() const;
    /// Actual admin address, if any.
    [[nodiscard]] std::optional<listen_address> admin_address() const;

  private:
    std::unique_ptr<detail::runtime> rt_;
};

}  // namespace spoa
