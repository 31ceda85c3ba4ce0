#include "spoa/handlers/routing/invalidation_fanout.hpp"

#include <spdlog/spdlog.h>

#include <chrono>

#include "spoa/handlers/routing/invalidation_message.hpp"
#include "throttled_warning.hpp"

namespace spoa::handlers::routing {

/// What the subscription handler and the publish completions use: they may run on the service
/// loop until it ends, so they share it rather than point into the fanout.
struct invalidation_fanout::state {
    std::string agent_id;
    apply_fn apply;
    apply_fn from_platform;
    std::function<void()> resync;
    std::shared_ptr<spdlog::logger> log;
    std::atomic<std::uint64_t> published{0};
    std::atomic<std::uint64_t> dropped{0};
    std::atomic<std::uint64_t> applied{0};
    std::atomic<std::uint64_t> own{0};
    std::atomic<std::uint64_t> malformed{0};
    std::atomic<std::uint64_t> resyncs{0};
    throttled_warning warn;  ///< loop thread only

    void received(std::string_view payload) {
        const auto m = parse_invalidation(payload);
        if (!m) {
            malformed++;
            warn("malformed message ignored", payload.substr(0, 200));
            return;
        }
        if (m->origin == agent_id) {
            own++;
            return;
        }
        applied++;
        if (m->origin == "-" && from_platform) from_platform(m->id, m->protocol);
        if (apply) apply(m->id, m->protocol);
    }
};

invalidation_fanout::invalidation_fanout(std::shared_ptr<redis_client> redis, std::string agent_id,
                                         apply_fn apply, std::function<void()> resync,
                                         std::shared_ptr<spdlog::logger> log,
                                         apply_fn from_platform)
    : redis_(std::move(redis)),
      channel_(redis_->options().key_prefix + "invalidate"),
      state_(std::make_shared<state>()) {
    state_->agent_id = std::move(agent_id);
    state_->apply = std::move(apply);
    state_->from_platform = std::move(from_platform);
    state_->resync = std::move(resync);
    state_->log = std::move(log);
    state_->warn = throttled_warning(state_->log, "redis invalidations");
    redis_->subscribe(channel_, [s = state_](std::string_view payload) { s->received(payload); });
    redis_->on_resubscribed([s = state_] {
        // Messages published while this agent was not subscribed are lost to it: its cached
        // routes may be stale, so it starts over from its resolver.
        s->resyncs++;
        if (s->log) s->log->info("redis invalidations: subscribed again, route cache cleared");
        if (s->resync) s->resync();
    });
}

void invalidation_fanout::publish(std::string_view id, std::optional<app_protocol> p) {
    auto text = encode({state_->agent_id, p, std::string(id)});
    redis_->command({"PUBLISH", channel_, std::move(text)}, [s = state_](redis_result r) {
        if (!r.error) {
            s->published++;
            return;
        }
        s->dropped++;
        s->warn("not published (dropped)", describe(r));
    });
}

const std::string& invalidation_fanout::agent_id() const noexcept {
    return state_->agent_id;
}

fanout_stats invalidation_fanout::stats() const noexcept {
    return {state_->published.load(), state_->dropped.load(),   state_->applied.load(),
            state_->own.load(),       state_->malformed.load(), state_->resyncs.load()};
}

void invalidation_fanout::render_metrics(std::string& out) const {
    namespace prom = prometheus;
    const auto s = stats();
    prom::header(out, "spoa_redis_invalidations_total",
                 "Invalidation messages on the Redis channel, by what became of them", "counter");
    const std::pair<std::string_view, std::uint64_t> events[] = {
        {"published", s.published}, {"dropped", s.dropped}, {"applied", s.applied}, {"own", s.own},
        {"malformed", s.malformed}, {"resync", s.resyncs}};
    for (const auto& [event, n] : events)
        prom::sample(out, "spoa_redis_invalidations_total", "event=\"" + std::string(event) + "\"",
                     n);
    prom::header(out, "spoa_redis_agent_info", "This agent's id in the fleet's messages", "gauge");
    prom::sample(out, "spoa_redis_agent_info",
                 "agent_id=\"" + prom::escape(state_->agent_id) + "\",channel=\"" +
                     prom::escape(channel_) + "\"",
                 std::int64_t{1});
}

}  // namespace spoa::handlers::routing
