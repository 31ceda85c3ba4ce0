#include "spoa/handlers/routing/activity_exporter.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <future>
#include <unordered_map>
#include <utility>
#include <vector>

#include "spoa/agent/metrics.hpp"
#include "throttled_warning.hpp"

namespace spoa::handlers::routing {

namespace {

using steady = std::chrono::steady_clock;

std::uint64_t unix_ms() noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
}

/// A steady-clock reading of the table as Unix time, given both clocks read now.
std::uint64_t to_unix(std::uint64_t seen, std::uint64_t steady_now, std::uint64_t unix_now) {
    const std::uint64_t ago = seen < steady_now ? steady_now - seen : 0;
    return ago < unix_now ? unix_now - ago : 0;
}

constexpr std::uint64_t key_ttl_ms =
    std::chrono::duration_cast<std::chrono::milliseconds>(activity_key_ttl).count();

/// Commands per resource in a flush (HINCRBY, PEXPIRE), and per flush (ZADD, ZREMRANGEBYSCORE,
/// PEXPIRE of the sorted set).
constexpr std::size_t commands_per_record = 2;
constexpr std::size_t commands_per_flush = 3;

/// One resource's part of a flush.
struct flush_item {
    std::string member;          ///< `<protocol>:<id>`
    std::uint64_t requests = 0;  ///< to add to its count
    std::uint64_t seen_ms = 0;   ///< Unix ms of its latest decision; 0: nothing to write
};

constexpr std::size_t no_position = static_cast<std::size_t>(-1);

/// What one flush takes (loop thread only).
struct flush_batch {
    std::vector<flush_item> items;
    std::unordered_map<std::string, std::size_t> index;  ///< member -> position in items
    std::size_t budget = 0;                              ///< resources at most
    std::uint64_t unix_now = 0;
    std::uint64_t steady_now = 0;

    [[nodiscard]] bool full() const noexcept { return items.size() >= budget; }
    flush_item& item_of(std::string member) {
        const auto [it, fresh] = index.try_emplace(member, items.size());
        if (fresh) items.push_back({std::move(member), 0, 0});
        return items[it->second];
    }
};

/// Set once every command of a flush has been handed to the client (a task posted after theirs,
/// the service loop runs tasks in order): an `unavailable` completion before that never left the
/// agent; one after it was in flight when the connection went. Loop thread only.
struct flush_marker {
    bool issued = false;
};

/// What became of a request count sent with HINCRBY.
enum class fate : std::uint8_t { written, retry, uncertain };

fate fate_of(const redis_result& r, bool issued) noexcept {
    if (!r.error) return fate::written;
    switch (*r.error) {
        case redis_error::overloaded:
        case redis_error::server:  // an error reply applies nothing
            return fate::retry;
        case redis_error::unavailable:
            return issued ? fate::uncertain : fate::retry;
        case redis_error::timeout:
            return fate::uncertain;
    }
    return fate::uncertain;
}

}  // namespace

/// Loop thread only, except the atomics and the constants.
struct activity_exporter::state : std::enable_shared_from_this<state> {
    state(std::shared_ptr<redis_client> r, const activity_table& t, const redis_options& opts,
          handlers::service_loop& l, std::shared_ptr<spdlog::logger> lg)
        : redis(std::move(r)),
          table(t),
          loop(l),
          log(std::move(lg)),
          prefix(opts.key_prefix + "activity:"),
          last_seen_key(prefix + "last_seen"),
          interval_ms(static_cast<std::uint64_t>(
              std::max<std::int64_t>(0, opts.activity_interval.count()))),
          max_pending(opts.max_pending) {}

    /// A delta waiting for a later flush.
    struct carried {
        std::uint64_t requests = 0;
        std::uint64_t seen_ms = 0;  ///< Unix ms; 0: none
    };

    const std::shared_ptr<redis_client> redis;
    const activity_table& table;
    handlers::service_loop& loop;
    const std::shared_ptr<spdlog::logger> log;
    const std::string prefix;
    const std::string last_seen_key;
    const std::uint64_t interval_ms;
    const std::size_t max_pending;

    std::atomic<bool> stopped{false};
    std::uint64_t timer = 0;
    std::unordered_map<std::string, carried> carry;
    std::size_t cursor = 0;  ///< the table position the next flush starts from
    throttled_warning warn{log, "redis activity"};  ///< service loop only (a flush per interval)

