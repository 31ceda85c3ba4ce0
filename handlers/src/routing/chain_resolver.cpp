#include "spoa/handlers/routing/chain_resolver.hpp"

#include <stdexcept>

namespace spoa::handlers::routing {

chain_resolver::chain_resolver(std::shared_ptr<resolver> first, std::shared_ptr<resolver> fallback)
    : first_(std::move(first)), fallback_(std::move(fallback)) {
    if (!first_ || !fallback_) throw std::invalid_argument("chain_resolver needs two resolvers");
}

void chain_resolver::resolve(const std::string& id, const resolve_context& ctx,
                             resolve_callback done) {
    state_->calls.fetch_add(1, std::memory_order_relaxed);
    // The answer may come on any thread, after this call returned: copy what the fallback needs
    // and keep it (and the counters) alive through the callback. `done` is moved along, never
    // copied: one owner at a time, so its captures are released by the thread that completes it
    // and not also by this one while the answer runs elsewhere.
    auto finish = [state = state_, done = std::move(done)](resolve_result res) {
        if (std::holds_alternative<resolve_error>(res))
            state->errors.fetch_add(1, std::memory_order_relaxed);
        done(std::move(res));
    };
    first_->resolve(id, ctx,
                    [state = state_, fallback = fallback_, id, ctx,
                     finish = std::move(finish)](resolve_result res) mutable {
                        const auto* err = std::get_if<resolve_error>(&res);
                        if (!err || err->code != error_code::not_found) {
                            finish(std::move(res));
                            return;
                        }
                        state->fallbacks.fetch_add(1, std::memory_order_relaxed);
                        fallback->resolve(id, ctx, std::move(finish));
                    });
}

void chain_resolver::wake(const std::string& id, const resolve_context& ctx,
                          std::function<void(std::optional<resolve_error>)> done) {
    // Only the resolver that routes `id` can know how to start its backend.
    first_->resolve(id, ctx,
                    [first = first_, fallback = fallback_, id, ctx,
                     done = std::move(done)](resolve_result res) mutable {
                        const auto* err = std::get_if<resolve_error>(&res);
                        if (err && err->code == error_code::not_found) {
                            fallback->wake(id, ctx, std::move(done));
                        } else {
                            first->wake(id, ctx, std::move(done));
                        }
                    });
}

void chain_resolver::on_connect(const std::string& id, const resolve_context& ctx) {
    first_->on_connect(id, ctx);
    fallback_->on_connect(id, ctx);
}

void chain_resolver::on_disconnect(const std::string& id, const disconnect_report& r) {
    first_->on_disconnect(id, r);
    fallback_->on_disconnect(id, r);
}

void chain_resolver::track_activity(const std::string& id, app_protocol p) {
    first_->track_activity(id, p);
    fallback_->track_activity(id, p);
}

void chain_resolver::invalidate(const std::string& id) {
    first_->invalidate(id);
    fallback_->invalidate(id);
}

resolver_stats chain_resolver::stats() const {
    return {state_->calls.load(std::memory_order_relaxed),
            state_->errors.load(std::memory_order_relaxed),
            first_->stats().invalidations + fallback_->stats().invalidations};
}

}  // namespace spoa::handlers::routing
