// Invalidations between agents through a real, private redis-server: what one agent publishes
// reaches the other (not itself), a platform's own PUBLISH reaches both, malformed messages are
// counted, a publication while Redis is down is dropped and counted, a resubscription resyncs,
// and the fan-out latency (publish on A -> applied on B) over many rounds.

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

#include "redis_server.hpp"
#include "spoa/handlers/routing/invalidation_fanout.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace std::chrono_literals;
using test::eventually;

/// What one agent's `apply` saw, filled on its service loop, read by the test thread.
struct applied_log {
    std::mutex mutex;
    std::condition_variable changed;
    std::deque<std::pair<std::string, std::optional<app_protocol>>> seen;
    int resyncs = 0;

    void add(const std::string& id, std::optional<app_protocol> p) {
        std::lock_guard lock(mutex);
        seen.emplace_back(id, p);
        changed.notify_all();
    }
    void resynced() {
        std::lock_guard lock(mutex);
        ++resyncs;
        changed.notify_all();
    }
    /// The next id applied, within `limit`; nullopt if none came.
    std::optional<std::pair<std::string, std::optional<app_protocol>>> next(
        std::chrono::milliseconds limit = 5000ms) {
        std::unique_lock lock(mutex);
        if (!changed.wait_for(lock, limit, [&] { return !seen.empty(); })) return std::nullopt;
        auto front = seen.front();
        seen.pop_front();
        return front;
    }
    bool wait_resyncs(int n) {
        std::unique_lock lock(mutex);
        return changed.wait_for(lock, 5s, [&] { return resyncs >= n; });
    }
};

/// One agent of the fleet: its own service loop, client and fanout.
struct agent_side {
    std::shared_ptr<service_loop> loop = std::make_shared<service_loop>();
    std::shared_ptr<redis_client> redis;
    std::shared_ptr<applied_log> log = std::make_shared<applied_log>();
    std::unique_ptr<invalidation_fanout> fanout;

    agent_side(const test::redis_server& server, std::string id) {
        redis_options o;
        o.address = connect_address::parse(server.address());
        o.reconnect_min = 10ms;
        o.reconnect_max = 50ms;
        redis = std::make_shared<redis_client>(o, loop, nullptr);
        fanout = std::make_unique<invalidation_fanout>(
            redis, std::move(id),
            [l = log](const std::string& res, std::optional<app_protocol> p) { l->add(res, p); },
            [l = log] { l->resynced(); }, nullptr);
    }
    ~agent_side() { loop->join(); }
};

/// Publishes a raw message (as a platform would) until one subscriber or more received it.
std::int64_t platform_publish(redis_client& c, const std::string& channel, const std::string& m) {
    auto got = std::make_shared<std::promise<std::int64_t>>();
    auto f = got->get_future();
    c.command({"PUBLISH", channel, m}, [got](redis_result r) { got->set_value(r.integer); });
    REQUIRE(f.wait_for(5s) == std::future_status::ready);
    return f.get();
}

}  // namespace

TEST_CASE("fanout: an agent's invalidation reaches the others, a platform's reaches all",
          "[redis][fanout]") {
    test::redis_server server;
    agent_side a(server, "agent-a");
    agent_side b(server, "agent-b");
    agent_side platform(server, "platform-tool");
    CHECK(a.fanout->channel() == "spoa:invalidate");
    // Both subscribed: a platform message counts two receivers besides the platform's own.
    REQUIRE(eventually([&] {
        return platform_publish(*platform.redis, "spoa:invalidate", "1 platform-tool * warmup") ==
               3;
    }));
    // Drain the warm-up messages.
    while (a.log->next(100ms)) {
    }
    while (b.log->next(100ms)) {
    }

    a.fanout->publish("App.Test", app_protocol::http);
    const auto got = b.log->next();
    REQUIRE(got);
    CHECK(got->first == "App.Test");
    CHECK(got->second == app_protocol::http);
    REQUIRE(eventually([&] { return a.fanout->stats().own == 1; }));
    CHECK_FALSE(a.log->next(50ms));  // its own echo is not applied
    CHECK(a.fanout->stats().published == 1);

    CHECK(platform_publish(*platform.redis, "spoa:invalidate", "1 - * orders db") == 3);
    for (auto* side : {&a, &b}) {
        const auto m = side->log->next();
        REQUIRE(m);
        CHECK(m->first == "orders db");
        CHECK_FALSE(m->second);
    }

    CHECK(platform_publish(*platform.redis, "spoa:invalidate", "2 - * future-format") == 3);
    CHECK(platform_publish(*platform.redis, "spoa:invalidate", "1 - gopher x") == 3);
    REQUIRE(eventually([&] { return b.fanout->stats().malformed == 2; }));
    CHECK_FALSE(b.log->next(50ms));

    std::string metrics;
    b.fanout->render_metrics(metrics);
    CHECK(metrics.find("spoa_redis_invalidations_total{event=\"malformed\"} 2") !=
          std::string::npos);
    CHECK(metrics.find("agent_id=\"agent-b\"") != std::string::npos);
}

