// Route cache: hits, misses and expiry by TTL, negative caching of not_found (and only of it),
// single-flight across threads, invalidation during a flight, FIFO eviction and the counters.

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "spoa/handlers/routing/route_cache.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace std::chrono_literals;
using status = route_cache::lookup_status;

/// Records what it was completed with; counts completions in a shared counter too.
struct recording_waiter final : cache_waiter {
    explicit recording_waiter(std::atomic<int>* total = nullptr) : total_(total) {}
    void complete(const std::shared_ptr<const checked_route>& r,
                  const std::shared_ptr<const resolve_error>& e) override {
        ++calls;
        route = r;
        error = e;
        if (total_) total_->fetch_add(1);
    }
    int calls = 0;
    std::shared_ptr<const checked_route> route;
    std::shared_ptr<const resolve_error> error;

  private:
    std::atomic<int>* total_;
};

std::shared_ptr<const checked_route> make_route(std::uint16_t port) {
    auto r = std::make_shared<checked_route>();
    checked_endpoint ep;
    ep.address = *ip_address::parse("10.0.0.1");
    ep.port = port;
    ep.host = "10.0.0.1";
    r->endpoints.push_back(ep);
    return r;
}

std::shared_ptr<const resolve_error> make_error(
    error_code code, std::optional<std::chrono::milliseconds> retry = {}) {
    return std::make_shared<resolve_error>(
        resolve_error{code, std::string(to_string(code)) + " for the test", retry});
}

std::unique_ptr<cache_waiter> waiter(std::atomic<int>* total = nullptr) {
    return std::make_unique<recording_waiter>(total);
}

/// lookup() as the leader, then complete() with the answer; returns the waiters handed back.
std::size_t fill(route_cache& c, const std::string& key, std::shared_ptr<const checked_route> route,
                 std::shared_ptr<const resolve_error> error = nullptr,
                 std::optional<std::chrono::milliseconds> ttl = std::nullopt) {
    auto w = waiter();
    const auto r = c.lookup(key, w);
    REQUIRE(r.status == status::leader);
    REQUIRE(w == nullptr);  // taken into the flight
    auto waiters = c.complete(key, std::move(route), std::move(error), ttl);
    for (auto& x : waiters)
        x->complete(nullptr, nullptr);
    return waiters.size();
}

/// The clock of every cache in these tests: time moves only when a test advances it, so a
/// TTL case checks the same thing on a loaded machine as on an idle one.
struct manual_clock {
    std::atomic<std::uint64_t> now_ms{1'000'000};
    void advance(std::chrono::milliseconds d) {
        now_ms.fetch_add(static_cast<std::uint64_t>(d.count()));
    }
};
manual_clock test_clock;

cache_options opts(std::chrono::milliseconds ttl, std::chrono::milliseconds negative_ttl,
                   std::size_t max_entries = 100000) {
    cache_options o;
    o.ttl = ttl;
    o.negative_ttl = negative_ttl;
    o.max_entries = max_entries;
    o.hash_seed = 42;  // the same shards in every cache (same_shard_keys)
    o.clock = [] { return test_clock.now_ms.load(); };
    return o;
}

}  // namespace

TEST_CASE("route cache: miss, hit, then expiry after the TTL", "[cache]") {
    route_cache c(opts(30ms, 30ms));
    CHECK(c.options().ttl == 30ms);

    CHECK(c.peek("http:a").status == status::miss);
    CHECK(c.stats().misses == 0);  // peek records nothing

    const auto route = make_route(8080);
    auto w = waiter();
    auto* raw = static_cast<recording_waiter*>(w.get());
    auto r = c.lookup("http:a", w);
    CHECK(r.status == status::leader);
    CHECK(r.route == nullptr);
    CHECK(w == nullptr);
    CHECK(c.stats().inflight == 1);
    CHECK(c.stats().entries == 0);
    CHECK(c.peek("http:a").status == status::miss);  // in flight is not cached

    auto waiters = c.complete("http:a", route, nullptr);
    const auto p = c.peek("http:a");
    auto w2 = waiter();
    const auto l = c.lookup("http:a", w2);
    auto st = c.stats();

    REQUIRE(waiters.size() == 1);
    CHECK(waiters[0].get() == raw);
    waiters[0]->complete(route, nullptr);
    CHECK(raw->calls == 1);
    CHECK(raw->route == route);

    CHECK(p.status == status::hit);
    CHECK(*p.route == route);  // the very object, shared
    CHECK(*p.error == nullptr);
    CHECK(l.status == status::hit);
    CHECK(l.route == route);
    CHECK(w2 != nullptr);  // a hit leaves the waiter with the caller

    CHECK(st.hits == 2);
    CHECK(st.misses == 1);
    CHECK(st.entries == 1);
    CHECK(st.inflight == 0);
    CHECK(st.expirations == 0);

    // Other keys are independent.
    CHECK(c.peek("http:b").status == status::miss);
    CHECK(c.peek("postgres:a").status == status::miss);

    test_clock.advance(60ms);
    CHECK(c.peek("http:a").status == status::miss);
    auto w3 = waiter();
    CHECK(c.lookup("http:a", w3).status == status::leader);  // expired: a new flight
    st = c.stats();
    CHECK(st.expirations == 1);
    CHECK(st.misses == 2);
    CHECK(st.hits == 2);
    CHECK(st.entries == 0);
    CHECK(st.inflight == 1);
    CHECK(c.complete("http:a", route, nullptr).size() == 1);
    const auto refreshed = c.peek("http:a").status;
    CHECK(refreshed == status::hit);
}

