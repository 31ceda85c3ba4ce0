// Activity written to a real, private redis-server: the counts equal the decisions recorded over
// many flushes (also while other threads keep counting), two agents add up, the last-seen score is
// the maximum, Redis killed and back (the delta kept meanwhile is written once), a timed-out count
// is not sent again, nothing is sent when nothing moved or when the interval is 0, keys expire,
// a flush stays within max_pending without starving resources behind busy ones, a record
// evicted and made again starts from zero, and the flush at stop is written and answered.

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.hpp"
#include "spoa/handlers/routing/activity_exporter.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace std::chrono_literals;
using test::eventually;

std::uint64_t unix_now_ms() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
}

redis_options options_for(const test::redis_server& server) {
    redis_options o;
    o.address = connect_address::parse(server.address());
    o.reconnect_min = 10ms;
    o.reconnect_max = 50ms;
    o.activity_interval = 20ms;
    return o;
}

/// One agent: its service loop, Redis client, activity table and exporter. The test thread plays
/// the router: it makes records and counts decisions into them.
struct agent_side {
    std::shared_ptr<service_loop> loop = std::make_shared<service_loop>();
    std::shared_ptr<redis_client> redis;
    activity_table table;
    std::unique_ptr<activity_exporter> exporter;
    std::mutex routes_mutex;
    std::map<std::pair<app_protocol, std::string>, std::shared_ptr<resource_activity>> routes;

    explicit agent_side(const redis_options& o, std::size_t max_entries = 1000)
        : table(max_entries) {
        redis = std::make_shared<redis_client>(o, loop, nullptr);
        exporter = std::make_unique<activity_exporter>(redis, table, o, loop, nullptr);
        exporter->start();
    }
    ~agent_side() { loop->join(); }  // the table outlives the loop

    /// A cache miss on `id`: the router's record of it, made again if it was evicted.
    std::shared_ptr<resource_activity> resolve(app_protocol p, const std::string& id) {
        auto rec = table.record(p, std::string(to_string(p)) + "|" + id, id);
        std::lock_guard lock(routes_mutex);
        routes[{p, id}] = rec;
        return rec;
    }
    /// `n` decisions for `id`, seen `ago` before now: through the cached route's record, as the
    /// router counts a hit (it does not touch the table's order).
    void count(app_protocol p, const std::string& id, std::uint64_t n,
               std::chrono::milliseconds ago = 0ms) {
        std::shared_ptr<resource_activity> rec;
        {
            std::lock_guard lock(routes_mutex);
            if (const auto it = routes.find({p, id}); it != routes.end()) rec = it->second;
        }
        if (!rec) rec = resolve(p, id);
        rec->decisions.fetch_add(n);
        rec->last_seen_ms.store(steady_ms() - static_cast<std::uint64_t>(ago.count()));
    }
    [[nodiscard]] activity_export_stats stats() const { return exporter->stats(); }
    /// Waits until `more` flushes of any kind ran after this call.
    bool flushes_pass(std::uint64_t more) const {
        const auto total = [this] {
            const auto s = stats();
            return s.flushes_sent + s.flushes_idle + s.flushes_skipped;
        };
        const auto start = total();
        return eventually([&] { return total() >= start + more; });
    }
    /// Waits until a flush found nothing to send (what was taken before has been answered
    /// unless it is still in flight: callers check the values they wait for).
    bool idle_flush() const {
        const auto start = stats().flushes_idle;
        return eventually([&] { return stats().flushes_idle > start; });
    }
};

/// What a platform sees: its own client on its own loop.
struct reader {
    std::shared_ptr<service_loop> loop = std::make_shared<service_loop>();
    std::shared_ptr<redis_client> redis;

    explicit reader(const test::redis_server& server) {
        redis = std::make_shared<redis_client>(options_for(server), loop, nullptr);
        REQUIRE(eventually([&] { return redis->connected(redis_link::command); }));
    }
    ~reader() { loop->join(); }

