#pragma once
/// The route cache shared by every loop thread: short TTL (milliseconds), negative caching of
/// not_found, single-flight (concurrent misses for one key make one resolver call; the other
/// requests wait on it), an entry limit with FIFO eviction, and explicit invalidation.
///
/// Each thread that peeks also keeps a small front table of what it found: a repeated hit is
/// answered from there without a lock or a write to memory another thread uses. A front entry
/// is valid until its TTL, and only while the cache's epoch is the one it was copied at: every
/// removal or replacement of an entry before its expiry (invalidation, eviction, a new answer
/// for a cached key) moves the epoch on. Expiry does not (a front copy expires with its entry),
/// so TTL refreshes leave the front tables alone.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "spoa/agent/ip_address.hpp"
#include "spoa/handlers/routing/resolver.hpp"

namespace spoa::handlers::routing {

class endpoint_state;

/// Milliseconds on the steady clock (the cache's time base).
[[nodiscard]] std::uint64_t steady_ms() noexcept;

/// Per-resource activity, kept across cache entries (scale-to-zero idle signal).
/// Ownership: shared by the router's activity_table and the cached routes of the resource.
/// Threads: loop threads count decisions into it with atomics; proto and id never change.
struct resource_activity {
    resource_activity(app_protocol p, std::string resource) : proto(p), id(std::move(resource)) {}
    const app_protocol proto;
    const std::string id;
    std::atomic<std::uint64_t> last_seen_ms{0};
    std::atomic<std::uint64_t> decisions{0};
    std::atomic<std::uint64_t> last_reported_ms{0};
    /// What of `decisions` and `last_seen_ms` the fleet's activity exporter has already handed to
    /// Redis (activity_exporter.hpp). Touched only by that exporter (one per table), on the
    /// service loop thread, under the activity table's lock; nothing else reads them. Kept in
    /// the record so that a record evicted and made again starts from zero with its counts.
    mutable std::uint64_t exported_decisions = 0;
    mutable std::uint64_t exported_seen_ms = 0;

    /// True for exactly one caller per `interval_ms` window. Loop threads pass their own
    /// clock readings, which can be a little behind the one that last reported: a reading
    /// older than the last report is inside its window, never a new one.
    bool claim_report(std::uint64_t now_ms, std::uint64_t interval_ms) {
        std::uint64_t last = last_reported_ms.load(std::memory_order_relaxed);
        do {
            if (last != 0 && now_ms < last + interval_ms) return false;
        } while (!last_reported_ms.compare_exchange_weak(last, now_ms));
        return true;
    }
};

/// An endpoint after SSRF validation: HAProxy is only ever given `address`.
struct checked_endpoint {
    ip_address address;
    std::uint16_t port = 0;
    std::string host;  ///< what the resolver returned (name or literal), for logs
    std::shared_ptr<endpoint_state> health;  ///< health and circuit of ip:port, if tracked
    /// What a cache hit on this endpoint answers before its cache label: the set-var actions
    /// of `address`, `port`, the route's metadata variables and the resource id, encoded once
    /// by the router (see checked_route::encoded_for) and appended as they are.
    std::vector<std::uint8_t> answer_actions;
    std::size_t answer_count = 0;  ///< actions in answer_actions
};

struct checked_path {
    std::string prefix;
    std::vector<checked_endpoint> endpoints;
};

/// A validated resolver answer, shared read-only between threads.
/// Ownership: built on the service loop (checked, then encoded by the router) and only then
/// published, as shared_ptr<const>, to the cache and to waiters; from then on nobody writes
/// it (a changed route is a new object), so loop threads read it without a lock.
struct checked_route {
    std::vector<checked_endpoint> endpoints;
    std::vector<checked_path> paths;
    std::map<std::string, std::string> metadata;
    backend_state state = backend_state::ready;
    std::optional<std::chrono::milliseconds> timeout;
    std::shared_ptr<resource_activity> activity;
    /// Set by the router once the endpoints' answer_actions are encoded.
    bool encoded = false;
    std::string encoded_for;  ///< the resource id answer_actions name
};

/// Someone waiting for a key being resolved.
///
/// Ownership: a waiter belongs to whoever holds its unique_ptr. lookup() takes it (on a miss)
/// under the shard's lock; from then on the thread that ends the flight (complete(), usually
/// the service loop) owns it, completes it and destroys it, possibly before lookup() has even
/// returned to its caller. The caller of lookup() must therefore put into the waiter everything
/// its completion needs before the call and never touch it afterwards; what the cache decides
/// about it (leader or joined) is written here by the cache, under the lock, and read by
/// complete()'s caller after taking the waiters under the same lock.
class cache_waiter {
  public:
    virtual ~cache_waiter() = default;
    /// Exactly one of route / error is set.
    virtual void complete(const std::shared_ptr<const checked_route>& route,
                          const std::shared_ptr<const resolve_error>& error) = 0;
    /// True when the waiter joined a flight another lookup had started (a coalesced miss).
    [[nodiscard]] bool joined() const noexcept { return joined_; }