TEST_CASE("route cache: a route's TTL override", "[cache]") {
    route_cache c(opts(10s, 10s));
    fill(c, "http:long", make_route(2));
    fill(c, "http:zero", make_route(3), nullptr, 0ms);  // not cached at all
    fill(c, "http:neg", make_route(4), nullptr, -5ms);  // not cached either
    fill(c, "http:short", make_route(1), nullptr, 30ms);
    const auto short_status = c.peek("http:short").status;
    CHECK(short_status == status::hit);
    CHECK(c.peek("http:zero").status == status::miss);
    CHECK(c.peek("http:neg").status == status::miss);
    CHECK(c.stats().entries == 2);
    test_clock.advance(60ms);
    CHECK(c.peek("http:short").status == status::miss);
    CHECK(c.peek("http:long").status == status::hit);

    // A TTL longer than the default is honoured too.
    route_cache d(opts(30ms, 30ms));
    fill(d, "http:x", make_route(1), nullptr, 10s);
    test_clock.advance(60ms);
    CHECK(d.peek("http:x").status == status::hit);
}

TEST_CASE("route cache: not_found is cached for the negative TTL", "[cache]") {
    route_cache c(opts(10s, 30ms));
    const auto nf = make_error(error_code::not_found);
    fill(c, "http:gone", nullptr, nf);
    const auto p = c.peek("http:gone");
    auto w = waiter();
    const auto l = c.lookup("http:gone", w);
    auto st = c.stats();
    CHECK(p.status == status::negative_hit);
    CHECK(*p.route == nullptr);
    CHECK(*p.error == nf);
    CHECK(l.status == status::negative_hit);
    CHECK(l.error == nf);
    CHECK(w != nullptr);
    CHECK(st.negative_hits == 2);
    CHECK(st.hits == 0);
    CHECK(st.entries == 1);

    test_clock.advance(60ms);
    CHECK(c.peek("http:gone").status == status::miss);
}

TEST_CASE("route cache: the resolver's retry hint replaces the negative TTL", "[cache]") {
    SECTION("shorter hint") {
        route_cache c(opts(10s, 10s));
        fill(c, "http:a", nullptr, make_error(error_code::not_found, 30ms));
        const auto first = c.peek("http:a").status;
        CHECK(first == status::negative_hit);
        test_clock.advance(60ms);
        CHECK(c.peek("http:a").status == status::miss);
    }
    SECTION("longer hint") {
        route_cache c(opts(10s, 30ms));
        fill(c, "http:a", nullptr, make_error(error_code::not_found, 10s));
        test_clock.advance(60ms);
        CHECK(c.peek("http:a").status == status::negative_hit);
    }
    SECTION("zero hint: not cached") {
        route_cache c(opts(10s, 10s));
        fill(c, "http:a", nullptr, make_error(error_code::not_found, 0ms));
        CHECK(c.peek("http:a").status == status::miss);
        CHECK(c.stats().entries == 0);
    }
    SECTION("the route TTL override does not apply to errors") {
        route_cache c(opts(10s, 30ms));
        fill(c, "http:a", nullptr, make_error(error_code::not_found), 10s);
        test_clock.advance(60ms);
        CHECK(c.peek("http:a").status == status::miss);
    }
}