    redis_result run(std::vector<std::string> args) {
        auto done = std::make_shared<std::promise<redis_result>>();
        auto f = done->get_future();
        redis->command(std::move(args), [done](redis_result r) { done->set_value(std::move(r)); });
        REQUIRE(f.wait_for(5s) == std::future_status::ready);
        return f.get();
    }
    /// The fleet's request count of a resource; -1 when absent or unreadable.
    std::int64_t requests(const std::string& member) {
        const auto r = run({"HGET", "spoa:activity:" + member, "requests"});
        if (r.error || r.nil) return -1;
        return std::stoll(r.text);
    }
    /// Its last-seen score (Unix ms); -1 when absent.
    std::int64_t last_seen(const std::string& member) {
        const auto r = run({"ZSCORE", "spoa:activity:last_seen", member});
        if (r.error || r.nil) return -1;
        return std::stoll(r.text);
    }
    std::int64_t pttl(const std::string& key) { return run({"PTTL", key}).integer; }
    /// How many times Redis ran `command` (INFO commandstats).
    std::uint64_t calls(const std::string& command) {
        const auto text = run({"INFO", "commandstats"}).text;
        const auto tag = "cmdstat_" + command + ":calls=";
        const auto at = text.find(tag);
        if (at == std::string::npos) return 0;
        return std::stoull(text.substr(at + tag.size()));
    }
};

}  // namespace

TEST_CASE("activity: the counts in Redis equal the decisions, over several flushes",
          "[redis][activity]") {
    test::redis_server server;
    reader platform(server);
    agent_side a(options_for(server));
    std::int64_t total = 0;
    for (int round = 1; round <= 5; ++round) {
        a.count(app_protocol::http, "app.example", static_cast<std::uint64_t>(10 * round));
        a.count(app_protocol::postgres, "orders", static_cast<std::uint64_t>(round));
        total += 10 * round;
        REQUIRE(eventually([&] { return platform.requests("http:app.example") == total; }));
        REQUIRE(eventually(
            [&] { return platform.requests("postgres:orders") == round * (round + 1) / 2; }));
    }
    CHECK(platform.requests("postgres:orders") == 15);
    CHECK(platform.requests("tcp:orders") == -1);
    // Written once: more flushes change nothing.
    REQUIRE(a.flushes_pass(5));
    CHECK(platform.requests("http:app.example") == 150);
    CHECK(platform.requests("postgres:orders") == 15);
    // Redis has applied the counts before the agent has read its answers: wait for those.
    REQUIRE(eventually([&] { return a.stats().requests_written == 165; }));
    const auto s = a.stats();
    CHECK(s.flushes_sent >= 5);
    CHECK(s.requests_uncertain == 0);
    CHECK(s.requests_retried == 0);

    std::string metrics;
    a.exporter->render_metrics(metrics);
    CHECK(metrics.find("spoa_redis_activity_requests_total{outcome=\"written\"} 165") !=
          std::string::npos);
    CHECK(metrics.find("spoa_redis_activity_flushes_total{result=\"idle\"}") != std::string::npos);
}

TEST_CASE("activity: exact while other threads keep counting during the flushes",
          "[redis][activity]") {
    test::redis_server server;
    reader platform(server);
    agent_side a(options_for(server));
    const std::vector<std::string> ids{"a.example", "b.example", "c.example"};
    std::atomic<bool> go{true};
    std::vector<std::thread> loops;  // two "agent loop threads" answering decisions
    std::atomic<std::uint64_t> made{0};
    for (int t = 0; t < 2; ++t) {
        loops.emplace_back([&, t] {
            for (std::uint64_t i = 0; go; ++i) {
                a.count(app_protocol::http, ids[(i + t) % ids.size()], 1);
                made++;
                if (i % 64 == 0) std::this_thread::yield();
            }
        });
    }
    // Let several flushes run while counting goes on.
    REQUIRE(eventually([&] { return a.stats().flushes_sent >= 5; }));
    go = false;
    for (auto& th : loops)
        th.join();
    REQUIRE(eventually([&] {
        std::int64_t sum = 0;
        for (const auto& id : ids)
            sum += std::max<std::int64_t>(0, platform.requests("http:" + id));
        return sum == static_cast<std::int64_t>(made.load());
    }));
    REQUIRE(a.flushes_pass(3));
    std::int64_t sum = 0;
    for (const auto& id : ids)
        sum += platform.requests("http:" + id);
    CHECK(sum == static_cast<std::int64_t>(made.load()));
    CHECK(a.stats().requests_written == made.load());
}