    std::atomic<std::uint64_t> flushes_sent{0};
    std::atomic<std::uint64_t> flushes_idle{0};
    std::atomic<std::uint64_t> flushes_skipped{0};
    std::atomic<std::uint64_t> records_written{0};
    std::atomic<std::uint64_t> records_deferred{0};
    std::atomic<std::uint64_t> requests_written{0};
    std::atomic<std::uint64_t> requests_retried{0};
    std::atomic<std::uint64_t> requests_uncertain{0};
    std::atomic<std::uint64_t> requests_dropped{0};
    std::atomic<std::uint64_t> requests_carried{0};
    std::array<std::atomic<std::uint64_t>, redis_error_count> commands_failed{};

    void arm() {
        if (stopped || interval_ms == 0 || timer != 0) return;  // one timer, whatever calls
        timer = loop.start_timer(interval_ms, [s = shared_from_this()] { s->tick(); });
    }

    void disarm() noexcept {
        if (timer != 0) loop.cancel_timer(std::exchange(timer, 0));
    }

    void tick() {
        timer = 0;
        if (stopped) return;
        arm();
        try {
            flush();
        } catch (const std::exception& e) {
            warn("flush failed", e.what());
        }
    }

    void flush() {
        if (!redis->connected(redis_link::command)) {
            flushes_skipped++;  // the records keep counting; nothing is taken from them
            return;
        }
        flush_batch batch;
        batch.budget = record_budget();
        if (batch.budget == 0) {
            flushes_skipped++;
            return;
        }
        batch.unix_now = unix_ms();
        batch.steady_now = steady_ms();
        take_carried(batch);
        take_moved_rotating(batch);
        if (batch.items.empty()) {
            flushes_idle++;
            return;
        }
        issue(batch.items, batch.unix_now);
        flushes_sent++;
    }

    /// Resources this flush may write: its own bound, and half of the room max_pending leaves
    /// (the other half stays for the commands decisions wait for).
    [[nodiscard]] std::size_t record_budget() const {
        const auto pending = redis->stats().pending;
        const std::size_t room = pending < max_pending ? (max_pending - pending) / 2 : 0;
        if (room <= commands_per_flush) return 0;
        return std::min((room - commands_per_flush) / commands_per_record,
                        activity_max_records_per_flush);
    }

    void take_carried(flush_batch& batch) {
        for (auto it = carry.begin(); it != carry.end() && !batch.full();) {
            auto& item = batch.item_of(it->first);
            item.requests += it->second.requests;
            item.seen_ms = std::max(item.seen_ms, it->second.seen_ms);
            requests_carried -= it->second.requests;
            it = carry.erase(it);
        }
    }

    /// A full flush leaves the rest of the table for the next one, which starts where this one
    /// stopped (then wraps around), so that no resource waits behind others that keep moving.
    void take_moved_rotating(flush_batch& batch) {
        std::size_t stopped_at = take_moved(batch, cursor, no_position);
        if (cursor > 0 && stopped_at == no_position) stopped_at = take_moved(batch, 0, cursor);
        cursor = stopped_at == no_position ? 0 : stopped_at;
    }

    /// Takes what moved since the last flush in the records at positions [from, to) of the
    /// table's order and marks it exported: from here on the delta belongs to this flush (or to
    /// the carry, if its command comes back unsent). Returns the position of the first moved
    /// record left for later, or no_position.
    std::size_t take_moved(flush_batch& batch, std::size_t from, std::size_t to) {
        std::size_t position = 0;
        std::size_t left_at = no_position;
        table.for_each([&](const resource_activity& a) {
            const std::size_t at = position++;
            if (at < from || at >= to) return;
            const std::uint64_t decisions = a.decisions.load(std::memory_order_relaxed);
            const std::uint64_t seen = a.last_seen_ms.load(std::memory_order_relaxed);
            if (decisions == a.exported_decisions && seen == a.exported_seen_ms) return;
            std::string member = std::string(to_string(a.proto)) + ":" + a.id;
            if (batch.full() && !batch.index.contains(member)) {
                records_deferred++;
                left_at = std::min(left_at, at);
                return;
            }
            auto& item = batch.item_of(std::move(member));
            if (decisions > a.exported_decisions) item.requests += decisions - a.exported_decisions;
            if (seen != a.exported_seen_ms && seen != 0) {
                item.seen_ms =
                    std::max(item.seen_ms, to_unix(seen, batch.steady_now, batch.unix_now));
            }
            a.exported_decisions = decisions;
            a.exported_seen_ms = seen;
        });
        return left_at;
    }