TEST_CASE("route cache: errors other than not_found are not cached", "[cache]") {
    for (const auto code : {error_code::forbidden, error_code::unavailable, error_code::timeout,
                            error_code::internal}) {
        INFO(to_string(code));
        route_cache c(opts(10s, 10s));
        std::atomic<int> completed{0};
        auto w1 = waiter(&completed);
        auto w2 = waiter(&completed);
        CHECK(c.lookup("tcp:x", w1).status == status::leader);
        CHECK(c.lookup("tcp:x", w2).status == status::joined);
        // Even with a retry hint, and even with a TTL override.
        auto waiters = c.complete("tcp:x", nullptr, make_error(code, 10s), 10s);
        CHECK(waiters.size() == 2);
        CHECK(c.peek("tcp:x").status == status::miss);
        const auto st = c.stats();
        CHECK(st.entries == 0);
        CHECK(st.inflight == 0);
        // Nothing is left behind: the next lookup leads a new flight.
        auto w3 = waiter();
        CHECK(c.lookup("tcp:x", w3).status == status::leader);
        CHECK_FALSE(c.complete("tcp:x", nullptr, make_error(code)).empty());
        CHECK_FALSE(c.invalidate("tcp:x"));  // nothing cached, nothing in flight
    }
}

TEST_CASE("route cache: a fresh answer replaces an expired negative one", "[cache]") {
    route_cache c(opts(10s, 30ms));
    fill(c, "http:a", nullptr, make_error(error_code::not_found));
    test_clock.advance(60ms);
    fill(c, "http:a", make_route(80));
    const auto p = c.peek("http:a");
    CHECK(p.status == status::hit);
    CHECK((*p.route)->endpoints.at(0).port == 80);
    CHECK(c.stats().entries == 1);
    CHECK(c.stats().expirations == 1);
}

TEST_CASE("route cache: complete() without a flight stores nothing", "[cache]") {
    route_cache c(opts(10s, 10s));
    CHECK(c.complete("http:nobody", make_route(1), nullptr).empty());
    CHECK(c.peek("http:nobody").status == status::miss);
    CHECK(c.stats().entries == 0);
}

TEST_CASE("route cache: single flight across threads", "[cache][threads]") {
    constexpr int threads = 8;
    constexpr int per_thread = 16;
    constexpr int total = threads * per_thread;
    route_cache c(opts(10s, 10s));
    std::atomic<int> leaders{0};
    std::atomic<int> joined{0};
    std::atomic<int> other{0};
    std::atomic<int> completed{0};
    std::vector<recording_waiter*> raws(total);
    std::barrier start(threads);
    {
        std::vector<std::jthread> pool;
        for (int t = 0; t < threads; ++t) {
            pool.emplace_back([&, t] {
                start.arrive_and_wait();
                for (int i = 0; i < per_thread; ++i) {
                    auto w = waiter(&completed);
                    raws[static_cast<std::size_t>(t * per_thread + i)] =
                        static_cast<recording_waiter*>(w.get());
                    const auto r = c.lookup("http:hot", w);
                    if (r.status == status::leader)
                        ++leaders;
                    else if (r.status == status::joined)
                        ++joined;
                    else
                        ++other;
                }
            });
        }
    }
    CHECK(leaders == 1);
    CHECK(joined == total - 1);
    CHECK(other == 0);
    auto st = c.stats();
    CHECK(st.misses == 1);
    CHECK(st.coalesced == static_cast<std::uint64_t>(total - 1));
    CHECK(st.inflight == 1);

    const auto route = make_route(443);
    auto waiters = c.complete("http:hot", route, nullptr);
    REQUIRE(waiters.size() == static_cast<std::size_t>(total));
    for (auto& w : waiters)
        w->complete(route, nullptr);
    CHECK(completed == total);
    // Every waiter handed in came back exactly once.
    std::vector<recording_waiter*> back;
    for (auto& w : waiters)
        back.push_back(static_cast<recording_waiter*>(w.get()));
    std::sort(back.begin(), back.end());
    std::sort(raws.begin(), raws.end());
    CHECK(back == raws);
    for (auto* w : back) {
        CHECK(w->calls == 1);
        CHECK(w->route == route);
    }
    // A second complete() finds no flight.
    CHECK(c.complete("http:hot", route, nullptr).empty());
    st = c.stats();
    CHECK(st.inflight == 0);
    CHECK(st.entries == 1);
    CHECK(*c.peek("http:hot").route == route);
}