TEST_CASE("activity: two agents on one Redis add up; last seen is the latest of both",
          "[redis][activity]") {
    test::redis_server server;
    reader platform(server);
    agent_side a(options_for(server));
    agent_side b(options_for(server));

    const auto before_b = unix_now_ms();
    b.count(app_protocol::http, "shop.example", 700, 1000ms);
    REQUIRE(eventually([&] { return platform.requests("http:shop.example") == 700; }));
    // A saw it a minute ago: its later flush must not lower the score.
    a.count(app_protocol::http, "shop.example", 1000, 60000ms);
    REQUIRE(eventually([&] { return platform.requests("http:shop.example") == 1700; }));
    REQUIRE(a.idle_flush());
    const auto score = platform.last_seen("http:shop.example");
    CHECK(score >= static_cast<std::int64_t>(before_b) - 1000 - 50);
    CHECK(score <= static_cast<std::int64_t>(unix_now_ms()) - 1000 + 50);

    // A newer decision on A moves it up.
    const auto before_a = unix_now_ms();
    a.count(app_protocol::http, "shop.example", 1);
    REQUIRE(eventually([&] { return platform.requests("http:shop.example") == 1701; }));
    REQUIRE(eventually([&] {
        return platform.last_seen("http:shop.example") >= static_cast<std::int64_t>(before_a) - 50;
    }));
}

TEST_CASE("activity: Redis down then back, the delta kept meanwhile is written once",
          "[redis][activity]") {
    test::redis_server server;
    agent_side a(options_for(server));
    {
        reader platform(server);
        a.count(app_protocol::tls, "db.example", 100);
        REQUIRE(eventually([&] { return platform.requests("tls:db.example") == 100; }));
        REQUIRE(a.idle_flush());
    }
    server.kill();
    REQUIRE(eventually([&] { return !a.redis->connected(redis_link::command); }));
    a.count(app_protocol::tls, "db.example", 50);
    const auto skipped = a.stats().flushes_skipped;
    REQUIRE(eventually([&] { return a.stats().flushes_skipped >= skipped + 2; }));
    CHECK(a.stats().requests_carried == 0);  // kept in the record, not taken

    server.start();  // empty: no persistence, so it holds exactly what is written from now on
    reader platform(server);
    REQUIRE(eventually([&] { return platform.requests("tls:db.example") == 50; }));
    REQUIRE(a.flushes_pass(5));
    CHECK(platform.requests("tls:db.example") == 50);
    // Redis has applied the counts before the agent has read its answers: wait for those.
    REQUIRE(eventually([&] { return a.stats().requests_written == 150; }));
    const auto s = a.stats();
    CHECK(s.requests_uncertain == 0);
    CHECK(s.requests_dropped == 0);
}

