#include "spoa/handlers/routing/route_cache.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <optional>
#include <random>

namespace spoa::handlers::routing {

namespace {

const std::shared_ptr<const checked_route> no_route;
const std::shared_ptr<const resolve_error> no_error;

std::atomic<std::uint64_t> next_cache_id{1};

std::uint64_t mix(std::uint64_t x) noexcept {
    x *= 0x9E3779B97F4A7C15ull;
    return x ^ (x >> 29);
}

std::uint64_t random_seed() {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
}

}  // namespace

std::size_t route_cache::key_hash::operator()(std::string_view s) const noexcept {
    // Eight bytes at a time: cache keys are short ("h:" and a host name), and this runs on
    // every routing decision.
    std::uint64_t h = seed ^ mix(s.size() + 1);
    const char* p = s.data();
    std::size_t n = s.size();
    for (; n >= 8; p += 8, n -= 8) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        h = mix(h ^ w);
    }
    std::uint64_t tail = 0;
    for (std::size_t i = 0; i < n; ++i)
        tail |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
    return mix(mix(h ^ tail));
}

std::uint64_t steady_ms() noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}

route_cache::route_cache(cache_options opts)
    : opts_(opts),
      per_shard_limit_(std::max<std::size_t>(1, opts.max_entries / shard_count)),
      id_(next_cache_id.fetch_add(1)),
      hash_{opts.hash_seed != 0 ? opts.hash_seed : random_seed()} {
    for (auto& s : shards_)
        s.map = decltype(s.map)(16, hash_);
}

route_cache::shard& route_cache::shard_for(std::string_view key) noexcept {
    return shards_[hash_(key) % shard_count];
}

void route_cache::uncache(shard& s, slot& sl, std::uint64_t now) noexcept {
    if (!sl.cached) return;
    if (sl.expires_ms > now) epoch_.fetch_add(1, std::memory_order_release);
    s.fifo.erase(sl.order);
    sl.cached = false;
    sl.route.reset();
    sl.error.reset();
}

route_cache::peek_result route_cache::peek(std::string_view key) {
    return peek(key, clock_now());
}

route_cache::front_table& route_cache::front() {
    thread_local std::uint64_t owner = 0;
    thread_local front_table* table = nullptr;
    if (owner == id_) return *table;
    // This thread's first peek on this cache (or on another cache since): find or make its
    // table. Cache ids are never reused, so a pointer left by a destroyed cache never matches.
    const auto me = std::this_thread::get_id();
    std::lock_guard lock(fronts_mutex_);
    front_table* mine = nullptr;
    for (const auto& [thread, t] : fronts_) {
        if (thread == me) mine = t.get();
    }
    if (!mine) mine = fronts_.emplace_back(me, std::make_unique<front_table>()).second.get();
    owner = id_;
    table = mine;
    return *mine;
}

route_cache::peek_result route_cache::peek(std::string_view key, std::uint64_t now) {
    const hashed_key k{key, hash_(key)};
    front_table& f = front();
    const bool keep = key.size() <= front_key_max;
    front_entry& e = keep ? f.slots[k.hash % front_slots] : f.oversized;
    if (keep && e.hash == k.hash && e.epoch == epoch_.load(std::memory_order_acquire) &&
        e.expires_ms > now && e.key_size == key.size() &&
        std::memcmp(e.key, key.data(), key.size()) == 0) {
        // Only this thread writes its counters: no atomic read-modify-write.
        auto& n = e.route ? f.hits : f.negative_hits;
        n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
        return {e.route ? lookup_status::hit : lookup_status::negative_hit, &e.route, &e.error};
    }
    shard& s = shards_[k.hash % shard_count];
    std::lock_guard lock(s.mutex);
    const auto it = s.map.find(k);
    if (it == s.map.end() || !it->second.cached || it->second.expires_ms <= now) {
        return {lookup_status::miss, &no_route, &no_error};
    }
    const slot& sl = it->second;
    ++(sl.route ? s.hits : s.negative_hits);
    // Copied with the epoch read under the shard's lock: a later removal of this entry (under
    // the same lock) moves the epoch past it.
    e.hash = k.hash;
    e.epoch = epoch_.load(std::memory_order_acquire);
    e.expires_ms = sl.expires_ms;
    e.route = sl.route;
    e.error = sl.error;
    if (keep) {
        e.key_size = key.size();
        std::memcpy(e.key, key.data(), key.size());
    }
    return {sl.route ? lookup_status::hit : lookup_status::negative_hit, &e.route, &e.error};
}