TEST_CASE("route cache: the cache marks which waiters joined a flight", "[cache]") {
    // The router reads the role from the waiter it gets back from complete() (on the thread
    // that ends the flight), never from the caller of lookup(), which no longer owns it.
    route_cache c(opts(10s, 10s));
    auto first = waiter();
    auto second = waiter();
    auto third = waiter();
    const cache_waiter* leader = first.get();
    CHECK(c.lookup("http:roles", first).status == status::leader);
    CHECK(c.lookup("http:roles", second).status == status::joined);
    CHECK(c.lookup("http:roles", third).status == status::joined);
    CHECK_FALSE(first);  // taken by the cache
    const auto back = c.complete("http:roles", make_route(80), nullptr);
    REQUIRE(back.size() == 3);
    for (const auto& w : back)
        CHECK(w->joined() == (w.get() != leader));
    // A waiter refused on a hit stays with its caller, unmarked.
    auto late = waiter();
    CHECK(c.lookup("http:roles", late).status == status::hit);
    REQUIRE(late);
    CHECK_FALSE(late->joined());
}

TEST_CASE("route cache: lookups racing with complete() are each answered once",
          "[cache][threads]") {
    constexpr int threads = 6;
    constexpr int per_thread = 200;
    route_cache c(opts(10s, 10s));
    std::atomic<int> leaders{0};
    std::atomic<int> joined{0};
    std::atomic<int> hits{0};
    std::atomic<int> other{0};
    std::atomic<int> completed{0};
    std::atomic<bool> leader_seen{false};
    std::barrier start(threads + 1);
    const auto route = make_route(1);
    std::vector<std::unique_ptr<cache_waiter>> returned;
    {
        std::vector<std::jthread> pool;
        for (int t = 0; t < threads; ++t) {
            pool.emplace_back([&] {
                start.arrive_and_wait();
                for (int i = 0; i < per_thread; ++i) {
                    auto w = waiter(&completed);
                    const auto r = c.lookup("pg:db", w);
                    switch (r.status) {
                        case status::leader:
                            ++leaders;
                            leader_seen = true;
                            break;
                        case status::joined:
                            ++joined;
                            break;
                        case status::hit:
                            ++hits;
                            break;
                        default:
                            ++other;  // (Catch2 assertions are not thread-safe)
                            break;
                    }
                }
            });
        }
        start.arrive_and_wait();
        while (!leader_seen)
            std::this_thread::yield();
        returned = c.complete("pg:db", route, nullptr);
    }
    for (auto& w : returned)
        w->complete(route, nullptr);
    CHECK(leaders == 1);
    CHECK(other == 0);
    CHECK(leaders + joined + hits == threads * per_thread);
    CHECK(returned.size() == static_cast<std::size_t>(leaders + joined));
    CHECK(completed == leaders + joined);
    const auto st = c.stats();
    CHECK(st.misses == 1);
    CHECK(st.coalesced == static_cast<std::uint64_t>(joined.load()));
    CHECK(st.hits == static_cast<std::uint64_t>(hits.load()));
}

TEST_CASE("route cache: invalidate during a flight keeps the answer out", "[cache]") {
    route_cache c(opts(10s, 10s));
    std::atomic<int> completed{0};
    auto w1 = waiter(&completed);
    CHECK(c.lookup("http:a", w1).status == status::leader);
    CHECK(c.invalidate("http:a"));
    CHECK(c.stats().invalidations == 1);
    CHECK(c.stats().inflight == 1);  // the flight itself goes on
    // A lookup while the invalidated flight is out waits on it.
    auto w2 = waiter(&completed);
    CHECK(c.lookup("http:a", w2).status == status::joined);

    auto waiters = c.complete("http:a", make_route(1), nullptr);
    CHECK(waiters.size() == 2);  // everyone waiting is still answered
    for (auto& w : waiters)
        w->complete(nullptr, nullptr);
    CHECK(completed == 2);
    CHECK(c.peek("http:a").status == status::miss);  // but the answer was not stored
    auto st = c.stats();
    CHECK(st.entries == 0);
    CHECK(st.inflight == 0);

    // The next flight is a normal one again.
    fill(c, "http:a", make_route(2));
    CHECK(c.peek("http:a").status == status::hit);
    CHECK((*c.peek("http:a").route)->endpoints.at(0).port == 2);
}

