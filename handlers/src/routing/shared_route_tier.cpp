#include "spoa/handlers/routing/shared_route_tier.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "spoa/agent/metrics.hpp"
#include "spoa/handlers/routing/invalidation_message.hpp"
#include "spoa/handlers/routing/resource_id.hpp"
#include "spoa/handlers/routing/shared_route_value.hpp"
#include "throttled_warning.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace std::chrono_literals;

/// Deletes the lease only if this agent still holds it: a lease that expired and was taken
/// by another agent is not ours to release.
constexpr const char* release_script =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";

constexpr app_protocol all_protocols[] = {app_protocol::http, app_protocol::postgres,
                                          app_protocol::tcp, app_protocol::tls};

std::string ms_text(std::chrono::milliseconds ms) {
    return std::to_string(std::max<std::int64_t>(1, ms.count()));
}

}  // namespace

std::string_view to_string(follow_outcome o) noexcept {
    switch (o) {
        case follow_outcome::shared:
            return "shared";
        case follow_outcome::no_share:
            return "no_share";
        case follow_outcome::deadline:
            return "deadline";
        case follow_outcome::error:
            return "error";
        case follow_outcome::wait_limit:
            return "wait_limit";
    }
    return "error";
}

std::chrono::milliseconds shared_ttl(const resolve_result& answer,
                                     const cache_options& cache) noexcept {
    if (const auto* r = std::get_if<route>(&answer)) {
        if (r->state != backend_state::ready) return 0ms;
        return r->ttl.value_or(cache.ttl);
    }
    const auto& e = std::get<resolve_error>(answer);
    if (e.code != error_code::not_found) return 0ms;
    return e.retry_after.value_or(cache.negative_ttl);
}

struct shared_route_tier::state : std::enable_shared_from_this<state> {
    using entry = shared_route_tier::entry;
    using lookup_result = shared_route_tier::lookup_result;
    using miss_start = shared_route_tier::miss_start;

    /// One follower: a miss of this agent waiting for another agent's resolve. Loop thread only;
    /// owned by `waits` and by the timers and reads it started, whichever ends last.
    struct wait {
        app_protocol proto;
        std::string id;
        std::function<void(miss_start)> done;
        std::uint64_t poll_timer = 0;
        std::uint64_t deadline_timer = 0;
        bool reading = false;    ///< a GET of the entry is out
        bool announced = false;  ///< the leader's message came
        bool finished = false;
    };

    // Set at construction, then read-only (any thread).
    std::weak_ptr<redis_client> redis;  ///< weak: the client's handlers hold this state
    std::shared_ptr<handlers::service_loop> service;
    std::shared_ptr<spdlog::logger> log;
    std::string prefix;
    std::string agent_id;
    std::string channel;
    bool coordinate = false;
    std::chrono::milliseconds lease{1000};
    shared_route_tier::options opts;

    std::atomic<std::uint64_t> hits{0};
    std::atomic<std::uint64_t> misses{0};
    std::atomic<std::uint64_t> bad_values{0};
    std::atomic<std::uint64_t> errors{0};
    std::atomic<std::uint64_t> stores{0};
    std::atomic<std::uint64_t> invalidations{0};
    std::atomic<std::uint64_t> leases_taken{0};
    std::atomic<std::uint64_t> leases_held{0};
    std::atomic<std::uint64_t> follows[follow_outcome_count]{};
    std::atomic<std::uint64_t> waiting{0};

    // Loop thread only.
    /// "<protocol>:<id>" -> its waiting followers (a router leads one miss per key at a time,
    /// so this is one wait per key; bounded by opts.max_waits in total).
    std::unordered_map<std::string, std::vector<std::shared_ptr<wait>>> waits;
    throttled_warning warn;  ///< service loop only

    [[nodiscard]] std::string entry_key(app_protocol p, std::string_view id) const {
        return prefix + "cache:" + std::string(to_string(p)) + ":" + std::string(id);
    }
    [[nodiscard]] std::string lease_key(app_protocol p, std::string_view id) const {
        return prefix + "resolve:" + std::string(to_string(p)) + ":" + std::string(id);
    }
    static std::string wait_key(app_protocol p, std::string_view id) {
        return std::string(to_string(p)) + ":" + std::string(id);
    }

    void failed(std::string_view op, const redis_result& r) {
        errors++;
        warn(op, describe(r));
    }