route_cache::lookup_result route_cache::lookup(std::string_view key,
                                               std::unique_ptr<cache_waiter>& waiter) {
    shard& s = shard_for(key);
    const std::uint64_t now = clock_now();
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(key);
    if (it != s.map.end()) {
        slot& sl = it->second;
        if (sl.cached && sl.expires_ms > now) {
            if (sl.route) {
                ++s.hits;
                return {lookup_status::hit, sl.route, nullptr};
            }
            ++s.negative_hits;
            return {lookup_status::negative_hit, nullptr, sl.error};
        }
        if (sl.cached) {
            ++s.expirations;
            uncache(s, sl, now);
        }
        if (!sl.waiters.empty()) {
            waiter->joined_ = true;
            sl.waiters.push_back(std::move(waiter));
            coalesced_.fetch_add(1, std::memory_order_relaxed);
            return {lookup_status::joined, nullptr, nullptr};
        }
        sl.waiters.push_back(std::move(waiter));
        misses_.fetch_add(1, std::memory_order_relaxed);
        return {lookup_status::leader, nullptr, nullptr};
    }
    slot& sl = s.map.emplace(std::string(key), slot{}).first->second;
    sl.waiters.push_back(std::move(waiter));
    misses_.fetch_add(1, std::memory_order_relaxed);
    return {lookup_status::leader, nullptr, nullptr};
}

void route_cache::make_room(shard& s, std::uint64_t now) {
    if (s.fifo.size() < per_shard_limit_) return;
    // Expired entries go first; then the oldest (FIFO: with TTLs of a second or so, the oldest
    // entry is close to the least recently useful one).
    for (auto it = s.fifo.begin(); it != s.fifo.end() && s.fifo.size() >= per_shard_limit_;) {
        auto m = s.map.find(*it);
        ++it;
        if (m != s.map.end() && m->second.expires_ms <= now) {
            ++s.expirations;
            uncache(s, m->second, now);
            if (m->second.waiters.empty()) s.map.erase(m);
        }
    }
    while (s.fifo.size() >= per_shard_limit_) {
        auto m = s.map.find(s.fifo.front());
        ++s.evictions;
        if (m == s.map.end()) {
            s.fifo.pop_front();
            continue;
        }
        uncache(s, m->second, now);
        if (m->second.waiters.empty()) s.map.erase(m);
    }
}

std::vector<std::unique_ptr<cache_waiter>> route_cache::complete(
    std::string_view key, std::shared_ptr<const checked_route> route,
    std::shared_ptr<const resolve_error> error,
    std::optional<std::chrono::milliseconds> ttl_override) {
    shard& s = shard_for(key);
    const std::uint64_t now = clock_now();
    std::vector<std::unique_ptr<cache_waiter>> waiters;
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(key);
    if (it == s.map.end()) return waiters;
    slot& sl = it->second;
    waiters.swap(sl.waiters);
    const bool stale = sl.stale_flight;
    sl.stale_flight = false;

    std::chrono::milliseconds ttl{0};
    if (route) {
        ttl = ttl_override.value_or(opts_.ttl);
    } else if (error && error->code == error_code::not_found) {
        ttl = error->retry_after.value_or(opts_.negative_ttl);
    }
    if (stale || ttl.count() <= 0) {
        if (!sl.cached) s.map.erase(it);
        return waiters;
    }
    uncache(s, sl, now);
    // make_room only walks cached keys, and this slot is not cached any more, so `sl` stays
    // valid (unordered_map nodes do not move).
    make_room(s, now);
    sl.route = std::move(route);
    sl.error = std::move(error);
    sl.stored_ms = now;
    sl.expires_ms = now + static_cast<std::uint64_t>(ttl.count());
    sl.cached = true;
    s.fifo.emplace_back(key);
    sl.order = std::prev(s.fifo.end());
    return waiters;
}