TEST_CASE("route cache: invalidate drops a cached entry", "[cache]") {
    route_cache c(opts(10s, 10s));
    fill(c, "http:a", make_route(1));
    fill(c, "http:b", nullptr, make_error(error_code::not_found));
    CHECK(c.stats().entries == 2);
    CHECK(c.invalidate("http:a"));
    CHECK(c.invalidate("http:b"));
    CHECK_FALSE(c.invalidate("http:a"));
    CHECK_FALSE(c.invalidate("http:never"));
    CHECK(c.peek("http:a").status == status::miss);
    CHECK(c.peek("http:b").status == status::miss);
    const auto st = c.stats();
    CHECK(st.entries == 0);
    CHECK(st.invalidations == 2);
}

TEST_CASE("route cache: invalidate_matching drops every key with the suffix", "[cache]") {
    route_cache c(opts(10s, 10s));
    fill(c, "http:tenant-a", make_route(1));
    fill(c, "postgres:tenant-a", make_route(2));
    fill(c, "tls:tenant-a", nullptr, make_error(error_code::not_found));
    fill(c, "http:tenant-b", make_route(3));
    fill(c, "http:tenant-a.example", make_route(4));  // suffix does not match
    auto w = waiter();
    CHECK(c.lookup("tcp:tenant-a", w).status == status::leader);  // in flight

    CHECK(c.invalidate_matching(":tenant-a") == 4);
    CHECK(c.stats().invalidations == 4);
    CHECK(c.peek("http:tenant-a").status == status::miss);
    CHECK(c.peek("postgres:tenant-a").status == status::miss);
    CHECK(c.peek("tls:tenant-a").status == status::miss);
    CHECK(c.peek("http:tenant-b").status == status::hit);
    CHECK(c.peek("http:tenant-a.example").status == status::hit);
    CHECK(c.stats().entries == 2);

    // The in-flight answer is handed to its waiter but not stored.
    CHECK(c.complete("tcp:tenant-a", make_route(5), nullptr).size() == 1);
    CHECK(c.peek("tcp:tenant-a").status == status::miss);
    CHECK(c.invalidate_matching(":nothing") == 0);
}

TEST_CASE("route cache: clear() drops everything, in-flight answers are not stored", "[cache]") {
    route_cache c(opts(10s, 10s));
    fill(c, "http:a", make_route(1));
    fill(c, "http:b", make_route(2));
    auto w = waiter();
    CHECK(c.lookup("http:c", w).status == status::leader);
    c.clear();
    CHECK(c.stats().entries == 0);
    CHECK(c.stats().inflight == 1);
    CHECK(c.complete("http:c", make_route(3), nullptr).size() == 1);
    CHECK(c.peek("http:a").status == status::miss);
    CHECK(c.peek("http:c").status == status::miss);
    CHECK(c.stats().inflight == 0);
}

namespace {

/// Keys that share one shard of the cache, found through the public API only: with one entry
/// per shard (max_entries 16), caching a second key of the same shard evicts the first.
std::vector<std::string> same_shard_keys(std::size_t n) {
    std::vector<std::string> keys{"http:k0"};
    for (int i = 1; keys.size() < n && i < 100000; ++i) {
        route_cache probe(opts(10s, 10s, 16));
        fill(probe, keys[0], make_route(1));
        const std::string candidate = "http:k" + std::to_string(i);
        fill(probe, candidate, make_route(2));
        if (probe.peek(keys[0]).status == status::miss) keys.push_back(candidate);
    }
    REQUIRE(keys.size() == n);
    return keys;
}

}  // namespace

TEST_CASE("route cache: FIFO eviction beyond max_entries", "[cache]") {
    // 32 entries over 16 shards: two per shard.
    const auto keys = same_shard_keys(6);
    route_cache c(opts(10s, 10s, 32));
    for (std::size_t i = 0; i < 5; ++i)
        fill(c, keys[i], make_route(static_cast<std::uint16_t>(i + 1)));
    auto st = c.stats();
    CHECK(st.evictions == 3);
    CHECK(st.entries == 2);
    CHECK(st.expirations == 0);
    CHECK(c.peek(keys[0]).status == status::miss);
    CHECK(c.peek(keys[1]).status == status::miss);
    CHECK(c.peek(keys[2]).status == status::miss);
    CHECK(c.peek(keys[3]).status == status::hit);
    CHECK(c.peek(keys[4]).status == status::hit);
    // FIFO, not LRU: the hits on keys[3] do not protect it.
    fill(c, keys[5], make_route(6));
    CHECK(c.peek(keys[3]).status == status::miss);
    CHECK(c.peek(keys[4]).status == status::hit);
    CHECK(c.peek(keys[5]).status == status::hit);
    st = c.stats();
    CHECK(st.evictions == 4);
    CHECK(st.entries == 2);
}

