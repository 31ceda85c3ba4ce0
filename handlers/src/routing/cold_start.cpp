#include "spoa/handlers/routing/cold_start.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "spoa/handlers/routing/tcp_probe.hpp"

namespace spoa::handlers::routing {
namespace {

/// Granularity of per-request deadlines while something is starting.
constexpr std::uint64_t sweep_ms = 5;
/// Failed wakes remembered at once. Resource ids can come from clients (a wildcard route), so
/// the memory of failures is bounded: past this, expired failures are dropped, then arbitrary
/// ones (which costs at most one early retry of a broken backend).
constexpr std::size_t max_failures_remembered = 10000;

std::string url_encode(std::string_view s) {
    static const char hex[] = "0123456789ABCDEF";
    std::string out;
    for (const unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
    }
    return out;
}

std::string substitute(std::string text, std::string_view id, std::string_view proto, bool encode) {
    const auto put = [&](std::string_view token, std::string_view value) {
        const std::string v = encode ? url_encode(value) : std::string(value);
        for (std::size_t pos = text.find(token); pos != std::string::npos;
             pos = text.find(token, pos + v.size())) {
            text.replace(pos, token.size(), v);
        }
    };
    put("{id}", id);
    put("{protocol}", proto);
    return text;
}

}  // namespace

std::string_view to_string(cold_start_outcome o) noexcept {
    switch (o) {
        case cold_start_outcome::ready:
            return "ready";
        case cold_start_outcome::wake_failed:
            return "wake_failed";
        case cold_start_outcome::timeout:
            return "timeout";
        case cold_start_outcome::start_failed:
            return "start_failed";
        case cold_start_outcome::busy:
            return "busy";
        case cold_start_outcome::already_up:
            return "already_up";
    }
    return "?";
}

/// One resource being started. Ownership: shared by pending_ (until ready or failed) and the
/// service-loop callbacks of its wake, polls and probes, so a late callback finds it alive and
/// `done`. Threads: key, id and ctx are set before it is published under the lock and never
/// change; `waiters` is guarded by the starter's mutex; the rest is the service loop's.
struct cold_starter::pending {
    std::string key;
    std::string id;
    resolve_context ctx;
    std::shared_ptr<const checked_route> route;  ///< what to probe
    std::shared_ptr<resource_activity> activity;
    struct entry {
        std::unique_ptr<cold_waiter> waiter;
        std::uint64_t started_ms;
        std::uint64_t deadline_ms;
    };
    std::vector<entry> waiters;  ///< guarded by cold_starter::mutex_
    // Service loop only:
    std::uint64_t wake_started_ms = 0;
    std::uint64_t delay_ms = 0;
    bool cp_ready = false;
    bool done = false;
    bool woken = false;        ///< a wake was sent (false: the backend was already up)
    bool first_probe = false;  ///< the probe made before waking a fixed-table route
    bool polling = false;      ///< a readiness poll chain runs (it reschedules itself)
    // A fleet (coordinate_wakes):
    bool leader = false;     ///< this agent holds the wake lease
    bool following = false;  ///< another agent wakes it; this one polls and may take over
    bool claiming = false;   ///< a claim is in flight
    std::uint64_t next_claim_ms = 0;
};

cold_starter::cold_starter(handlers::service_loop& loop, resolver& r, endpoint_checker& checker,
                           route_cache& cache, cold_start_options opts,
                           std::shared_ptr<spdlog::logger> log)
    : loop_(loop),
      resolver_(r),
      checker_(checker),
      cache_(cache),
      opts_(std::move(opts)),
      log_(std::move(log)) {
    if (!log_) log_ = spdlog::default_logger();
    if (opts_.enabled &&
        (opts_.waker == cold_start_options::waker_kind::http || opts_.probe_http)) {
        loop_.post([this](uv_loop_t*) { http_ = std::make_unique<handlers::http_client>(loop_); });
    }
}

cold_starter::~cold_starter() {
    stopping_ = true;
}

std::optional<resolve_error> cold_starter::wait(const std::string& key, const std::string& id,
                                                const resolve_context& ctx,
                                                std::shared_ptr<const checked_route> cold_route,
                                                std::uint64_t started_ns,
                                                std::unique_ptr<cold_waiter>& w) {
    const std::uint64_t now = steady_ms();
    const std::uint64_t started_ms = started_ns / 1000000;
    // Answer before HAProxy gives up: never wait past its timeout processing minus the margin.
    const auto cap = std::max<std::int64_t>(0, (opts_.processing_timeout - opts_.margin).count());
    const auto budget =
        static_cast<std::uint64_t>(std::min<std::int64_t>(opts_.timeout.count(), cap));
    std::shared_ptr<pending> p;
    bool fresh = false;
    {
        std::lock_guard lock(mutex_);
        if (const auto f = failed_.find(key); f != failed_.end()) {
            if (f->second.first > now) {
                resolve_error e = f->second.second;
                // Refused at once, not waited for: 503 whatever the failure was (a timed-out
                // start must not answer 504 in no time).
                e.code = error_code::unavailable;
                e.reason = "start of '" + id + "' failed recently: " + e.reason;
                return e;
            }
            failed_.erase(f);
        }
        auto& slot = pending_[key];
        if (!slot) {
            slot = std::make_shared<pending>();
            slot->key = key;
            slot->id = id;
            slot->ctx = ctx;
            slot->activity = cold_route ? cold_route->activity : nullptr;
            slot->route = std::move(cold_route);
            fresh = true;
        }
        p = slot;
        if (waiting_.load() >= opts_.max_waiters ||
            p->waiters.size() >= opts_.max_waiters_per_resource) {
            count(cold_start_outcome::busy);
            if (fresh) pending_.erase(key);
            return resolve_error{
                error_code::unavailable, "too many requests waiting for '" + id + "' to start", {}};
        }
        p->waiters.push_back({std::move(w), started_ms, started_ms + budget});
        waiting_.fetch_add(1);
    }
    if (fresh) {
        loop_.post([this, p](uv_loop_t*) {
            begin(p);
            if (!sweeping_) schedule_sweep();
        });
    }
    return std::nullopt;
}

void cold_starter::begin(const std::shared_ptr<pending>& p) {
    p->wake_started_ms = steady_ms();
    p->delay_ms = static_cast<std::uint64_t>(std::max<std::int64_t>(1, opts_.poll_initial.count()));
    // A fixed route table cannot say a backend woke up: if it already answers, use it without
    // waking it again. A control plane's state is trusted instead.
    if (!resolver_.reports_state() && !p->first_probe) {
        p->first_probe = true;
        probe(p);
        return;
    }
    wake(p);
}

void cold_starter::coordinate_wakes(std::shared_ptr<wake_coordinator> c) {
    coordinator_ = std::move(c);
    if (!coordinator_) return;
    // Runs on the service loop, which ends before the starter is destroyed.
    coordinator_->on_outcome(
        [this](app_protocol proto, std::string_view id, wake_coordinator::outcome o) {
            other_agent_outcome(proto, id, o);
        });
}

void cold_starter::wake(const std::shared_ptr<pending>& p) {
    if (coordinator_) {
        claim(p);
        return;
    }
    send_wake(p);
}

void cold_starter::claim(const std::shared_ptr<pending>& p) {
    p->claiming = true;
    coordinator_->claim(p->ctx.proto, p->id, [this, p](wake_coordinator::claim_result r) {
        p->claiming = false;
        using result = wake_coordinator::claim_result;
        if (p->done || stopping_) {
            // The start ended while the claim was in flight (this agent's probe saw the backend
            // up, or another agent's outcome came): a won claim would only hold the others back.
            if (r == result::won) coordinator_->give_up(p->ctx.proto, p->id);
            return;
        }
        if (r == result::lost) {
            follow(p);
            return;
        }
        if (p->following) log_->warn("cold start of {}: taking over the wake", p->key);
        p->following = false;
        p->leader = r == result::won;
        send_wake(p);
        if (p->leader) keep_lease(p);
    });
}

void cold_starter::follow(const std::shared_ptr<pending>& p) {
    // Claim again after a part of the lease: if the holder died, its lease runs out and one of
    // the followers wins the next claim and wakes.
    const auto lease = static_cast<std::uint64_t>(coordinator_->lease().count());
    p->next_claim_ms = steady_ms() + std::clamp<std::uint64_t>(lease / 4, 20, 500);
    if (p->following) return;  // a retry from the poll chain, which goes on
    p->following = true;
    p->woken = true;  // the requests wait for a wake, another agent's
    p->wake_started_ms = steady_ms();
    log_->info("cold start of {}: another agent wakes the backend, following", p->key);
    poll(p);
}

void cold_starter::keep_lease(const std::shared_ptr<pending>& p) {
    const auto every =
        std::max<std::uint64_t>(1, static_cast<std::uint64_t>(coordinator_->lease().count()) / 3);
    loop_.start_timer(every, [this, p] {
        if (p->done || stopping_) return;
        coordinator_->renew(p->ctx.proto, p->id);
        keep_lease(p);
    });
}

void cold_starter::release_lease(const pending& p, wake_coordinator::outcome o) {
    if (p.leader) coordinator_->release(p.ctx.proto, p.id, o);
}

void cold_starter::other_agent_outcome(app_protocol proto, std::string_view id,
                                       wake_coordinator::outcome o) {
    std::shared_ptr<pending> p;
    {
        std::lock_guard lock(mutex_);
        for (const auto& [key, candidate] : pending_) {
            if (candidate->ctx.proto == proto && candidate->id == id) p = candidate;
        }
    }
    // Only a follower waits on another agent's start: a start of this agent's own (the lease,
    // or a local wake while Redis failed) has its own outcome.
    if (!p || p->done || !p->following) return;
    if (o == wake_coordinator::outcome::failed) {
        fail(p, resolve_error{error_code::unavailable, "the backend failed to start", {}},
             cold_start_outcome::wake_failed);
        return;
    }
    // Ready elsewhere: the poll chain's next step (at most poll_max away) confirms it here; a
    // route that was never probed here is not trusted on another agent's word alone.
    p->delay_ms = static_cast<std::uint64_t>(std::max<std::int64_t>(1, opts_.poll_initial.count()));
}

void cold_starter::send_wake(const std::shared_ptr<pending>& p) {
    p->woken = true;
    p->wake_started_ms = steady_ms();
    wakes_.fetch_add(1, std::memory_order_relaxed);
    log_->info("cold start of {}: waking the backend", p->key);
    auto on_woken = [this, p](std::optional<resolve_error> err) {
        if (p->done) return;
        if (err) {
            fail(p, std::move(*err), cold_start_outcome::wake_failed);
            return;
        }
        if (!p->polling) poll(p);  // a takeover joins the poll chain already running
    };
    if (opts_.waker == cold_start_options::waker_kind::http && http_) {
        handlers::http_request req = opts_.http;
        const auto proto = to_string(p->ctx.proto);
        req.url = substitute(req.url, p->id, proto, true);
        req.body = substitute(req.body, p->id, proto, false);
        const auto ok = opts_.http_ok;
        http_->send(std::move(req), [on_woken, ok](handlers::http_response r) {
            if (!r.error.empty()) {
                return on_woken(
                    resolve_error{error_code::unavailable, "wake call failed: " + r.error, {}});
            }
            if (std::find(ok.begin(), ok.end(), r.status) == ok.end()) {
                return on_woken(resolve_error{error_code::unavailable,
                                              "wake call answered HTTP " + std::to_string(r.status),
                                              {}});
            }
            on_woken(std::nullopt);
        });
        return;
    }
    resolver_.wake(p->id, p->ctx, [this, on_woken](std::optional<resolve_error> err) {
        // The resolver may answer on any thread.
        loop_.post(
            [on_woken, err = std::move(err)](uv_loop_t*) mutable { on_woken(std::move(err)); });
    });
}

void cold_starter::poll(const std::shared_ptr<pending>& p) {
    if (p->done || stopping_) return;
    p->polling = true;
    if (p->following && !p->claiming && steady_ms() >= p->next_claim_ms) claim(p);
    if (!resolver_.reports_state() || p->cp_ready) {
        probe(p);
        return;
    }
    resolver_.resolve(p->id, p->ctx, [this, p](resolve_result res) {
        loop_.post([this, p, res = std::move(res)](uv_loop_t*) mutable {
            if (p->done) return;
            if (auto* err = std::get_if<resolve_error>(&res)) {
                if (err->code == error_code::not_found || err->code == error_code::forbidden) {
                    fail(p, std::move(*err), cold_start_outcome::start_failed);
                } else {
                    schedule_poll(p);
                }
                return;
            }
            route r = std::get<route>(std::move(res));
            if (r.state == backend_state::failed) {
                fail(p, resolve_error{error_code::unavailable, "backend failed to start", {}},
                     cold_start_outcome::start_failed);
                return;
            }
            if (r.state != backend_state::ready) {
                schedule_poll(p);
                return;
            }
            checker_.check(std::move(r), [this, p](std::shared_ptr<checked_route> checked,
                                                   std::optional<resolve_error> err) {
                if (p->done) return;
                if (err) {
                    fail(p, std::move(*err), cold_start_outcome::start_failed);
                    return;
                }
                p->route = std::move(checked);
                p->cp_ready = true;
                probe(p);
            });
        });
    });
}

void cold_starter::probe(const std::shared_ptr<pending>& p) {
    const checked_endpoint* ep = nullptr;
    if (p->route && !p->route->endpoints.empty()) {
        ep = &p->route->endpoints.front();
    } else if (p->route && !p->route->paths.empty() && !p->route->paths.front().endpoints.empty()) {
        ep = &p->route->paths.front().endpoints.front();
    }
    if (!ep) {
        // Nothing to probe yet (a sleeping backend may have no address until it runs).
        if (resolver_.reports_state()) p->cp_ready = false;
        schedule_poll(p);
        return;
    }
    auto done = [this, p](bool ok, const std::string&) {
        if (p->done) return;
        if (ok) {
            ready(p);
        } else if (!p->woken) {
            wake(p);  // the probe before the wake failed: the backend really sleeps
        } else {
            schedule_poll(p);
        }
    };
    if (opts_.probe_http && http_) {
        handlers::http_request req;
        const std::string host =
            ep->address.is_v6() ? "[" + ep->address.to_string() + "]" : ep->address.to_string();
        req.url = "http://" + host + ":" + std::to_string(ep->port) + opts_.probe_path;
        req.timeout = opts_.probe_timeout;
        const auto expect = opts_.probe_expect;
        http_->send(std::move(req), [done, expect](handlers::http_response r) {
            done(r.error.empty() &&
                     std::find(expect.begin(), expect.end(), r.status) != expect.end(),
                 r.error);
        });
        return;
    }
    probe_tcp(loop_.loop(), ep->address, ep->port, opts_.probe_timeout, done);
}

void cold_starter::schedule_poll(const std::shared_ptr<pending>& p) {
    if (p->done || stopping_) return;
    const std::uint64_t delay = p->delay_ms;
    const auto cap = static_cast<std::uint64_t>(std::max<std::int64_t>(1, opts_.poll_max.count()));
    p->delay_ms = std::min(cap, std::max(delay + 1, delay * 3 / 2));
    loop_.start_timer(delay, [this, p] { poll(p); });
}

void cold_starter::ready(const std::shared_ptr<pending>& p) {
    p->done = true;
    const std::uint64_t now = steady_ms();
    std::vector<pending::entry> waiters;
    {
        std::lock_guard lock(mutex_);
        waiters.swap(p->waiters);
        pending_.erase(p->key);
        waiting_.fetch_sub(waiters.size());
    }
    auto warm = std::make_shared<checked_route>(*p->route);
    warm->state = backend_state::ready;
    if (!warm->activity) warm->activity = p->activity;
    std::shared_ptr<const checked_route> route = warm;
    cache_.store(p->key, route);
    if (coordinator_) release_lease(*p, wake_coordinator::outcome::ready);
    if (p->woken) {
        count(cold_start_outcome::ready);
        if (wake_seconds_)
            wake_seconds_->observe(static_cast<double>(now - p->wake_started_ms) / 1000.0);
        log_->info("cold start of {}: ready after {} ms, {} request(s) released", p->key,
                   now - p->wake_started_ms, waiters.size());
    } else {
        count(cold_start_outcome::already_up);
    }
    for (auto& e : waiters)
        e.waiter->finish(route, nullptr, now - e.started_ms, p->woken);
}

void cold_starter::fail(const std::shared_ptr<pending>& p, resolve_error err,
                        cold_start_outcome outcome) {
    p->done = true;
    const std::uint64_t now = steady_ms();
    std::vector<pending::entry> waiters;
    {
        std::lock_guard lock(mutex_);
        waiters.swap(p->waiters);
        pending_.erase(p->key);
        waiting_.fetch_sub(waiters.size());
        const auto ttl = err.retry_after.value_or(opts_.failure_ttl);
        if (failed_.size() >= max_failures_remembered) forget_failures(now);
        failed_[p->key] = {now + static_cast<std::uint64_t>(ttl.count()), err};
    }
    count(outcome);
    if (coordinator_) release_lease(*p, wake_coordinator::outcome::failed);
    log_->warn("cold start of {} failed ({}): {}", p->key, to_string(outcome), err.reason);
    auto shared = std::make_shared<const resolve_error>(std::move(err));
    for (auto& e : waiters)
        e.waiter->finish(nullptr, shared, now - e.started_ms, p->woken);
}

void cold_starter::forget_failures(std::uint64_t now) {
    std::erase_if(failed_, [now](const auto& f) { return f.second.first <= now; });
    while (failed_.size() >= max_failures_remembered)
        failed_.erase(failed_.begin());
}

void cold_starter::schedule_sweep() {
    sweeping_ = true;
    loop_.start_timer(sweep_ms, [this] { sweep(); });
}

void cold_starter::sweep() {
    const std::uint64_t now = steady_ms();
    std::vector<pending::entry> expired;
    std::vector<std::shared_ptr<pending>> overdue;
    bool any = false;
    {
        std::lock_guard lock(mutex_);
        for (auto& [key, p] : pending_) {
            // Waiters share one budget, so they expire in arrival order.
            auto& w = p->waiters;
            std::size_t n = 0;
            while (n < w.size() && w[n].deadline_ms <= now)
                ++n;
            for (std::size_t i = 0; i < n; ++i)
                expired.push_back(std::move(w[i]));
            w.erase(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(n));
            waiting_.fetch_sub(n);
            if (p->wake_started_ms != 0 &&
                now - p->wake_started_ms >= static_cast<std::uint64_t>(opts_.timeout.count())) {
                overdue.push_back(p);
            }
            any = true;
        }
    }
    for (auto& e : expired) {
        waiter_timeouts_.fetch_add(1, std::memory_order_relaxed);
        auto err = std::make_shared<const resolve_error>(
            resolve_error{error_code::timeout,
                          "backend not ready after " + std::to_string(now - e.started_ms) + " ms",
                          {}});
        e.waiter->finish(nullptr, err, now - e.started_ms, true);
    }
    for (auto& p : overdue) {
        fail(p,
             resolve_error{error_code::timeout,
                           "backend did not become ready within " +
                               std::to_string(opts_.timeout.count()) + " ms",
                           {}},
             cold_start_outcome::timeout);
    }
    sweeping_ = false;
    if (any && !stopping_) schedule_sweep();
}

void cold_starter::register_metrics(metrics_registry& m) {
    wake_seconds_ = &m.add_histogram("spoa_cold_start_seconds", "Wake to ready, per cold start.",
                                     latency_buckets_seconds());
    m.add_collector([this](std::string& out) {
        namespace prom = spoa::prometheus;
        prom::header(out, "spoa_cold_starts_total",
                     "Cold starts, by outcome (busy: waiter bound hit).", "counter");
        for (std::size_t i = 0; i < cold_start_outcome_count; ++i) {
            prom::sample(
                out, "spoa_cold_starts_total",
                "outcome=\"" + std::string(to_string(static_cast<cold_start_outcome>(i))) + "\"",
                outcomes_[i].load(std::memory_order_relaxed));
        }
        prom::header(out, "spoa_cold_start_wakes_total", "Wake calls made.", "counter");
        prom::sample(out, "spoa_cold_start_wakes_total", "",
                     wakes_.load(std::memory_order_relaxed));
        prom::header(out, "spoa_cold_start_waiters", "Requests held while their backend starts.",
                     "gauge");
        prom::sample(out, "spoa_cold_start_waiters", "",
                     static_cast<std::uint64_t>(waiting_.load()));
        prom::header(out, "spoa_cold_start_waiter_timeouts_total",
                     "Held requests answered 504 at their deadline.", "counter");
        prom::sample(out, "spoa_cold_start_waiter_timeouts_total", "",
                     waiter_timeouts_.load(std::memory_order_relaxed));
    });
}

}  // namespace spoa::handlers::routing
