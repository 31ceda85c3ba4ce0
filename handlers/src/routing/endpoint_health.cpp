#include "spoa/handlers/routing/endpoint_health.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <string_view>

#include "spoa/handlers/routing/route_cache.hpp"
#include "spoa/handlers/routing/tcp_probe.hpp"

namespace spoa::handlers::routing {

std::string endpoint_state::name() const {
    return ip_.is_v6() ? "[" + ip_.to_string() + "]:" + std::to_string(port_)
                       : ip_.to_string() + ":" + std::to_string(port_);
}

endpoint_health::endpoint_health(handlers::service_loop& loop, health_options health,
                                 breaker_options breaker, std::shared_ptr<spdlog::logger> log)
    : loop_(loop), health_(std::move(health)), breaker_(breaker), log_(std::move(log)) {
    if (!log_) log_ = spdlog::default_logger();
}

endpoint_health::~endpoint_health() {
    stopping_ = true;
}

namespace {

std::string state_key(const ip_address& ip, std::uint16_t port) {
    std::string key(reinterpret_cast<const char*>(ip.data()), ip.size());
    key.push_back(static_cast<char>(port >> 8));
    key.push_back(static_cast<char>(port & 0xFF));
    return key;
}

}  // namespace

std::string_view to_string(endpoint_state::breaker b) noexcept {
    switch (b) {
        case endpoint_state::breaker::closed:
            return "closed";
        case endpoint_state::breaker::open:
            return "open";
        case endpoint_state::breaker::half_open:
            return "half_open";
    }
    return "closed";
}

std::shared_ptr<endpoint_state> endpoint_health::find(const ip_address& ip,
                                                      std::uint16_t port) const {
    const std::string key = state_key(ip, port);
    std::lock_guard lock(mutex_);
    const auto it = states_.find(key);
    return it == states_.end() ? nullptr : it->second;
}

std::shared_ptr<endpoint_state> endpoint_health::state_of(const ip_address& ip,
                                                          std::uint16_t port) {
    const std::string key = state_key(ip, port);
    std::lock_guard lock(mutex_);
    if (states_.size() >= prune_at_) prune_unused();
    auto& slot = states_[key];
    if (!slot) slot = std::make_shared<endpoint_state>(ip, port);
    return slot;
}

std::size_t endpoint_health::tracked() const {
    std::lock_guard lock(mutex_);
    return states_.size();
}

void endpoint_health::prune_unused() {
    // A state only this table holds (no cached route, no check in progress) that is healthy and
    // closed is what a new one would be: dropping it loses nothing. Routes that change their
    // endpoints over time would otherwise grow the table for the life of the process.
    std::erase_if(states_, [](const auto& kv) {
        const auto& s = kv.second;
        return s.use_count() == 1 && s->healthy() &&
               s->circuit() == endpoint_state::breaker::closed;
    });
    prune_at_ = std::max<std::size_t>(min_prune_at, 2 * states_.size());
}

void endpoint_health::transition(endpoint_state& s, endpoint_state::breaker to,
                                 std::string_view why) noexcept {
    // The opening time is published before the state (release, read with acquire by
    // circuit()): a loop thread that sees `open` also sees since when, never a stale time that
    // would end the cool-down at once.
    if (to == endpoint_state::breaker::open)
        s.opened_at_ms_.store(steady_ms(), std::memory_order_relaxed);
    const auto from = s.circuit_.exchange(to, std::memory_order_acq_rel);
    if (from == to) return;
    transitions_[static_cast<std::size_t>(to)].fetch_add(1, std::memory_order_relaxed);
    if (to != endpoint_state::breaker::half_open)
        s.trial_taken_.store(false, std::memory_order_relaxed);
    if (to == endpoint_state::breaker::closed)
        s.breaker_failures_.store(0, std::memory_order_relaxed);
    log_->warn("circuit of {} {} -> {}{}{}", s.name(), to_string(from), to_string(to),
               why.empty() ? "" : ": ", why);
}

endpoint_health::verdict endpoint_health::admit(endpoint_state& s, std::uint64_t now) noexcept {
    // Written at most once per millisecond: every loop thread passes here on every decision.
    if (s.last_used_ms_.load(std::memory_order_relaxed) < now)
        s.last_used_ms_.store(now, std::memory_order_relaxed);
    if (!s.healthy()) {
        rejected_unhealthy_.fetch_add(1, std::memory_order_relaxed);
        return verdict::unhealthy;
    }
    if (!breaker_.enabled) return verdict::ok;
    switch (s.circuit()) {
        case endpoint_state::breaker::closed:
            return verdict::ok;
        case endpoint_state::breaker::open:
            // `now` may be a little older than the opening (a caller's earlier reading).
            if (const std::uint64_t opened = s.opened_at_ms_.load(std::memory_order_relaxed);
                now < opened ||
                now - opened < static_cast<std::uint64_t>(breaker_.cooldown.count())) {
                rejected_open_.fetch_add(1, std::memory_order_relaxed);
                return verdict::open;
            }
            transition(s, endpoint_state::breaker::half_open, "cool-down over");
            [[fallthrough]];
        case endpoint_state::breaker::half_open: {
            // One trial at a time; the others are refused until its outcome is known.
            bool expected = false;
            if (s.trial_taken_.compare_exchange_strong(expected, true)) return verdict::trial;
            rejected_open_.fetch_add(1, std::memory_order_relaxed);
            return verdict::open;
        }
    }
    return verdict::ok;
}

void endpoint_health::report_success(endpoint_state& s) noexcept {
    switch (s.circuit()) {
        case endpoint_state::breaker::closed:
            s.breaker_failures_.store(0, std::memory_order_relaxed);
            return;
        case endpoint_state::breaker::half_open:
            transition(s, endpoint_state::breaker::closed, "trial succeeded");
            return;
        case endpoint_state::breaker::open:
            // A success logged for a connection made before the circuit opened says nothing
            // about now: only a half-open trial may close it.
            return;
    }
}

void endpoint_health::report_failure(endpoint_state& s, std::string_view why) noexcept {
    if (!breaker_.enabled) return;
    const auto failures = s.breaker_failures_.fetch_add(1, std::memory_order_relaxed) + 1;
    const auto circuit = s.circuit();
    if (circuit == endpoint_state::breaker::half_open) {
        transition(s, endpoint_state::breaker::open, why);
    } else if (circuit == endpoint_state::breaker::closed && failures >= breaker_.failures) {
        transition(s, endpoint_state::breaker::open,
                   std::to_string(failures) + " consecutive failures, last: " + std::string(why));
    } else if (circuit == endpoint_state::breaker::open) {
        s.opened_at_ms_.store(steady_ms(), std::memory_order_relaxed);
    }
}

void endpoint_health::start() {
    if (!health_.enabled && !breaker_.enabled) return;
    if (health_.kind == health_options::check_kind::http)
        http_ = std::make_unique<handlers::http_client>(loop_);
    schedule_checks();
}

void endpoint_health::schedule_checks() {
    // One timer drives every check; it re-arms itself until the loop stops.
    loop_.start_timer(static_cast<std::uint64_t>(health_.interval.count()), [this] {
        if (stopping_) return;
        run_checks();
        schedule_checks();
    });
}

void endpoint_health::run_checks() {
    std::vector<std::shared_ptr<endpoint_state>> due;
    const std::uint64_t now = steady_ms();
    {
        std::lock_guard lock(mutex_);
        for (auto& [k, s] : states_) {
            const bool recent = ms_since(now, s->last_used_ms_.load(std::memory_order_relaxed)) <
                                static_cast<std::uint64_t>(health_.recent_use.count());
            // Half-open circuits get their trial from the checks too, so an endpoint nobody
            // routes to any more can still close its circuit.
            const bool trial = s->circuit() != endpoint_state::breaker::closed;
            if ((recent && health_.enabled) || trial) due.push_back(s);
        }
    }
    for (auto& s : due) {
        if (!s->checking_) check_one(s);
    }
}

void endpoint_health::check_one(const std::shared_ptr<endpoint_state>& s) {
    s->checking_ = true;
    auto done = [this, s](bool ok, std::string why) {
        s->checking_ = false;
        check_result(*s, ok, why);
    };
    if (health_.kind == health_options::check_kind::http && http_) {
        handlers::http_request req;
        req.url = "http://" + s->name() + health_.http_path;
        req.timeout = health_.timeout;
        const auto expect = health_.http_expect;
        http_->send(std::move(req), [done, expect](handlers::http_response r) {
            if (!r.error.empty()) return done(false, r.error);
            const bool ok = expect.empty()
                                ? (r.status >= 200 && r.status < 400)
                                : std::find(expect.begin(), expect.end(), r.status) != expect.end();
            done(ok, ok ? "" : "HTTP status " + std::to_string(r.status));
        });
        return;
    }
    probe_tcp(loop_.loop(), s->ip(), s->port(), health_.timeout, done);
}

void endpoint_health::check_result(endpoint_state& s, bool ok, const std::string& why) {
    if (ok) {
        checks_ok_.fetch_add(1, std::memory_order_relaxed);
        s.check_failures_ = 0;
        ++s.check_successes_;
        if (!s.healthy() && s.check_successes_ >= health_.rise) {
            s.healthy_.store(true);
            log_->warn("endpoint {} is healthy again ({} checks passed)", s.name(),
                       s.check_successes_);
        }
        if (s.circuit() != endpoint_state::breaker::closed) {
            // The cool-down must be over before a check may close the circuit; the check is then
            // the half-open trial (open -> half-open -> closed, never open -> closed directly).
            const bool cooled = steady_ms() - s.opened_at_ms_.load(std::memory_order_relaxed) >=
                                static_cast<std::uint64_t>(breaker_.cooldown.count());
            if (s.circuit() == endpoint_state::breaker::open && cooled) {
                transition(s, endpoint_state::breaker::half_open,
                           "cool-down over, check is the trial");
            }
            if (s.circuit() == endpoint_state::breaker::half_open) report_success(s);
        } else {
            s.breaker_failures_.store(0, std::memory_order_relaxed);
        }
        return;
    }
    checks_failed_.fetch_add(1, std::memory_order_relaxed);
    s.check_successes_ = 0;
    ++s.check_failures_;
    if (health_.enabled && s.healthy() && s.check_failures_ >= health_.fall) {
        s.healthy_.store(false);
        log_->warn("endpoint {} is unhealthy ({} checks failed, last: {})", s.name(),
                   s.check_failures_, why);
    }
    report_failure(s, "check failed: " + why);
}

void endpoint_health::register_metrics(metrics_registry& m) {
    m.add_collector([this](std::string& out) {
        namespace prom = spoa::prometheus;
        prom::header(out, "spoa_breaker_transitions_total",
                     "Circuit breaker transitions, by new state.", "counter");
        constexpr std::array states{endpoint_state::breaker::closed, endpoint_state::breaker::open,
                                    endpoint_state::breaker::half_open};
        for (int i = 0; i < 3; ++i) {
            prom::sample(out, "spoa_breaker_transitions_total",
                         "to=\"" + std::string(to_string(states[i])) + "\"",
                         transitions_[i].load(std::memory_order_relaxed));
        }
        std::uint64_t counts[3] = {0, 0, 0};
        std::uint64_t unhealthy = 0;
        std::vector<std::pair<std::string, int>> open;
        {
            std::lock_guard lock(mutex_);
            for (auto& [k, s] : states_) {
                ++counts[static_cast<int>(s->circuit())];
                if (!s->healthy()) ++unhealthy;
            }
        }
        prom::header(out, "spoa_breaker_endpoints", "Endpoints by circuit state.", "gauge");
        for (int i = 0; i < 3; ++i) {
            prom::sample(out, "spoa_breaker_endpoints",
                         "state=\"" + std::string(to_string(states[i])) + "\"", counts[i]);
        }
        prom::header(out, "spoa_endpoints_tracked",
                     "Endpoints with health and circuit state (unused healthy ones are dropped).",
                     "gauge");
        prom::sample(out, "spoa_endpoints_tracked", "", static_cast<std::uint64_t>(tracked()));
        prom::header(out, "spoa_endpoints_unhealthy", "Endpoints failing their active checks.",
                     "gauge");
        prom::sample(out, "spoa_endpoints_unhealthy", "", unhealthy);
        prom::header(out, "spoa_health_checks_total", "Active checks, by result.", "counter");
        prom::sample(out, "spoa_health_checks_total", "result=\"ok\"",
                     checks_ok_.load(std::memory_order_relaxed));
        prom::sample(out, "spoa_health_checks_total", "result=\"failed\"",
                     checks_failed_.load(std::memory_order_relaxed));
        prom::header(out, "spoa_endpoint_rejections_total",
                     "Routing attempts refused by health or breaker.", "counter");
        prom::sample(out, "spoa_endpoint_rejections_total", "reason=\"open\"",
                     rejected_open_.load(std::memory_order_relaxed));
        prom::sample(out, "spoa_endpoint_rejections_total", "reason=\"unhealthy\"",
                     rejected_unhealthy_.load(std::memory_order_relaxed));
    });
}

}  // namespace spoa::handlers::routing
