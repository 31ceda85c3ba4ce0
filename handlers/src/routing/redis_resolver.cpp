#include "spoa/handlers/routing/redis_resolver.hpp"

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

#include "spoa/handlers/routing/static_resolver.hpp"

namespace spoa::handlers::routing {
namespace {

enum class outcome : std::uint8_t { found, missing, malformed, failed };

struct answer {
    outcome kind;
    resolve_result result;
};

answer malformed_value(const std::string& key, const std::string& problem) {
    return {outcome::malformed,
            resolve_error{
                error_code::internal, "malformed route in Redis key " + key + ": " + problem, {}}};
}

/// The value of `key`, parsed by the static table's route parser (JSON is YAML).
answer parse_value(const std::string& key, const std::string& value) {
    try {
        auto entry = route_table::parse_entry(YAML::Load(value), key);
        return {outcome::found, std::visit([](auto e) -> resolve_result { return e; }, entry)};
    } catch (const YAML::Exception& e) {
        return malformed_value(key, "line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
    } catch (const std::runtime_error& e) {
        return malformed_value(key, e.what());
    }
}

/// What a failed GET means for the caller: never not_found.
answer redis_failure(const std::string& key, redis_error e, const std::string& text) {
    auto fail = [](error_code code, std::string reason) {
        return answer{outcome::failed, resolve_error{code, std::move(reason), {}}};
    };
    switch (e) {
        case redis_error::timeout:
            return fail(error_code::timeout, "Redis did not answer in time for " + key);
        case redis_error::unavailable:
            return fail(error_code::unavailable, "Redis unreachable: cannot read " + key);
        case redis_error::overloaded:
            return fail(error_code::unavailable, "Redis overloaded: too many commands pending");
        case redis_error::server:
            break;
    }
    return fail(error_code::unavailable, "Redis refused GET " + key + ": " + text);
}

answer answer_of(const std::string& key, const redis_result& r, std::size_t limit) {
    if (r.error) {
        // A key of another type is the platform's mistake, not an outage.
        if (*r.error == redis_error::server && r.text.starts_with("WRONGTYPE"))
            return malformed_value(key, "the key does not hold a string");
        return redis_failure(key, *r.error, r.text);
    }
    if (r.nil) {
        return {outcome::missing,
                resolve_error{error_code::not_found, "no route in Redis key " + key, {}}};
    }
    if (r.text.size() > limit) {
        return malformed_value(key, std::to_string(r.text.size()) + " bytes, over the limit of " +
                                        std::to_string(limit));
    }
    return parse_value(key, r.text);
}

}  // namespace

struct redis_resolver::state {
    std::shared_ptr<spdlog::logger> log;
    std::atomic<std::uint64_t> calls{0};
    std::atomic<std::uint64_t> errors{0};
    std::atomic<std::uint64_t> invalidations{0};
    std::atomic<std::uint64_t> outcomes[4] = {};  ///< by outcome

    void count(const answer& a) noexcept {
        outcomes[static_cast<std::size_t>(a.kind)].fetch_add(1, std::memory_order_relaxed);
        if (std::holds_alternative<resolve_error>(a.result))
            errors.fetch_add(1, std::memory_order_relaxed);
    }
    [[nodiscard]] std::uint64_t of(outcome kind) const noexcept {
        return outcomes[static_cast<std::size_t>(kind)].load(std::memory_order_relaxed);
    }

    std::mutex log_mutex;  ///< guards the two fields below
    std::chrono::steady_clock::time_point last_malformed_log{};
    std::uint64_t malformed_unlogged = 0;

    /// A platform writing a broken value for a busy id would otherwise log once per request.
    void log_malformed(const std::string& reason) {
        if (!log) return;
        const auto now = std::chrono::steady_clock::now();
        std::uint64_t left_out = 0;
        {
            std::lock_guard lock(log_mutex);
            if (last_malformed_log != std::chrono::steady_clock::time_point{} &&
                now - last_malformed_log < malformed_log_period) {
                ++malformed_unlogged;
                return;
            }
            last_malformed_log = now;
            left_out = std::exchange(malformed_unlogged, 0);
        }
        if (left_out == 0) {
            log->warn("redis resolver: {}", reason);
        } else {
            log->warn("redis resolver: {} ({} more malformed values since the last line)", reason,
                      left_out);
        }
    }
};

redis_resolver::redis_resolver(std::shared_ptr<redis_client> redis,
                               std::shared_ptr<spdlog::logger> log, std::size_t max_value_bytes)
    : redis_(std::move(redis)),
      max_value_bytes_(max_value_bytes),
      state_(std::make_shared<state>()) {
    if (!redis_) throw std::invalid_argument("redis_resolver needs a redis client");
    key_prefix_ = redis_->options().key_prefix;
    state_->log = std::move(log);
}

std::string redis_resolver::key_of(app_protocol p, std::string_view id) const {
    std::string key = key_prefix_;
    key.append("routes:").append(to_string(p)).append(":").append(id);
    return key;
}

void redis_resolver::resolve(const std::string& id, const resolve_context& ctx,
                             resolve_callback done) {
    state_->calls.fetch_add(1, std::memory_order_relaxed);
    auto key = key_of(ctx.proto, id);
    std::vector<std::string> args{"GET", key};
    redis_->command(std::move(args), [s = state_, key = std::move(key), limit = max_value_bytes_,
                                      done = std::move(done)](redis_result r) {
        auto a = answer_of(key, r, limit);
        s->count(a);
        if (a.kind == outcome::malformed)
            s->log_malformed(std::get<resolve_error>(a.result).reason);
        done(std::move(a.result));
    });
}

void redis_resolver::invalidate(const std::string& /*id*/) {
    state_->invalidations.fetch_add(1, std::memory_order_relaxed);
}

resolver_stats redis_resolver::stats() const {
    return {state_->calls.load(std::memory_order_relaxed),
            state_->errors.load(std::memory_order_relaxed),
            state_->invalidations.load(std::memory_order_relaxed)};
}

redis_resolver_stats redis_resolver::outcome_stats() const {
    return {state_->of(outcome::found), state_->of(outcome::missing),
            state_->of(outcome::malformed), state_->of(outcome::failed)};
}

}  // namespace spoa::handlers::routing