TEST_CASE("fanout: Redis down drops publications; back up, every agent resyncs",
          "[redis][fanout]") {
    test::redis_server server;
    agent_side a(server, "agent-a");
    agent_side b(server, "agent-b");
    REQUIRE(eventually([&] {
        return a.redis->connected(redis_link::subscriber) &&
               b.redis->connected(redis_link::subscriber) &&
               a.redis->connected(redis_link::command);
    }));
    server.kill();
    REQUIRE(eventually([&] { return !a.redis->connected(redis_link::command); }));
    a.fanout->publish("lost.test", std::nullopt);
    REQUIRE(eventually([&] { return a.fanout->stats().dropped == 1; }));

    server.start();
    CHECK(a.log->wait_resyncs(1));
    CHECK(b.log->wait_resyncs(1));
    CHECK_FALSE(b.log->next(50ms));  // the dropped one is not delivered late
    REQUIRE(eventually([&] { return a.redis->connected(redis_link::command); }));
    a.fanout->publish("after.test", std::nullopt);
    const auto got = b.log->next();
    REQUIRE(got);
    CHECK(got->first == "after.test");
}

TEST_CASE("fanout: latency from publish on A to applied on B", "[redis][fanout][latency]") {
    test::redis_server server(test::redis_server::listen_on::tcp);
    agent_side a(server, "agent-a");
    agent_side b(server, "agent-b");
    REQUIRE(eventually([&] {
        return a.redis->connected(redis_link::command) &&
               b.redis->connected(redis_link::subscriber);
    }));
    // Until B is subscribed, publish and wait for it.
    REQUIRE(eventually([&] {
        a.fanout->publish("warmup", std::nullopt);
        return static_cast<bool>(b.log->next(20ms));
    }));
    while (b.log->next(50ms)) {
    }

    constexpr int rounds = 2000;
    std::vector<double> ms;
    ms.reserve(rounds);
    for (int i = 0; i < rounds; ++i) {
        const auto id = "r" + std::to_string(i);
        const auto start = std::chrono::steady_clock::now();
        a.fanout->publish(id, app_protocol::http);
        const auto got = b.log->next();
        REQUIRE(got);
        REQUIRE(got->first == id);
        ms.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                .count());
    }
    std::sort(ms.begin(), ms.end());
    const double p50 = ms[rounds / 2];
    const double p99 = ms[rounds * 99 / 100];
    std::printf(
        "fan-out latency over %d rounds (publish on A -> applied on B, loopback TCP): "
        "p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
        rounds, p50, p99, ms.back());
    CHECK(p99 < 50.0);  // issue 14's target
}

}  // namespace spoa::handlers::routing

namespace spoa::handlers::routing {

TEST_CASE("fanout: the platform hook runs for a platform's messages only", "[redis][fanout]") {
    test::redis_server server;
    agent_side other(server, "agent-b");
    auto loop = std::make_shared<service_loop>();
    redis_options o;
    o.address = connect_address::parse(server.address());
    auto redis = std::make_shared<redis_client>(o, loop, nullptr);
    auto log = std::make_shared<applied_log>();
    auto platform_log = std::make_shared<applied_log>();
    invalidation_fanout f(
        redis, "agent-a",
        [log](const std::string& res, std::optional<app_protocol> p) { log->add(res, p); }, [] {},
        nullptr,
        [platform_log](const std::string& res, std::optional<app_protocol> p) {
            platform_log->add(res, p);
        });
    REQUIRE(eventually(
        [&] { return platform_publish(*other.redis, "spoa:invalidate", "1 - * warmup") == 2; }));
    while (log->next(100ms)) {
    }
    while (platform_log->next(100ms)) {
    }
    other.fanout->publish("from.agent", app_protocol::http);
    REQUIRE(log->next());
    CHECK_FALSE(platform_log->next(100ms));
    platform_publish(*other.redis, "spoa:invalidate", "1 - tls from.platform");
    const auto seen = platform_log->next();
    REQUIRE(seen);
    CHECK(seen->first == "from.platform");
    CHECK(seen->second == app_protocol::tls);
    REQUIRE(log->next());  // applied as well
    loop->join();
}

}  // namespace spoa::handlers::routing