void route_cache::store(std::string_view key, std::shared_ptr<const checked_route> route,
                        std::optional<std::chrono::milliseconds> ttl_override) {
    const auto ttl = ttl_override.value_or(opts_.ttl);
    if (ttl.count() <= 0 || !route) return;
    shard& s = shard_for(key);
    const std::uint64_t now = clock_now();
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(key);
    if (it == s.map.end()) it = s.map.emplace(std::string(key), slot{}).first;
    slot& sl = it->second;
    uncache(s, sl, now);
    make_room(s, now);
    sl.route = std::move(route);
    sl.error.reset();
    sl.stored_ms = now;
    sl.expires_ms = now + static_cast<std::uint64_t>(ttl.count());
    sl.cached = true;
    s.fifo.emplace_back(key);
    sl.order = std::prev(s.fifo.end());
}

bool route_cache::invalidate(std::string_view key) {
    shard& s = shard_for(key);
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(key);
    if (it == s.map.end()) return false;
    invalidations_.fetch_add(1, std::memory_order_relaxed);
    slot& sl = it->second;
    uncache(s, sl, 0);
    if (sl.waiters.empty()) {
        s.map.erase(it);
    } else {
        sl.stale_flight = true;
    }
    return true;
}

std::size_t route_cache::invalidate_matching(std::string_view suffix) {
    std::size_t n = 0;
    for (auto& s : shards_) {
        std::lock_guard lock(s.mutex);
        for (auto it = s.map.begin(); it != s.map.end();) {
            if (!std::string_view(it->first).ends_with(suffix)) {
                ++it;
                continue;
            }
            ++n;
            uncache(s, it->second, 0);
            if (it->second.waiters.empty()) {
                it = s.map.erase(it);
            } else {
                it->second.stale_flight = true;
                ++it;
            }
        }
    }
    invalidations_.fetch_add(n, std::memory_order_relaxed);
    return n;
}

void route_cache::clear() {
    for (auto& s : shards_) {
        std::lock_guard lock(s.mutex);
        for (auto it = s.map.begin(); it != s.map.end();) {
            uncache(s, it->second, 0);
            if (it->second.waiters.empty()) {
                it = s.map.erase(it);
            } else {
                it->second.stale_flight = true;
                ++it;
            }
        }
    }
}

std::optional<cache_entry> route_cache::inspect(std::string_view key) const {
    const shard& s = shards_[hash_(key) % shard_count];
    std::lock_guard lock(s.mutex);
    const auto it = s.map.find(key);
    if (it == s.map.end()) return std::nullopt;
    const slot& sl = it->second;
    return cache_entry{std::string(key),
                       sl.cached ? sl.route : nullptr,
                       sl.cached ? sl.error : nullptr,
                       sl.stored_ms,
                       sl.expires_ms,
                       sl.cached,
                       !sl.waiters.empty()};
}

std::vector<cache_entry> route_cache::entries(std::size_t offset, std::size_t limit,
                                              std::size_t& total) const {
    std::vector<cache_entry> all;
    for (const shard& s : shards_) {
        std::lock_guard lock(s.mutex);
        for (const auto& [key, sl] : s.map) {
            if (sl.cached)
                all.push_back({key, sl.route, sl.error, sl.stored_ms, sl.expires_ms, true,
                               !sl.waiters.empty()});
        }
    }
    total = all.size();
    std::sort(all.begin(), all.end(),
              [](const cache_entry& a, const cache_entry& b) { return a.key < b.key; });
    if (offset >= all.size()) return {};
    const auto first = all.begin() + static_cast<std::ptrdiff_t>(offset);
    const auto last =
        all.begin() + static_cast<std::ptrdiff_t>(std::min(all.size(), offset + limit));
    return {std::make_move_iterator(first), std::make_move_iterator(last)};
}

cache_stats route_cache::stats() const {
    cache_stats st;
    st.misses = misses_.load(std::memory_order_relaxed);
    st.coalesced = coalesced_.load(std::memory_order_relaxed);
    st.invalidations = invalidations_.load(std::memory_order_relaxed);
    for (const auto& s : shards_) {
        std::lock_guard lock(s.mutex);
        st.entries += s.fifo.size();
        st.evictions += s.evictions;
        st.hits += s.hits;
        st.negative_hits += s.negative_hits;
        st.expirations += s.expirations;
        for (const auto& [k, v] : s.map) {
            if (!v.waiters.empty()) ++st.inflight;
        }
    }
    std::lock_guard lock(fronts_mutex_);
    for (const auto& [thread, f] : fronts_) {
        st.hits += f->hits.load(std::memory_order_relaxed);
        st.negative_hits += f->negative_hits.load(std::memory_order_relaxed);
    }
    return st;
}

}  // namespace spoa::handlers::routing