TEST_CASE("route cache: expired entries make room before live ones are evicted", "[cache]") {
    const auto keys = same_shard_keys(3);
    route_cache c(opts(10s, 10s, 32));
    fill(c, keys[0], make_route(1), nullptr, 30ms);  // oldest, expires soon
    fill(c, keys[1], make_route(2));
    test_clock.advance(60ms);
    fill(c, keys[2], make_route(3));
    const auto st = c.stats();
    CHECK(st.expirations == 1);
    CHECK(st.evictions == 0);
    CHECK(st.entries == 2);
    CHECK(c.peek(keys[1]).status == status::hit);
    CHECK(c.peek(keys[2]).status == status::hit);
}

TEST_CASE("route cache: the number of entries stays within max_entries", "[cache]") {
    route_cache c(opts(10s, 10s, 64));
    constexpr std::size_t inserted = 1000;
    for (std::size_t i = 0; i < inserted; ++i)
        fill(c, "http:host" + std::to_string(i), make_route(1));
    const auto st = c.stats();
    CHECK(st.entries <= 64);
    CHECK(st.entries > 0);
    CHECK(st.evictions + st.entries == inserted);
    CHECK(st.misses == inserted);
    // The last key is always still there (eviction takes the oldest).
    CHECK(c.peek("http:host999").status == status::hit);
}

TEST_CASE("route cache: stats add up", "[cache]") {
    route_cache c(opts(10s, 10s));
    const auto zero = c.stats();
    CHECK(zero.hits == 0);
    CHECK(zero.negative_hits == 0);
    CHECK(zero.misses == 0);
    CHECK(zero.coalesced == 0);
    CHECK(zero.evictions == 0);
    CHECK(zero.expirations == 0);
    CHECK(zero.invalidations == 0);
    CHECK(zero.entries == 0);
    CHECK(zero.inflight == 0);

    fill(c, "http:a", make_route(1));                               // miss 1
    fill(c, "http:b", nullptr, make_error(error_code::not_found));  // miss 2
    auto w1 = waiter();
    auto w2 = waiter();
    CHECK(c.lookup("http:c", w1).status == status::leader);  // miss 3
    CHECK(c.lookup("http:c", w2).status == status::joined);  // coalesced 1
    (void)c.peek("http:a");                                  // hit 1
    (void)c.peek("http:b");                                  // negative 1
    auto w3 = waiter();
    (void)c.lookup("http:a", w3);   // hit 2
    (void)c.peek("http:zzz");       // nothing
    CHECK(c.invalidate("http:a"));  // invalidation 1

    const auto st = c.stats();
    CHECK(st.hits == 2);
    CHECK(st.negative_hits == 1);
    CHECK(st.misses == 3);
    CHECK(st.coalesced == 1);
    CHECK(st.invalidations == 1);
    CHECK(st.entries == 1);
    CHECK(st.inflight == 1);
    CHECK(st.evictions == 0);
    CHECK(st.expirations == 0);
    CHECK(c.complete("http:c", nullptr, make_error(error_code::timeout)).size() == 2);
    CHECK(c.stats().inflight == 0);
}

TEST_CASE("route cache: steady_ms moves forward", "[cache]") {
    const auto a = steady_ms();
    std::this_thread::sleep_for(5ms);
    const auto b = steady_ms();
    CHECK(b >= a + 5);
}

// ---- the per-thread front tables ----------------------------------------------------------------