    /// Sends `cmds` back to back (one round trip); `then` runs once every one answered, on the
    /// service loop. Without a client (gone at shutdown) each answer is `unavailable`.
    void send_all(std::vector<std::vector<std::string>> cmds,
                  std::function<void(std::vector<redis_result>)> then) {
        struct join {
            std::vector<redis_result> results;
            std::size_t left;
            std::function<void(std::vector<redis_result>)> then;
        };
        auto j = std::make_shared<join>(
            join{std::vector<redis_result>(cmds.size()), cmds.size(), std::move(then)});
        auto client = redis.lock();
        if (!client) {
            for (auto& r : j->results)
                r.error = redis_error::unavailable;
            service->post([j](uv_loop_t*) { j->then(std::move(j->results)); });
            return;
        }
        for (std::size_t i = 0; i < cmds.size(); ++i) {
            client->command(std::move(cmds[i]), [j, i](redis_result r) {
                j->results[i] = std::move(r);
                if (--j->left == 0) j->then(std::move(j->results));
            });
        }
    }

    /// The entry from a GET and a PTTL answer, counted.
    lookup_result interpret(const redis_result& get, const redis_result& pttl) {
        if (get.error) {
            failed("lookup failed", get);
            return {lookup_status::error, std::nullopt};
        }
        // PTTL -2: gone between the two commands.
        if (get.nil || (!pttl.error && (pttl.integer == -2 || pttl.integer == 0))) {
            misses++;
            return {lookup_status::miss, std::nullopt};
        }
        std::string problem;
        auto answer = decode_shared_value(get.text, &problem);
        if (!answer) {
            bad_values++;
            misses++;
            warn("bad value read as a miss", problem);
            return {lookup_status::miss, std::nullopt};
        }
        std::optional<std::chrono::milliseconds> left;
        if (!pttl.error && pttl.integer > 0) left = std::chrono::milliseconds(pttl.integer);
        // A local negative entry must not outlive the shared one it was read from.
        if (auto* e = std::get_if<resolve_error>(&*answer); e && left)
            e->retry_after = std::min(e->retry_after.value_or(*left), *left);
        hits++;
        return {lookup_status::hit, entry{std::move(*answer), left}};
    }

    void lookup(app_protocol p, std::string_view id, std::function<void(lookup_result)> done) {
        const std::string key = entry_key(p, id);
        send_all({{"GET", key}, {"PTTL", key}},
                 [self = shared_from_this(), done = std::move(done)](std::vector<redis_result> r) {
                     done(self->interpret(r[0], r[1]));
                 });
    }

