#include "spoa/handlers/routing/wake_lease.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>

#include "spoa/agent/metrics.hpp"
#include "spoa/handlers/routing/invalidation_message.hpp"
#include "throttled_warning.hpp"

namespace spoa::handlers::routing {
namespace {

constexpr std::string_view version = "1";

// Compare-and-act scripts: the holder may have lost the lease to an expiry and another agent's
// claim; it must then neither extend nor delete that agent's lease.
constexpr const char* renew_script =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
// A ready start leaves `ready:<agent_id>` (no agent id has a ':') for one more lease, so that a
// follower whose periodic claim comes after the release does not wake the resource again: it
// loses and its own probe finds the backend up. A failed start frees the key for a new attempt.
constexpr const char* release_script =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "if ARGV[2] == 'ready' then return redis.call('SET', KEYS[1], 'ready:' .. ARGV[1], 'PX', "
    "ARGV[3]) end "
    "return redis.call('DEL', KEYS[1]) end return 0";

std::string_view outcome_name(wake_coordinator::outcome o) noexcept {
    return o == wake_coordinator::outcome::ready ? "ready" : "failed";
}

enum class claim_event : std::uint8_t { won, lost, unknown, renew_lost };
constexpr std::size_t claim_event_count = 4;
constexpr std::string_view claim_event_names[claim_event_count] = {"won", "lost", "unknown",
                                                                   "renew_lost"};

enum class outcome_event : std::uint8_t { published, dropped, applied, own, malformed };
constexpr std::size_t outcome_event_count = 5;
constexpr std::string_view outcome_event_names[outcome_event_count] = {
    "published", "dropped", "applied", "own", "malformed"};

}  // namespace

std::string encode(const wake_outcome_message& m) {
    std::string out(version);
    out += ' ';
    out += m.origin;
    out += ' ';
    out += to_string(m.protocol);
    out += ' ';
    out += outcome_name(m.what);
    out += ' ';
    out += m.id;
    return out;
}

std::optional<wake_outcome_message> parse_wake_outcome(std::string_view text) {
    if (next_field(text) != version) return std::nullopt;
    wake_outcome_message m;
    m.origin = std::string(next_field(text));
    const auto proto = parse_app_protocol(next_field(text));
    const auto what = next_field(text);
    text = trim_line_end(text);
    if (m.origin.empty() || !proto || text.empty()) return std::nullopt;
    m.protocol = *proto;
    if (what == "ready") {
        m.what = wake_coordinator::outcome::ready;
    } else if (what == "failed") {
        m.what = wake_coordinator::outcome::failed;
    } else {
        return std::nullopt;
    }
    m.id = std::string(text);
    return m;
}

struct wake_lease::state {
    std::string agent_id;
    std::chrono::milliseconds lease{};
    std::shared_ptr<spdlog::logger> log;
    outcome_handler handler;  ///< service loop only
    std::atomic<std::uint64_t> claims[claim_event_count]{};
    std::atomic<std::uint64_t> outcomes[outcome_event_count]{};
    throttled_warning warn;  ///< service loop only

    void count(claim_event e) { claims[static_cast<std::size_t>(e)]++; }
    void count(outcome_event e) { outcomes[static_cast<std::size_t>(e)]++; }

    void received(std::string_view payload) {
        const auto m = parse_wake_outcome(payload);
        if (!m) {
            count(outcome_event::malformed);
            warn("malformed message ignored", payload.substr(0, 200));
            return;
        }
        if (m->origin == agent_id) {
            count(outcome_event::own);
            return;
        }
        count(outcome_event::applied);
        if (handler) handler(m->protocol, m->id, m->what);
    }
};

wake_lease::wake_lease(std::shared_ptr<redis_client> redis, std::string agent_id,
                       std::shared_ptr<spdlog::logger> log)
    : redis_(std::move(redis)),
      channel_(redis_->options().key_prefix + "wake"),
      state_(std::make_shared<state>()) {
    state_->agent_id = std::move(agent_id);
    state_->lease = redis_->options().wake_lease;
    state_->log = std::move(log);
    state_->warn = throttled_warning(state_->log, "redis wake lease");
}

std::string wake_lease::key_of(app_protocol p, const std::string& id) const {
    std::string key = redis_->options().key_prefix;
    key += "wake:";
    key += to_string(p);
    key += ':';
    key += id;
    return key;
}

void wake_lease::claim(app_protocol p, const std::string& id,
                       std::function<void(claim_result)> done) {
    redis_->command(
        {"SET", key_of(p, id), state_->agent_id, "NX", "PX", std::to_string(state_->lease.count())},
        [s = state_, done = std::move(done)](redis_result r) {
            if (r.error) {
                s->count(claim_event::unknown);
                s->warn("claim failed, waking locally", describe(r));
                done(claim_result::unknown);
                return;
            }
            const bool won = !r.nil;
            s->count(won ? claim_event::won : claim_event::lost);
            done(won ? claim_result::won : claim_result::lost);
        });
}

void wake_lease::renew(app_protocol p, const std::string& id) {
    redis_->command({"EVAL", renew_script, "1", key_of(p, id), state_->agent_id,
                     std::to_string(state_->lease.count())},
                    [s = state_](redis_result r) {
                        // 0: the lease expired and may be someone else's now; the start goes on
                        // here (its outcome is still announced), the counter tells.
                        if (!r.error && r.integer == 0) s->count(claim_event::renew_lost);
                    });
}

void wake_lease::release(app_protocol p, const std::string& id, outcome o) {
    auto text = encode(wake_outcome_message{state_->agent_id, p, o, id});
    redis_->command({"PUBLISH", channel_, std::move(text)}, [s = state_](redis_result r) {
        if (!r.error) {
            s->count(outcome_event::published);
            return;
        }
        s->count(outcome_event::dropped);
        s->warn("outcome not published (the others poll)", describe(r));
    });
    redis_->command({"EVAL", release_script, "1", key_of(p, id), state_->agent_id,
                     std::string(outcome_name(o)), std::to_string(state_->lease.count())},
                    [](redis_result) {});
}

void wake_lease::give_up(app_protocol p, const std::string& id) {
    redis_->command({"EVAL", release_script, "1", key_of(p, id), state_->agent_id, "none", "0"},
                    [](redis_result) {});
}

void wake_lease::on_outcome(outcome_handler fn) {
    // Subscribing only now publishes the handler to the service loop through the client's task
    // queue: the subscription's handler never sees it half written.
    state_->handler = std::move(fn);
    redis_->subscribe(channel_, [s = state_](std::string_view payload) { s->received(payload); });
}

std::chrono::milliseconds wake_lease::lease() const noexcept {
    return state_->lease;
}

void wake_lease::render_metrics(std::string& out) const {
    namespace prom = prometheus;
    prom::header(out, "spoa_redis_wake_claims_total",
                 "Wake lease claims, by result (renew_lost: a renewal found the lease gone)",
                 "counter");
    for (std::size_t i = 0; i < claim_event_count; ++i)
        prom::sample(out, "spoa_redis_wake_claims_total",
                     "result=\"" + std::string(claim_event_names[i]) + "\"",
                     state_->claims[i].load());
    prom::header(out, "spoa_redis_wake_outcomes_total",
                 "Wake outcomes on the Redis channel, by what became of them", "counter");
    for (std::size_t i = 0; i < outcome_event_count; ++i)
        prom::sample(out, "spoa_redis_wake_outcomes_total",
                     "event=\"" + std::string(outcome_event_names[i]) + "\"",
                     state_->outcomes[i].load());
}

}  // namespace spoa::handlers::routing
