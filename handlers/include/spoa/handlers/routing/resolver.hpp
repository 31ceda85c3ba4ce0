#pragma once
/// The resolver interface: maps a resource id (HTTP host, PostgreSQL database, TLS SNI,
/// destination port ...) to backend endpoints, asynchronously.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "spoa/agent/ip_address.hpp"

namespace spoa::handlers::routing {

/// The application protocol of the traffic being routed (resource ids live in one namespace per
/// protocol).
enum class app_protocol : std::uint8_t { http, postgres, tcp, tls };
[[nodiscard]] std::string_view to_string(app_protocol p) noexcept;
[[nodiscard]] std::optional<app_protocol> parse_app_protocol(std::string_view s) noexcept;

/// Typed resolver errors. Each maps to its own HTTP status; never collapse them.
enum class error_code : std::uint8_t { not_found, forbidden, unavailable, timeout, internal };
[[nodiscard]] std::string_view to_string(error_code e) noexcept;
[[nodiscard]] std::optional<error_code> parse_error_code(std::string_view s) noexcept;
/// 404, 403, 503, 504, 500.
[[nodiscard]] int http_status(error_code e) noexcept;

struct resolve_error {
    error_code code = error_code::internal;
    std::string reason;
    /// Server-provided hint: do not ask again before this (negative caching, cold-start retry).
    std::optional<std::chrono::milliseconds> retry_after;
};

/// What the platform says about the backend (cold starts, issue "Cold starts").
enum class backend_state : std::uint8_t { ready, asleep, starting, failed };
[[nodiscard]] std::string_view to_string(backend_state s) noexcept;
[[nodiscard]] std::optional<backend_state> parse_backend_state(std::string_view s) noexcept;

/// A host (name or IP literal) and port, as a resolver returns it. Validation turns names into
/// checked addresses before anything reaches HAProxy.
struct endpoint {
    std::string host;
    std::uint16_t port = 0;
    /// "host:port", "[v6]:port"; throws std::invalid_argument.
    [[nodiscard]] static endpoint parse(std::string_view text);
    [[nodiscard]] std::string to_string() const;
    friend bool operator==(const endpoint&, const endpoint&) = default;
};

/// HTTP only: endpoints for requests whose path starts with `prefix` (longest prefix wins).
struct path_route {
    std::string prefix;
    std::vector<endpoint> endpoints;
};

struct route {
    std::vector<endpoint> endpoints;
    std::vector<path_route> paths;
    /// Free-form data; the router passes configured keys back to HAProxy as variables.
    std::map<std::string, std::string> metadata;
    /// Overrides the cache TTL for this answer.
    std::optional<std::chrono::milliseconds> ttl;
    /// Overrides the cold-start wait for this resource.
    std::optional<std::chrono::milliseconds> timeout;
    backend_state state = backend_state::ready;
};

using resolve_result = std::variant<route, resolve_error>;

/// What the resolver may use besides the id (copied: it outlives the SPOE message).
struct resolve_context {
    app_protocol proto = app_protocol::http;
    std::string path;  ///< HTTP
    std::optional<ip_address> source;
    std::optional<ip_address> destination;
    std::uint16_t destination_port = 0;
    std::string sni;
    std::string service;                            ///< tcp/tls frontends: e.g. "mysql", "smtp"
    std::map<std::string, std::string> attributes;  ///< e.g. PostgreSQL user, application_name
};

/// Called exactly once, from any thread: the resolver's I/O thread (remote: the service loop) or
/// synchronously inside resolve() on the caller's thread (static table, fail-fast errors), so the
/// caller must tolerate re-entry. Ownership: the resolver owns it from resolve() until it calls
/// it, and moves it rather than copies it, so its captures die on the completing thread. It runs
/// on the service loop in production: it must not block.
using resolve_callback = std::function<void(resolve_result)>;

struct resolver_stats {
    std::uint64_t calls = 0;
    std::uint64_t errors = 0;
    std::uint64_t invalidations = 0;
};

struct disconnect_report {
    std::uint64_t bytes_in = 0;
    std::uint64_t bytes_out = 0;
    std::chrono::milliseconds duration{0};
};

/// Ownership: shared (std::shared_ptr) by the router, the cold starter, a chain and the callbacks
/// a chain has in flight; it may therefore be destroyed on the service loop thread, after the
/// code that created it has let go. Callbacks still pending at destruction still run once.
/// Threads (who calls each hook in the agent; every hook may be called concurrently with the
/// others, so an implementation synchronises whatever state two hooks share):
/// - resolve, wake: the service loop (router, cold starter); tests call them from any thread.
/// - on_connect, track_activity: the service loop (the router posts them there).
/// - on_disconnect: the service loop (feedback_log).
/// - invalidate: the admin HTTP thread (POST /invalidate) and the service loop (control-plane
///   pushes), concurrently with resolve.
/// - stats: the admin HTTP thread (metrics), concurrently with everything: atomics only.
/// - name, reports_state: any thread; constant.
/// None of them may block: the service loop runs every resolver, health check and timer, and the
/// admin thread answers health probes.
class resolver {
  public:
    virtual ~resolver() = default;

    /// Resolves `id` (already normalised). Must not block: complete `done` later, from any
    /// thread, exactly once (or at once, on this thread).
    virtual void resolve(const std::string& id, const resolve_context& ctx,
                         resolve_callback done) = 0;

    // Lifecycle hooks; the defaults do nothing. Best effort, never block (see above).
    virtual void on_connect(const std::string& /*id*/, const resolve_context& /*ctx*/) {}
    virtual void on_disconnect(const std::string& /*id*/, const disconnect_report& /*r*/) {}
    /// The resource was used (throttled by the router); lets the platform see activity.
    virtual void track_activity(const std::string& /*id*/, app_protocol /*p*/) {}
    /// Forget anything cached about `id` inside the resolver. Any thread (admin, service loop).
    virtual void invalidate(const std::string& /*id*/) {}
    /// Cold starts: ask the platform to start the backend of `id`. Completes with nothing on
    /// success (409 "already starting" counts as success) or an error; `done` follows the rules
    /// of resolve_callback.
    virtual void wake(const std::string& /*id*/, const resolve_context& /*ctx*/,
                      std::function<void(std::optional<resolve_error>)> done) {
        done(resolve_error{error_code::unavailable, "this resolver cannot wake backends", {}});
    }
    /// True when resolve() reports live backend states (a control plane), so that a cold start
    /// waits for it to say `ready`; false for fixed tables, where only the probe decides.
    [[nodiscard]] virtual bool reports_state() const noexcept { return false; }
    [[nodiscard]] virtual resolver_stats stats() const { return {}; }
    [[nodiscard]] virtual std::string_view name() const noexcept = 0;
};

}  // namespace spoa::handlers::routing