    void issue(const std::vector<flush_item>& items, std::uint64_t unix_now) {
        auto marker = std::make_shared<flush_marker>();
        auto self = shared_from_this();
        const std::string ttl = std::to_string(key_ttl_ms);
        std::vector<std::string> zadd{"ZADD", last_seen_key, "GT"};
        auto scored = std::make_shared<std::vector<std::pair<std::string, std::uint64_t>>>();
        for (const auto& item : items) {
            if (item.requests > 0) {
                const std::string key = prefix + item.member;
                redis->command(
                    {"HINCRBY", key, "requests", std::to_string(item.requests)},
                    [self, marker, member = item.member, n = item.requests](redis_result r) {
                        self->counted(r, marker->issued, member, n);
                    });
                redis->command({"PEXPIRE", key, ttl},
                               [self](redis_result r) { self->failed(r, "PEXPIRE"); });
            }
            if (item.seen_ms > 0) {
                zadd.push_back(std::to_string(item.seen_ms));
                zadd.push_back(item.member);
                scored->emplace_back(item.member, item.seen_ms);
            }
        }
        if (!scored->empty()) {
            redis->command(std::move(zadd), [self, scored](redis_result r) {
                if (!self->failed(r, "ZADD")) return;
                // GT keeps the maximum: sending a score again never harms, whatever happened.
                for (const auto& [member, seen] : *scored)
                    self->carry_add(member, 0, seen);
            });
        }
        const std::uint64_t cutoff = unix_now > key_ttl_ms ? unix_now - key_ttl_ms : 0;
        redis->command({"ZREMRANGEBYSCORE", last_seen_key, "-inf", "(" + std::to_string(cutoff)},
                       [self](redis_result r) { self->failed(r, "ZREMRANGEBYSCORE"); });
        redis->command({"PEXPIRE", last_seen_key, ttl},
                       [self](redis_result r) { self->failed(r, "PEXPIRE"); });
        loop.post([marker](uv_loop_t*) { marker->issued = true; });
    }

    /// The answer to one HINCRBY of `n` requests of `member`.
    void counted(const redis_result& r, bool issued, const std::string& member, std::uint64_t n) {
        switch (fate_of(r, issued)) {
            case fate::written:
                records_written++;
                requests_written += n;
                return;
            case fate::retry:
                (void)failed(r, "HINCRBY");
                requests_retried += n;
                carry_add(member, n, 0);
                return;
            case fate::uncertain:
                (void)failed(r, "HINCRBY");
                requests_uncertain += n;
                warn("a count may or may not have reached Redis; not sent again",
                     to_string(*r.error));
                return;
        }
    }

    /// Counts and logs a failed command; false if it did not fail.
    bool failed(const redis_result& r, std::string_view command) {
        if (!r.error) return false;
        commands_failed[static_cast<std::size_t>(*r.error)]++;
        warn(std::string(command) + " failed", describe(r));
        return true;
    }

    void carry_add(const std::string& member, std::uint64_t requests, std::uint64_t seen) {
        auto it = carry.find(member);
        if (it == carry.end()) {
            if (carry.size() >= activity_max_carried) {
                requests_dropped += requests;
                warn("too many resources waiting for a retry, delta dropped", member);
                return;
            }
            it = carry.emplace(member, carried{}).first;
        }
        it->second.requests += requests;
        it->second.seen_ms = std::max(it->second.seen_ms, seen);
        requests_carried += requests;
    }
};

activity_exporter::activity_exporter(std::shared_ptr<redis_client> redis,
                                     const activity_table& table, const redis_options& opts,
                                     std::shared_ptr<handlers::service_loop> service,
                                     std::shared_ptr<spdlog::logger> log)
    : service_(std::move(service)),
      state_(std::make_shared<state>(std::move(redis), table, opts, *service_, std::move(log))) {}

activity_exporter::~activity_exporter() {
    state_->stopped = true;  // a timer already due flushes nothing
    service_->post([s = std::move(state_)](uv_loop_t*) { s->disarm(); });
}

