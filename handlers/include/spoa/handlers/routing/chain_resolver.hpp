#pragma once
/// Two resolvers in turn: the first one, then the fallback when the first answers `not_found`.
/// Any other answer of the first one (a route, or another error such as `unavailable` or
/// `timeout`) is returned as is: a control plane that is down must not make the fallback's
/// routes (or their absence) look authoritative. The usual pair is (static routes, remote).

#include <atomic>
#include <memory>

#include "spoa/handlers/routing/resolver.hpp"

namespace spoa::handlers::routing {

/// Ownership: shares both resolvers; callbacks in flight also hold them (and the counters), so a
/// chain destroyed mid-call is safe, and the last reference to a resolver may be released on the
/// thread that completes the call (the service loop for the remote one).
/// Threads: no state of its own besides atomic counters; each hook runs the two resolvers' hooks
/// on the caller's thread, so it inherits their rules (resolver.hpp). The first resolver's answer
/// may arrive on any thread; the fallback is then called from that thread.
class chain_resolver final : public resolver {
  public:
    /// Throws std::invalid_argument if either is null.
    chain_resolver(std::shared_ptr<resolver> first, std::shared_ptr<resolver> fallback);

    /// Completes with the first resolver's answer, or the fallback's after a `not_found`.
    void resolve(const std::string& id, const resolve_context& ctx, resolve_callback done) override;
    /// Wakes through the resolver that routes `id`: the first one unless it answers `not_found`
    /// for `id`, then the fallback.
    void wake(const std::string& id, const resolve_context& ctx,
              std::function<void(std::optional<resolve_error>)> done) override;
    // Hooks and invalidations go to both resolvers.
    void on_connect(const std::string& id, const resolve_context& ctx) override;
    void on_disconnect(const std::string& id, const disconnect_report& r) override;
    void track_activity(const std::string& id, app_protocol p) override;
    void invalidate(const std::string& id) override;

    /// calls and errors as the chain answered them; invalidations of both resolvers.
    [[nodiscard]] resolver_stats stats() const override;
    [[nodiscard]] std::string_view name() const noexcept override { return "chain"; }
    // reports_state() stays false: an id may belong to the fixed table, whose state never
    // changes, so cold starts of chained routes rely on the readiness probe alone.

    [[nodiscard]] resolver& first() noexcept { return *first_; }
    [[nodiscard]] resolver& fallback() noexcept { return *fallback_; }
    /// How many resolutions went to the fallback.
    [[nodiscard]] std::uint64_t fallbacks() const noexcept {
        return state_->fallbacks.load(std::memory_order_relaxed);
    }

  private:
    struct counters {
        std::atomic<std::uint64_t> calls{0};
        std::atomic<std::uint64_t> errors{0};
        std::atomic<std::uint64_t> fallbacks{0};
    };
    std::shared_ptr<resolver> first_;
    std::shared_ptr<resolver> fallback_;
    /// Shared with callbacks still in flight.
    std::shared_ptr<counters> state_ = std::make_shared<counters>();
};

}  // namespace spoa::handlers::routing
