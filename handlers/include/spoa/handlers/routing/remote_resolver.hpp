#pragma once
/// A resolver that asks a control plane (any language) over msgpack-RPC, on TCP or a Unix socket.
/// The full protocol, with examples, is in handlers/control_plane/PROTOCOL.md; the reference
/// server is handlers/control_plane/spoa_control_plane.py.
///
/// Wire format (msgpack-RPC): request `[0, msgid, method, params]`, response
/// `[1, msgid, error, result]`, notification `[2, method, params]`. One connection, owned by the
/// service loop; requests are multiplexed by msgid and answers may come back in any order.
///
/// Methods the agent calls (requests, one answer each):
/// - `resolve` params `[{id, protocol, path, source, destination, destination_port, sni, service,
///   attributes}]` (source/destination: IP text or nil; attributes: map of strings).
///   Result: `{endpoints: ["host:port", ...], paths: {"/prefix": ["host:port", ...]},
///   metadata: {k: v}, ttl_ms, timeout_ms, state: "ready"|"asleep"|"starting"|"failed"}`
///   (every key optional, but a `ready` route needs endpoints or paths).
///   Error: `{code: "not_found"|"forbidden"|"unavailable"|"timeout"|"internal", reason,
///   retry_after_ms}`; a plain string error is taken as `internal` with that reason.
/// - `wake` params `[{id, protocol}]`: result nil (the backend is starting or already up) or an
///   error as above.
///
/// Notifications the agent sends (no answer expected; dropped while disconnected):
/// - `activity` `[{id, protocol}]`, `connect` (the resolve map), `disconnect`
///   `[{id, bytes_in, bytes_out, duration_ms}]`.
///
/// Notifications the control plane may push:
/// - `invalidate` `[id]` or `[id, protocol]`: forwarded to the invalidation handler (the router
///   drops its cached routes). Unknown notification methods are ignored (forward compatible).
///
/// Addresses (remote_resolver_options::addresses, one or more, in the configured order):
/// - a host name is looked up (host_lookup, by default getaddrinfo on libuv's thread pool) at
///   every attempt on it, never cached, and each address it gives is tried in turn; a lookup
///   not answered within the connect timeout fails that entry (a lookup still running is
///   reused by the next attempt on that name, never started twice).
/// - a round tries the entries in order; a refused, timed-out or failed attempt moves on to the
///   next at once. Only when every entry of the round failed do calls fail (`unavailable`), and
///   the next round, from the first entry, waits for the back-off (below).
/// - a lost connection: when it had worked (an answer, or up for 1 s) the back-off starts over
///   and a new round begins at once with the next entry (the lost one comes last); when it
///   failed at once it counts as a failed attempt of the current round.
/// - the connect timeout (per attempt and per lookup) is max(call_timeout, 1 s).
///
/// Failure behaviour (every call completes exactly once, never hangs):
/// - not connected (waiting to reconnect, or stopped): `unavailable` ("control plane
///   unreachable") at once, on the caller's thread. While a round of attempts is in progress
///   calls wait for it (within their timeout).
/// - no answer within `call_timeout`: `timeout`; a late answer is ignored.
/// - the connection drops: every call waiting on it fails with `unavailable`; reconnects follow
///   with exponential backoff between `reconnect_min` and `reconnect_max`, with jitter.
/// - more than `max_pending` calls waiting: `unavailable`.
/// - a message that is not valid msgpack-RPC (bad bytes, wrong types, unknown message kind) is
///   logged and the connection is reset; a well-formed answer whose result has the wrong shape
///   fails that call with `internal`.
///
/// Completions run on the service loop thread, or on the caller's thread for the fail-fast cases.
///
/// Ownership / threads (the resolver itself is a thin handle; the state lives in a client object
/// shared with the tasks it posts, see remote_resolver.cpp):
/// - resolve/wake, on_connect/on_disconnect/track_activity: any thread; they encode the request
///   on the caller's thread and post it to the service loop; the connection, the msgid table and
///   the timers are touched on the service loop only.
/// - the callbacks: moved into the call record; run once on the service loop (answer, timeout,
///   drop, shutdown) or on the caller's thread (fail fast, loop stopping). A callback may still
///   run after the resolver was destroyed (completed with `unavailable`): it must own what it
///   uses.
/// - stats, remote_stats, connected, render_metrics: any thread (atomics; the connected address
///   is a string the loop writes under a mutex).
/// - remote_resolver_options::lookup: shared with whoever built the options; called on the
///   service loop only.
/// - the invalidation handler: see set_invalidation_handler.
/// - destruction: any thread, including the service loop from inside a callback; never blocks
///   except to wait for an invalidation handler that is running.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "spoa/agent/metrics.hpp"
#include "spoa/handlers/routing/resolver.hpp"
#include "spoa/handlers/routing/routing_config.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spdlog {
class logger;
}