void activity_exporter::start() {
    if (state_->interval_ms == 0) return;
    service_->post([s = state_](uv_loop_t*) { s->arm(); });
}

bool activity_exporter::flush_before_stop(std::chrono::milliseconds limit) {
    if (state_->interval_ms == 0) return true;  // activity is not written at all
    if (!state_->redis->connected(redis_link::command)) return false;
    state_->stopped = true;
    // Redis answers a connection's commands in order: the PING issued after the flush's
    // commands is answered after them.
    auto answered = std::make_shared<std::promise<bool>>();
    auto done = answered->get_future();
    service_->post([s = state_, answered](uv_loop_t*) {
        s->disarm();
        try {
            s->flush();
        } catch (const std::exception& e) {
            s->warn("flush failed", e.what());
        }
        s->redis->command({"PING"}, [answered](redis_result r) { answered->set_value(!r.error); });
    });
    if (done.wait_for(limit) != std::future_status::ready) return false;
    try {
        return done.get();
    } catch (const std::future_error&) {
        return false;  // the loop had stopped: the task was dropped unrun
    }
}

activity_export_stats activity_exporter::stats() const noexcept {
    const auto& s = *state_;
    activity_export_stats out;
    out.flushes_sent = s.flushes_sent.load();
    out.flushes_idle = s.flushes_idle.load();
    out.flushes_skipped = s.flushes_skipped.load();
    out.records_written = s.records_written.load();
    out.records_deferred = s.records_deferred.load();
    out.requests_written = s.requests_written.load();
    out.requests_retried = s.requests_retried.load();
    out.requests_uncertain = s.requests_uncertain.load();
    out.requests_dropped = s.requests_dropped.load();
    out.requests_carried = s.requests_carried.load();
    for (std::size_t i = 0; i < redis_error_count; ++i)
        out.commands_failed[i] = s.commands_failed[i].load();
    return out;
}

void activity_exporter::render_metrics(std::string& out) const {
    namespace prom = prometheus;
    const auto s = stats();
    prom::header(out, "spoa_redis_activity_flushes_total",
                 "Activity flushes: sent (commands issued), idle (nothing moved), skipped (Redis "
                 "down or max_pending reached; the counts wait in the table)",
                 "counter");
    const std::pair<std::string_view, std::uint64_t> flushes[] = {
        {"sent", s.flushes_sent}, {"idle", s.flushes_idle}, {"skipped", s.flushes_skipped}};
    for (const auto& [result, n] : flushes)
        prom::sample(out, "spoa_redis_activity_flushes_total",
                     "result=\"" + std::string(result) + "\"", n);
    prom::header(out, "spoa_redis_activity_records_written_total",
                 "Per-resource request counts Redis acknowledged", "counter");
    prom::sample(out, "spoa_redis_activity_records_written_total", "", s.records_written);
    prom::header(out, "spoa_redis_activity_records_deferred_total",
                 "Resources left for a later flush because a flush was full", "counter");
    prom::sample(out, "spoa_redis_activity_records_deferred_total", "", s.records_deferred);
    prom::header(out, "spoa_redis_activity_requests_total",
                 "Requests counted towards Redis, by outcome: written, retried (carried to a later "
                 "flush), uncertain (timed out or lost in flight, not resent), dropped",
                 "counter");
    const std::pair<std::string_view, std::uint64_t> outcomes[] = {
        {"written", s.requests_written},
        {"retried", s.requests_retried},
        {"uncertain", s.requests_uncertain},
        {"dropped", s.requests_dropped}};
    for (const auto& [outcome, n] : outcomes)
        prom::sample(out, "spoa_redis_activity_requests_total",
                     "outcome=\"" + std::string(outcome) + "\"", n);
    prom::header(out, "spoa_redis_activity_carried_requests",
                 "Requests waiting for a retry in the next flush", "gauge");
    prom::sample(out, "spoa_redis_activity_carried_requests", "", s.requests_carried);
    prom::header(out, "spoa_redis_activity_command_errors_total",
                 "Activity commands that failed, by reason", "counter");
    for (std::size_t i = 0; i < redis_error_count; ++i)
        prom::sample(out, "spoa_redis_activity_command_errors_total",
                     "reason=\"" + std::string(to_string(static_cast<redis_error>(i))) + "\"",
                     s.commands_failed[i]);
}

}  // namespace spoa::handlers::routing