    void begin_miss(app_protocol p, std::string id, std::chrono::milliseconds budget,
                    std::function<void(miss_start)> done) {
        const auto begun = std::chrono::steady_clock::now();
        const std::string key = entry_key(p, id);
        std::vector<std::vector<std::string>> cmds{{"GET", key}, {"PTTL", key}};
        if (coordinate) {
            cmds.push_back({"SET", lease_key(p, id), agent_id, "NX", "PX", ms_text(lease)});
        }
        send_all(std::move(cmds), [self = shared_from_this(), p, id = std::move(id), budget, begun,
                                   done = std::move(done)](std::vector<redis_result> r) mutable {
            // The budget counts from the miss, the round trip included.
            const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::steady_clock::now() - begun);
            self->started(p, std::move(id), budget - spent, std::move(done), r);
        });
    }

    void started(app_protocol p, std::string id, std::chrono::milliseconds budget,
                 std::function<void(miss_start)> done, const std::vector<redis_result>& r) {
        auto found = interpret(r[0], r[1]);
        const bool took = coordinate && !r[2].error && !r[2].nil;
        if (found.status == lookup_status::hit) {
            if (took) release(p, id, false);  // written meanwhile: nothing to resolve
            done({std::move(found.found), false});
            return;
        }
        if (!coordinate) {
            done({});
            return;
        }
        if (r[2].error) {
            failed("resolve lease not taken", r[2]);
            done({});
            return;
        }
        if (took) {
            leases_taken++;
            done({std::nullopt, true});
            return;
        }
        leases_held++;
        follow(p, std::move(id), budget, std::move(done));
    }

    // ---- followers ---------------------------------------------------------------------------

    void follow(app_protocol p, std::string id, std::chrono::milliseconds budget,
                std::function<void(miss_start)> done) {
        if (waiting.load() >= opts.max_waits) {
            follows[static_cast<std::size_t>(follow_outcome::wait_limit)]++;
            done({});
            return;
        }
        auto w = std::make_shared<wait>(wait{p, std::move(id), std::move(done)});
        waits[wait_key(p, w->id)].push_back(w);
        waiting++;
        w->deadline_timer = service->start_timer(
            static_cast<std::uint64_t>(std::max<std::int64_t>(0, budget.count())),
            [self = shared_from_this(), w] {
                w->deadline_timer = 0;
                self->end_wait(*w, follow_outcome::deadline, std::nullopt);
            });
        schedule_poll(w);
    }

    void schedule_poll(const std::shared_ptr<wait>& w) {
        w->poll_timer = service->start_timer(static_cast<std::uint64_t>(opts.poll_interval.count()),
                                             [self = shared_from_this(), w] {
                                                 w->poll_timer = 0;
                                                 self->read_for(w);
                                             });
    }

    void read_for(const std::shared_ptr<wait>& w) {
        if (w->finished || w->reading) return;
        w->reading = true;
        const bool after_announce = w->announced;
        lookup(w->proto, w->id, [self = shared_from_this(), w, after_announce](lookup_result r) {
            w->reading = false;
            if (w->finished) return;
            if (r.status == lookup_status::hit) {
                self->end_wait(*w, follow_outcome::shared, std::move(r.found));
            } else if (r.status == lookup_status::error) {
                self->end_wait(*w, follow_outcome::error, std::nullopt);
            } else if (after_announce) {
                // Read after the leader's message, which Redis sent after its SET: nothing
                // shared for this key.
                self->end_wait(*w, follow_outcome::no_share, std::nullopt);
            } else if (w->announced) {
                self->read_for(w);  // the message came during a read that may predate the SET
            } else if (w->poll_timer == 0) {
                self->schedule_poll(w);
            }
        });
    }

    void end_wait(wait& w, follow_outcome why, std::optional<entry> found) {
        if (w.finished) return;
        w.finished = true;
        if (w.poll_timer != 0) service->cancel_timer(w.poll_timer);
        if (w.deadline_timer != 0) service->cancel_timer(w.deadline_timer);
        w.poll_timer = w.deadline_timer = 0;
        if (const auto it = waits.find(wait_key(w.proto, w.id)); it != waits.end()) {
            auto& v = it->second;
            v.erase(
                std::remove_if(v.begin(), v.end(), [&w](const auto& x) { return x.get() == &w; }),
                v.end());
            if (v.empty()) waits.erase(it);
        }
        waiting--;
        follows[static_cast<std::size_t>(why)]++;
        auto done = std::move(w.done);
        done({std::move(found), false});
    }

    /// A leader's message on `<prefix>resolved`: its followers here read the entry now.
    void announced(std::string_view payload) {
        const auto m = parse_invalidation(payload);
        if (!m || !m->protocol) return;
        const auto it = waits.find(wait_key(*m->protocol, m->id));
        if (it == waits.end()) return;
        const auto ws = it->second;  // read_for may end waits (and change the map)
        for (const auto& w : ws) {
            w->announced = true;
            read_for(w);
        }
    }

    // ---- leaders -----------------------------------------------------------------------------

    void release(app_protocol p, std::string_view id, bool announce) {
        auto client = redis.lock();
        if (!client) return;
        client->command({"EVAL", release_script, "1", lease_key(p, id), agent_id},
                        [self = shared_from_this()](redis_result r) {
                            if (r.error) self->failed("resolve lease not released", r);
                        });
        if (!announce) return;
        client->command(
            {"PUBLISH", channel, encode(invalidation_message{agent_id, p, std::string(id)})},
            [self = shared_from_this()](redis_result r) {
                if (r.error) self->failed("resolve not announced", r);
            });
    }

    void store(app_protocol p, std::string_view id, const resolve_result& answer,
               std::chrono::milliseconds ttl) {
        if (ttl.count() <= 0) return;
        auto client = redis.lock();
        if (!client) return;
        client->command({"SET", entry_key(p, id), encode_shared_value(answer), "PX", ms_text(ttl)},
                        [self = shared_from_this()](redis_result r) {
                            if (r.error) {
                                self->failed("entry not stored", r);
                            } else {
                                self->stores++;
                            }
                        });
    }
};

shared_route_tier::shared_route_tier(std::shared_ptr<redis_client> redis, std::string agent_id,
                                     std::shared_ptr<handlers::service_loop> service,
                                     std::shared_ptr<spdlog::logger> log, options opts)
    : redis_(std::move(redis)), state_(std::make_shared<state>()) {
    const auto& ro = redis_->options();
    state_->redis = redis_;
    state_->service = std::move(service);
    state_->log = std::move(log);
    state_->warn = throttled_warning(state_->log, "redis shared cache");
    state_->prefix = ro.key_prefix;
    state_->agent_id = std::move(agent_id);
    state_->channel = ro.key_prefix + "resolved";
    state_->coordinate = ro.coordinate_resolves;
    state_->lease = ro.resolve_lease;
    state_->opts = opts;
    if (state_->coordinate) {
        redis_->subscribe(state_->channel,
                          [s = state_](std::string_view payload) { s->announced(payload); });
    }
}