  private:
    friend class route_cache;
    bool joined_ = false;
};

struct cache_options {
    std::chrono::milliseconds ttl{1000};
    std::chrono::milliseconds negative_ttl{5000};
    std::size_t max_entries = 100000;
    /// Seed of the key hash; 0 (the default): a random one per cache. Tests fix it to know
    /// which keys share a shard.
    std::uint64_t hash_seed = 0;
    /// The cache's time, steady-clock milliseconds; empty (the default): steady_ms. Tests set
    /// a clock they move by hand, so TTLs expire when the test says, not when the machine is
    /// slow. peek(key, now) takes the caller's time instead.
    std::function<std::uint64_t()> clock;
};

/// One key as the admin endpoint shows it (/explain, /routes): a copy, read under the shard's
/// lock without counting a hit or changing anything.
struct cache_entry {
    std::string key;                             ///< "<protocol>:<id>"
    std::shared_ptr<const checked_route> route;  ///< a cached route
    std::shared_ptr<const resolve_error> error;  ///< a cached refusal (negative entry)
    std::uint64_t stored_ms = 0;                 ///< the cache's clock when stored
    std::uint64_t expires_ms = 0;
    bool cached = false;     ///< false: only a resolve in flight
    bool in_flight = false;  ///< a resolver call for this key is running
};

struct cache_stats {
    std::uint64_t hits = 0;
    std::uint64_t negative_hits = 0;
    std::uint64_t misses = 0;     ///< lookups that started a resolver call
    std::uint64_t coalesced = 0;  ///< lookups that waited on another lookup's resolver call
    std::uint64_t evictions = 0;
    std::uint64_t expirations = 0;
    std::uint64_t invalidations = 0;
    std::uint64_t entries = 0;
    std::uint64_t inflight = 0;
};

class route_cache {
  public:
    explicit route_cache(cache_options opts);

    enum class lookup_status : std::uint8_t { hit, negative_hit, leader, joined, miss };
    struct lookup_result {
        lookup_status status;
        std::shared_ptr<const checked_route> route;  ///< hit
        std::shared_ptr<const resolve_error> error;  ///< negative_hit
    };

    /// What peek() found. The pointers are never null (they point to empty pointers on a miss)
    /// and point into the calling thread's front table: valid until that thread's next peek()
    /// on this cache.
    struct peek_result {
        lookup_status status;  ///< hit, negative_hit or miss
        const std::shared_ptr<const checked_route>* route;
        const std::shared_ptr<const resolve_error>* error;
    };
    /// A hit or negative hit, else `miss` (nothing recorded): lets the hot path find hits
    /// without creating a waiter first. Allocates nothing; a repeated hit takes no lock.
    [[nodiscard]] peek_result peek(std::string_view key);
    /// The same with the caller's clock (steady_clock milliseconds): no clock read.
    [[nodiscard]] peek_result peek(std::string_view key, std::uint64_t now_ms);

    /// On a hit the waiter is left alone. On a miss it is moved into the key's flight: `leader`
    /// means the caller must resolve and then call complete(); `joined` means someone else is.
    [[nodiscard]] lookup_result lookup(std::string_view key, std::unique_ptr<cache_waiter>& waiter);

    /// Ends the flight of `key`: caches the answer (routes for their TTL, not_found for the
    /// negative TTL or the resolver's retry hint; other errors are not cached) and returns the
    /// waiters, which the caller completes outside the cache lock.
    [[nodiscard]] std::vector<std::unique_ptr<cache_waiter>> complete(
        std::string_view key, std::shared_ptr<const checked_route> route,
        std::shared_ptr<const resolve_error> error,
        std::optional<std::chrono::milliseconds> ttl_override = std::nullopt);

    /// Stores a route outside of any flight (e.g. a backend that just became ready).
    void store(std::string_view key, std::shared_ptr<const checked_route> route,
               std::optional<std::chrono::milliseconds> ttl_override = std::nullopt);

    /// Drops the entry (an in-flight answer for it will not be stored). True if something was
    /// cached or in flight.
    bool invalidate(std::string_view key);
    /// Drops every entry whose key ends with `suffix` (e.g. ":tenant-a" across protocols).
    std::size_t invalidate_matching(std::string_view suffix);
    void clear();