TEST_CASE("route cache: repeated hits from a thread's front table see every removal at once",
          "[cache][front]") {
    route_cache c(opts(10s, 10s));
    const auto first = make_route(1);
    fill(c, "http:a", first);
    for (int i = 0; i < 3; ++i)  // the first copies into the front table, the others read it
        REQUIRE(*c.peek("http:a").route == first);

    SECTION("invalidation") {
        CHECK(c.invalidate("http:a"));
        CHECK(c.peek("http:a").status == status::miss);
    }
    SECTION("invalidation by suffix") {
        CHECK(c.invalidate_matching(":a") == 1);
        CHECK(c.peek("http:a").status == status::miss);
    }
    SECTION("clear") {
        c.clear();
        CHECK(c.peek("http:a").status == status::miss);
    }
    SECTION("a new answer stored for the live key") {
        const auto second = make_route(2);
        c.store("http:a", second);
        CHECK(*c.peek("http:a").route == second);
    }
    SECTION("a negative answer after invalidation") {
        CHECK(c.invalidate("http:a"));
        const auto nf = make_error(error_code::not_found);
        fill(c, "http:a", nullptr, nf);
        const auto p = c.peek("http:a");
        CHECK(p.status == status::negative_hit);
        CHECK(*p.error == nf);
        CHECK(*p.route == nullptr);
    }
}

TEST_CASE("route cache: a front copy expires with its entry", "[cache][front]") {
    route_cache c(opts(30ms, 30ms));
    fill(c, "http:a", make_route(1));
    const auto a = c.peek("http:a").status;
    const auto b = c.peek("http:a").status;
    CHECK(a == status::hit);
    CHECK(b == status::hit);
    test_clock.advance(60ms);
    CHECK(c.peek("http:a").status == status::miss);
    // The clock is the caller's: a copy is a hit for a time before its expiry, not after.
    route_cache d(opts(10s, 10s));
    fill(d, "http:b", make_route(2));
    const std::uint64_t now = test_clock.now_ms.load();
    CHECK(d.peek("http:b", now).status == status::hit);
    CHECK(d.peek("http:b", now).status == status::hit);
    CHECK(d.peek("http:b", now + 20'000).status == status::miss);
}

TEST_CASE("route cache: eviction of a key held in a front table", "[cache][front]") {
    const auto keys = same_shard_keys(3);
    route_cache c(opts(10s, 10s, 32));  // two entries per shard
    fill(c, keys[0], make_route(1));
    REQUIRE(c.peek(keys[0]).status == status::hit);
    REQUIRE(c.peek(keys[0]).status == status::hit);
    fill(c, keys[1], make_route(2));
    fill(c, keys[2], make_route(3));  // evicts keys[0], the oldest
    CHECK(c.stats().evictions == 1);
    CHECK(c.peek(keys[0]).status == status::miss);
    CHECK(c.peek(keys[2]).status == status::hit);
}

TEST_CASE("route cache: front tables are per thread, their hits are counted", "[cache][front]") {
    route_cache c(opts(10s, 10s));
    const auto route = make_route(1);
    fill(c, "http:a", route);
    fill(c, "http:gone", nullptr, make_error(error_code::not_found));
    // A key longer than a front slot holds is answered from the shared table every time.
    const std::string long_key = "http:" + std::string(200, 'x') + ".example";
    fill(c, long_key, make_route(3));

    constexpr int threads = 4;
    constexpr int rounds = 500;
    std::atomic<int> wrong{0};
    std::barrier sync(threads + 1);
    std::vector<std::jthread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&] {
            for (int i = 0; i < rounds; ++i) {
                if (*c.peek("http:a").route != route) ++wrong;
                if (c.peek("http:gone").status != status::negative_hit) ++wrong;
                const auto p = c.peek(long_key);
                if (p.status != status::hit || (*p.route)->endpoints.at(0).port != 3) ++wrong;
            }
            sync.arrive_and_wait();  // every thread has its copies
            sync.arrive_and_wait();  // the main thread invalidated "http:a"
            if (c.peek("http:a").status != status::miss) ++wrong;
            if (c.peek("http:gone").status != status::negative_hit) ++wrong;
        });
    }
    sync.arrive_and_wait();
    CHECK(c.invalidate("http:a"));
    sync.arrive_and_wait();
    pool.clear();
    CHECK(wrong == 0);
    const auto st = c.stats();
    CHECK(st.hits == threads * rounds * 2);
    CHECK(st.negative_hits == threads * (rounds + 1));
}