TEST_CASE("activity: a count that timed out is not sent again (never doubled)",
          "[redis][activity]") {
    test::redis_server server;
    auto o = options_for(server);
    o.command_timeout = 50ms;
    o.ping_interval = std::chrono::hours(1);  // the paused server keeps its connection
    agent_side a(o);
    reader platform(server);
    a.count(app_protocol::http, "slow.example", 10);
    REQUIRE(eventually([&] { return platform.requests("http:slow.example") == 10; }));
    REQUIRE(a.idle_flush());

    server.pause();
    a.count(app_protocol::http, "slow.example", 7);
    REQUIRE(eventually([&] { return a.stats().requests_uncertain == 7; }));
    server.resume();
    // The paused server read the command late and applied it: 17, and 17 it stays.
    REQUIRE(eventually([&] { return platform.requests("http:slow.example") == 17; }));
    REQUIRE(eventually([&] { return a.stats().requests_carried == 0; }));
    REQUIRE(a.flushes_pass(5));
    CHECK(platform.requests("http:slow.example") == 17);
    CHECK(a.stats().requests_retried == 0);
    CHECK(a.stats().commands_failed[static_cast<std::size_t>(redis_error::timeout)] >= 1);
}

TEST_CASE("activity: nothing is sent when nothing moved", "[redis][activity]") {
    test::redis_server server;
    reader platform(server);
    agent_side a(options_for(server));
    a.count(app_protocol::tcp, "5432", 3);
    REQUIRE(eventually([&] { return platform.requests("tcp:5432") == 3; }));
    REQUIRE(a.idle_flush());
    const auto sent = a.stats().flushes_sent;
    const auto hincrby = platform.calls("hincrby");
    const auto zadd = platform.calls("zadd");
    CHECK(hincrby >= 1);
    const auto idle = a.stats().flushes_idle;
    REQUIRE(eventually([&] { return a.stats().flushes_idle >= idle + 5; }));
    CHECK(a.stats().flushes_sent == sent);
    CHECK(platform.calls("hincrby") == hincrby);
    CHECK(platform.calls("zadd") == zadd);
}

TEST_CASE("activity: an interval of 0 writes nothing", "[redis][activity]") {
    test::redis_server server;
    reader platform(server);
    auto off = options_for(server);
    off.activity_interval = 0ms;
    agent_side quiet(off);
    agent_side clock(options_for(server));  // flushes every 20 ms: a measure of time passing
    quiet.count(app_protocol::http, "quiet.example", 5);
    REQUIRE(eventually([&] { return quiet.redis->connected(redis_link::command); }));
    REQUIRE(clock.flushes_pass(10));
    const auto s = quiet.stats();
    CHECK(s.flushes_sent + s.flushes_idle + s.flushes_skipped == 0);
    CHECK(platform.requests("http:quiet.example") == -1);
    CHECK(platform.run({"EXISTS", "spoa:activity:last_seen"}).integer == 0);
}

TEST_CASE("activity: at stop, what moved since the last flush is written and answered",
          "[redis][activity]") {
    test::redis_server server;
    reader platform(server);
    auto o = options_for(server);
    o.activity_interval = std::chrono::hours(1);  // only the flush at stop writes
    agent_side a(o);
    REQUIRE(eventually([&] { return a.redis->connected(redis_link::command); }));
    a.count(app_protocol::http, "bye.example", 7);
    CHECK(a.exporter->flush_before_stop(5s));
    CHECK(platform.requests("http:bye.example") == 7);  // answered: no waiting for it
    CHECK(platform.last_seen("http:bye.example") > 0);

    server.kill();
    REQUIRE(eventually([&] { return !a.redis->connected(redis_link::command); }));
    agent_side b(o);
    b.count(app_protocol::http, "bye.example", 1);
    CHECK_FALSE(b.exporter->flush_before_stop(5s));  // Redis down: nothing can be written
}