    [[nodiscard]] cache_stats stats() const;
    [[nodiscard]] const cache_options& options() const noexcept { return opts_; }
    /// The entry of `key`, if cached or in flight (expired entries still show, with an
    /// expiry in the past, until something removes them).
    [[nodiscard]] std::optional<cache_entry> inspect(std::string_view key) const;
    /// Cached entries sorted by key, from `offset`, at most `limit`; `total` counts them all.
    /// Copies every entry under each shard's lock in turn: an admin call, not a hot path.
    [[nodiscard]] std::vector<cache_entry> entries(std::size_t offset, std::size_t limit,
                                                   std::size_t& total) const;
    /// The cache's clock (steady milliseconds, or the test clock).
    [[nodiscard]] std::uint64_t now_ms() const { return clock_now(); }

  private:
    struct slot {
        std::shared_ptr<const checked_route> route;
        std::shared_ptr<const resolve_error> error;
        std::uint64_t stored_ms = 0;
        std::uint64_t expires_ms = 0;
        bool cached = false;
        bool stale_flight = false;  ///< invalidated while resolving: do not store the answer
        std::vector<std::unique_ptr<cache_waiter>> waiters;  ///< non-empty = in flight
        std::list<std::string>::iterator order;              ///< position in `fifo` when cached
    };
    /// A key with its hash, computed once to pick the shard and reused by the shard's map.
    struct hashed_key {
        std::string_view key;
        std::size_t hash;
        friend bool operator==(const hashed_key& a, const std::string& b) noexcept {
            return a.key == b;
        }
    };
    /// Seeded per cache: keys come from clients (Host headers, SNI), and an unseeded hash
    /// would let them choose keys that all land in one bucket.
    struct key_hash {
        using is_transparent = void;
        std::uint64_t seed;
        std::size_t operator()(std::string_view s) const noexcept;
        std::size_t operator()(const hashed_key& k) const noexcept { return k.hash; }
    };
    /// One cache line apart, and hits counted under the shard's own lock: loop threads
    /// answering hits from different shards share nothing.
    struct alignas(64) shard {
        mutable std::mutex mutex;
        std::unordered_map<std::string, slot, key_hash, std::equal_to<>> map;
        std::list<std::string> fifo;  ///< cached keys, oldest first
        std::uint64_t evictions = 0;
        std::uint64_t expirations = 0;
        std::uint64_t hits = 0;
        std::uint64_t negative_hits = 0;
    };

    static constexpr std::size_t front_slots = 256;   ///< per thread, direct-mapped by hash
    static constexpr std::size_t front_key_max = 80;  ///< longer keys are not kept in front
    struct front_entry {
        std::uint64_t hash = 0;
        std::uint64_t epoch = 0;  ///< the cache's epoch when copied; 0: empty
        std::uint64_t expires_ms = 0;
        std::shared_ptr<const checked_route> route;
        std::shared_ptr<const resolve_error> error;
        std::size_t key_size = 0;
        char key[front_key_max];
    };
    /// One thread's front table. Only that thread writes it; stats() reads the counters.
    struct front_table {
        front_entry slots[front_slots];
        front_entry oversized;  ///< holds the answer to a key too long for the slots
        std::atomic<std::uint64_t> hits{0};
        std::atomic<std::uint64_t> negative_hits{0};
    };

    static constexpr std::size_t shard_count = 16;
    [[nodiscard]] shard& shard_for(std::string_view key) noexcept;
    /// Drops the cached answer of `sl`; one still valid at `now` moves the epoch on (`now` 0:
    /// always, for invalidations).
    void uncache(shard& s, slot& sl, std::uint64_t now) noexcept;
    void make_room(shard& s, std::uint64_t now);
    [[nodiscard]] front_table& front();
    [[nodiscard]] std::uint64_t clock_now() const {
        return opts_.clock ? opts_.clock() : steady_ms();
    }

    cache_options opts_;
    std::size_t per_shard_limit_;
    const std::uint64_t id_;  ///< unique per cache: whose front table a thread's pointer is
    const key_hash hash_;
    std::atomic<std::uint64_t> epoch_{1};
    shard shards_[shard_count];
    mutable std::mutex fronts_mutex_;
    std::vector<std::pair<std::thread::id, std::unique_ptr<front_table>>> fronts_;
    std::atomic<std::uint64_t> misses_{0};
    std::atomic<std::uint64_t> coalesced_{0};
    std::atomic<std::uint64_t> invalidations_{0};
};

/// now - then, or 0 when `then` is later: another thread may have stored a reading taken
/// after this thread's `now`, and an unsigned difference would make that an age of 584
/// million years.
[[nodiscard]] constexpr std::uint64_t ms_since(std::uint64_t now, std::uint64_t then) noexcept {
    return now > then ? now - then : 0;
}

}  // namespace spoa::handlers::routing