shared_route_tier::~shared_route_tier() = default;

void shared_route_tier::lookup(app_protocol p, std::string_view id,
                               std::function<void(lookup_result)> done) {
    state_->lookup(p, id, std::move(done));
}

void shared_route_tier::store(app_protocol p, std::string_view id, const resolve_result& answer,
                              std::chrono::milliseconds ttl) {
    state_->store(p, id, answer, ttl);
}

void shared_route_tier::invalidate(std::string_view id, std::optional<app_protocol> p) {
    std::vector<std::string> cmd{"DEL"};
    for (app_protocol proto : all_protocols) {
        if (p && *p != proto) continue;
        const bool host = proto == app_protocol::http || proto == app_protocol::tls;
        cmd.push_back(state_->entry_key(proto, host ? normalize_host(id) : std::string(id)));
    }
    state_->invalidations++;
    redis_->command(std::move(cmd), [s = state_](redis_result r) {
        if (r.error) s->failed("entry not deleted", r);
    });
}

void shared_route_tier::begin_miss(app_protocol p, std::string id,
                                   std::chrono::milliseconds wait_budget,
                                   std::function<void(miss_start)> done) {
    state_->begin_miss(p, std::move(id), wait_budget, std::move(done));
}

void shared_route_tier::resolved(app_protocol p, std::string_view id, const resolve_result* answer,
                                 std::chrono::milliseconds ttl, bool leader) {
    if (answer) state_->store(p, id, *answer, ttl);
    if (leader) state_->release(p, id, true);
}

bool shared_route_tier::coordinated() const noexcept {
    return state_->coordinate;
}

shared_tier_stats shared_route_tier::stats() const noexcept {
    shared_tier_stats s;
    s.hits = state_->hits.load();
    s.misses = state_->misses.load();
    s.bad_values = state_->bad_values.load();
    s.errors = state_->errors.load();
    s.stores = state_->stores.load();
    s.invalidations = state_->invalidations.load();
    s.leases_taken = state_->leases_taken.load();
    s.leases_held = state_->leases_held.load();
    for (std::size_t i = 0; i < follow_outcome_count; ++i)
        s.follows[i] = state_->follows[i].load();
    s.waiting = state_->waiting.load();
    return s;
}

void shared_route_tier::render_metrics(std::string& out) const {
    namespace prom = prometheus;
    const auto s = stats();
    const auto counter = [&out](std::string_view name, std::string_view help, std::uint64_t v) {
        prom::header(out, name, help, "counter");
        prom::sample(out, name, "", v);
    };
    counter("spoa_redis_shared_cache_hits_total",
            "Misses of the local route cache answered from the shared tier.", s.hits);
    counter("spoa_redis_shared_cache_misses_total",
            "Shared tier reads that found no usable entry (bad values included).", s.misses);
    counter("spoa_redis_shared_cache_bad_values_total",
            "Shared entries that did not decode, read as misses.", s.bad_values);
    counter("spoa_redis_shared_cache_errors_total",
            "Shared tier commands Redis did not answer (down, slow, refusing).", s.errors);
    counter("spoa_redis_shared_cache_stores_total", "Resolver answers written to the shared tier.",
            s.stores);
    counter("spoa_redis_shared_cache_invalidations_total",
            "DEL commands for invalidations this agent originated.", s.invalidations);
    prom::header(out, "spoa_redis_shared_cache_resolve_leases_total",
                 "Coordinated misses: leases taken here, or held by another agent.", "counter");
    prom::sample(out, "spoa_redis_shared_cache_resolve_leases_total", "result=\"taken\"",
                 s.leases_taken);
    prom::sample(out, "spoa_redis_shared_cache_resolve_leases_total", "result=\"held\"",
                 s.leases_held);
    prom::header(out, "spoa_redis_shared_cache_follows_total",
                 "Coordinated misses that waited for another agent, by how the wait ended.",
                 "counter");
    for (std::size_t i = 0; i < follow_outcome_count; ++i) {
        prom::sample(out, "spoa_redis_shared_cache_follows_total",
                     "outcome=\"" + std::string(to_string(static_cast<follow_outcome>(i))) + "\"",
                     s.follows[i]);
    }
    prom::header(out, "spoa_redis_shared_cache_waiting",
                 "Misses waiting now for another agent's resolve.", "gauge");
    prom::sample(out, "spoa_redis_shared_cache_waiting", "", s.waiting);
}

}  // namespace spoa::handlers::routing