TEST_CASE("activity: keys expire, and members idle past the TTL leave the sorted set",
          "[redis][activity]") {
    test::redis_server server;
    reader platform(server);
    // A member last seen two days ago, as an agent gone since would have left it.
    REQUIRE_FALSE(
        platform.run({"ZADD", "spoa:activity:last_seen", "1000", "http:gone.example"}).error);
    agent_side a(options_for(server));
    a.count(app_protocol::http, "kept.example", 1);
    REQUIRE(eventually([&] { return platform.requests("http:kept.example") == 1; }));
    REQUIRE(eventually([&] { return platform.last_seen("http:gone.example") == -1; }));
    const std::int64_t day = 24 * 3600 * 1000;
    const auto hash_ttl = platform.pttl("spoa:activity:http:kept.example");
    CHECK(hash_ttl > day - 60000);
    CHECK(hash_ttl <= day);
    REQUIRE(eventually([&] { return platform.pttl("spoa:activity:last_seen") > 0; }));
    CHECK(platform.pttl("spoa:activity:last_seen") <= day);
    CHECK(platform.last_seen("http:kept.example") > 0);
}

TEST_CASE("activity: a flush stays within max_pending, the rest follows exactly",
          "[redis][activity]") {
    test::redis_server server;
    reader platform(server);
    auto o = options_for(server);
    o.max_pending = 20;  // half of it, 10 commands: (10 - 3) / 2 = 3 resources per flush
    agent_side a(o);
    for (int i = 0; i < 20; ++i)
        a.count(app_protocol::http, "r" + std::to_string(i) + ".example",
                static_cast<std::uint64_t>(i + 1));
    REQUIRE(eventually(
        [&] {
            for (int i = 0; i < 20; ++i)
                if (platform.requests("http:r" + std::to_string(i) + ".example") != i + 1)
                    return false;
            return true;
        },
        10s));
    // Redis has applied the counts before the agent has read its answers: wait for those.
    REQUIRE(eventually([&] { return a.stats().requests_written == 210; }));
    const auto s = a.stats();
    CHECK(s.records_deferred > 0);
    CHECK(s.flushes_sent >= 7);
    CHECK(s.requests_uncertain == 0);
}

TEST_CASE("activity: resources that keep moving do not starve the others of a full flush",
          "[redis][activity]") {
    test::redis_server server;
    reader platform(server);
    auto o = options_for(server);
    o.max_pending = 20;  // 3 resources per flush
    agent_side a(o);
    std::vector<std::string> ids;
    for (int i = 0; i < 10; ++i)
        ids.push_back("busy" + std::to_string(i) + ".example");
    std::atomic<bool> go{true};
    std::atomic<std::uint64_t> made{0};
    std::thread busy([&] {
        // All ten move between any two flushes, for as long as the test looks.
        while (go) {
            for (const auto& id : ids)
                a.count(app_protocol::http, id, 1);
            made += ids.size();
            std::this_thread::yield();
        }
    });
    const bool every_one_written = eventually([&] {
        for (const auto& id : ids)
            if (platform.requests("http:" + id) <= 0) return false;
        return true;
    });
    go = false;
    busy.join();
    CHECK(every_one_written);
    REQUIRE(eventually([&] {
        std::int64_t sum = 0;
        for (const auto& id : ids)
            sum += std::max<std::int64_t>(0, platform.requests("http:" + id));
        return sum == static_cast<std::int64_t>(made.load());
    }));
    CHECK(a.stats().records_deferred > 0);
}

TEST_CASE("activity: a record evicted and made again starts from zero", "[redis][activity]") {
    test::redis_server server;
    reader platform(server);
    agent_side a(options_for(server), 2);
    a.count(app_protocol::http, "x.example", 5);
    REQUIRE(eventually([&] { return platform.requests("http:x.example") == 5; }));
    a.count(app_protocol::http, "y.example", 1);
    a.count(app_protocol::http, "z.example", 1);  // evicts x
    REQUIRE(eventually([&] { return platform.requests("http:z.example") == 1; }));
    a.resolve(app_protocol::http, "x.example");  // a new record
    a.count(app_protocol::http, "x.example", 3);
    REQUIRE(eventually([&] { return platform.requests("http:x.example") == 8; }));
    REQUIRE(a.flushes_pass(3));
    CHECK(platform.requests("http:x.example") == 8);
}

}  // namespace spoa::handlers::routing