namespace spoa::handlers::routing {

namespace detail {
class remote_client;
}

/// Counters of one request method (`resolve` or `wake`).
struct remote_call_stats {
    std::uint64_t calls = 0;     ///< every call made, including those failed fast
    std::uint64_t errors = 0;    ///< calls that completed with an error (any code)
    std::uint64_t timeouts = 0;  ///< of which: no answer within call_timeout
};

/// A snapshot for metrics and tests.
struct remote_resolver_stats {
    bool connected = false;
    std::uint64_t connections = 0;    ///< connections established
    std::uint64_t reconnects = 0;     ///< connection attempts after the first one
    std::uint64_t pending = 0;        ///< calls waiting for an answer now
    std::uint64_t invalidations = 0;  ///< `invalidate` pushes received
    std::uint64_t protocol_errors = 0;
    std::uint64_t notifications_sent = 0;
    std::uint64_t notifications_dropped = 0;  ///< not connected, or the write queue was full
    std::string address;  ///< the configured address connected to; empty when not connected
    std::string peer;     ///< the same with what a name resolved to: "cp:7001 (10.0.0.5:7001)"
    remote_call_stats resolve;
    remote_call_stats wake;
};

class remote_resolver final : public resolver {
  public:
    /// Starts connecting at once (on `service`). `log` may be null (logs nothing).
    remote_resolver(remote_resolver_options opts, std::shared_ptr<handlers::service_loop> service,
                    std::shared_ptr<spdlog::logger> log);
    /// Closes the connection on the service loop; waiting calls fail with `unavailable`.
    ~remote_resolver() override;
    remote_resolver(const remote_resolver&) = delete;
    remote_resolver& operator=(const remote_resolver&) = delete;

    /// Errors: see the header comment (unavailable, timeout, internal, or the server's error).
    void resolve(const std::string& id, const resolve_context& ctx, resolve_callback done) override;
    void wake(const std::string& id, const resolve_context& ctx,
              std::function<void(std::optional<resolve_error>)> done) override;
    void on_connect(const std::string& id, const resolve_context& ctx) override;
    void on_disconnect(const std::string& id, const disconnect_report& r) override;
    void track_activity(const std::string& id, app_protocol p) override;
    /// Nothing is cached in this resolver: a no-op.
    void invalidate(const std::string& /*id*/) override {}

    /// calls/errors of `resolve`, and the `invalidate` pushes received.
    [[nodiscard]] resolver_stats stats() const override;
    [[nodiscard]] std::string_view name() const noexcept override { return "remote"; }
    /// The control plane reports live states: a cold start waits for it to say `ready`.
    [[nodiscard]] bool reports_state() const noexcept override { return true; }

    using invalidation_handler = std::function<void(std::string id, std::optional<app_protocol> p)>;
    /// Called on the service loop for every `invalidate` push (any thread may set it; an empty
    /// function removes it). Exceptions it throws are caught and logged. Once this call (or the
    /// destructor) returns, the previous handler is not running and will not run again: both wait
    /// for a handler that is running, so the handler must not wait for a thread that may be
    /// setting it or destroying the resolver (it may do either itself).
    void set_invalidation_handler(invalidation_handler fn);

    [[nodiscard]] bool connected() const noexcept;
    [[nodiscard]] std::uint64_t reconnects() const noexcept;
    [[nodiscard]] remote_resolver_stats remote_stats() const;
    /// Round-trip time of answered (or timed-out) calls, seconds; `method` is resolve or wake.
    [[nodiscard]] const histogram& call_latency(std::string_view method) const;

    /// Appends the Prometheus text of the spoa_control_plane_* metrics (for a metrics collector).
    void render_metrics(std::string& out) const;

  private:
    std::shared_ptr<handlers::service_loop> service_;
    std::shared_ptr<detail::remote_client> client_;
};

}  // namespace spoa::handlers::routing