TEST_CASE("route cache: a thread switching between caches keeps each one's answers apart",
          "[cache][front]") {
    route_cache a(opts(10s, 10s));
    route_cache b(opts(10s, 10s));
    const auto ra = make_route(1);
    const auto rb = make_route(2);
    fill(a, "http:x", ra);
    fill(b, "http:x", rb);
    for (int i = 0; i < 3; ++i) {
        CHECK(*a.peek("http:x").route == ra);
        CHECK(*b.peek("http:x").route == rb);
    }
    CHECK(a.stats().hits == 3);
    CHECK(b.stats().hits == 3);
    {
        route_cache gone(opts(10s, 10s));
        fill(gone, "http:y", make_route(3));
        CHECK(gone.peek("http:y").status == status::hit);
    }
    // A cache made after one was destroyed never sees the destroyed one's front table.
    route_cache fresh(opts(10s, 10s));
    CHECK(fresh.peek("http:y").status == status::miss);
}

TEST_CASE("resource activity: one report per window, whatever order the threads' clocks arrive in",
          "[activity]") {
    resource_activity a(app_protocol::http, "act.test");
    CHECK(a.claim_report(10'000, 1'500));
    CHECK_FALSE(a.claim_report(10'000, 1'500));
    // Another loop thread's reading, taken a millisecond before the report: same window (an
    // unsigned now - last once made this a new one).
    CHECK_FALSE(a.claim_report(9'999, 1'500));
    CHECK_FALSE(a.claim_report(11'499, 1'500));
    CHECK(a.claim_report(11'500, 1'500));
    CHECK_FALSE(a.claim_report(10'000, 1'500));
    CHECK(a.last_reported_ms.load() == 11'500);
    // The same skew in an age: a reading stored after ours is 0 ms old, not 2^64 - 1.
    CHECK(ms_since(9'999, 10'000) == 0);
    CHECK(ms_since(11'500, 10'000) == 1'500);
}

TEST_CASE("resource activity: concurrent claims with skewed clocks report once per window",
          "[activity]") {
    resource_activity a(app_protocol::http, "act.test");
    std::atomic<int> reports{0};
    std::vector<std::thread> threads;
    for (std::uint64_t t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            // Each thread's clock is up to 3 ms off the others'; all stay inside one window.
            for (std::uint64_t i = 0; i < 10'000; ++i)
                if (a.claim_report(50'000 + t + i / 1'000, 1'500)) reports.fetch_add(1);
        });
    }
    for (auto& th : threads)
        th.join();
    CHECK(reports.load() == 1);
}

TEST_CASE("route cache: inspect and entries read without counting or changing", "[cache]") {
    route_cache c(opts(1000ms, 500ms));
    CHECK_FALSE(c.inspect("http:a").has_value());
    fill(c, "http:b", make_route(81));
    test_clock.advance(100ms);
    fill(c, "http:a", make_route(80));
    fill(c, "http:nobody", nullptr, make_error(error_code::not_found));
    auto w = waiter();
    REQUIRE(c.lookup("http:flying", w).status == status::leader);  // in flight, not cached
    const auto before = c.stats();

    const auto a = c.inspect("http:a");
    REQUIRE(a.has_value());
    CHECK(a->cached);
    CHECK_FALSE(a->in_flight);
    REQUIRE(a->route != nullptr);
    CHECK(a->route->endpoints.front().port == 80);
    CHECK(a->expires_ms - a->stored_ms == 1000);
    CHECK(a->stored_ms == c.now_ms());
    const auto negative = c.inspect("http:nobody");
    REQUIRE(negative.has_value());
    CHECK(negative->route == nullptr);
    CHECK(negative->error->code == error_code::not_found);
    CHECK(negative->expires_ms - negative->stored_ms == 500);
    const auto flying = c.inspect("http:flying");
    REQUIRE(flying.has_value());
    CHECK_FALSE(flying->cached);
    CHECK(flying->in_flight);

    std::size_t total = 0;
    auto page = c.entries(0, 2, total);
    CHECK(total == 3);  // the flight is not a cached entry
    REQUIRE(page.size() == 2);
    CHECK(page[0].key == "http:a");  // sorted by key
    CHECK(page[1].key == "http:b");
    page = c.entries(2, 2, total);
    REQUIRE(page.size() == 1);
    CHECK(page[0].key == "http:nobody");
    CHECK(c.entries(3, 2, total).empty());

    const auto after = c.stats();
    CHECK(after.hits == before.hits);
    CHECK(after.negative_hits == before.negative_hits);
    CHECK(after.misses == before.misses);
    CHECK(after.entries == before.entries);
    for (auto& x : c.complete("http:flying", nullptr, make_error(error_code::internal)))
        x->complete(nullptr, nullptr);
}

}  // namespace spoa::handlers::routing
