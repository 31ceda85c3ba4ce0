// The fleet's wake lease against a real, private redis-server: one agent wins a claim and the
// others lose it, the winner's outcome reaches the others (not itself), a lease renewed stays
// its holder's, a claim given up frees the key silently, a lease left to expire is taken over,
// a renewal or release never touches a lease another agent took over, and a claim while Redis is
// down is `unknown` (wake locally).

#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>

#include "redis_server.hpp"
#include "spoa/handlers/routing/wake_lease.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace std::chrono_literals;
using test::eventually;
using claim_result = wake_coordinator::claim_result;
using outcome = wake_coordinator::outcome;

/// Outcomes one agent heard, filled on its service loop, read by the test thread.
struct heard_log {
    std::mutex mutex;
    std::condition_variable changed;
    std::deque<std::tuple<app_protocol, std::string, outcome>> heard;

    void add(app_protocol p, std::string_view id, outcome o) {
        std::lock_guard lock(mutex);
        heard.emplace_back(p, std::string(id), o);
        changed.notify_all();
    }
    std::optional<std::tuple<app_protocol, std::string, outcome>> next(
        std::chrono::milliseconds limit = 5000ms) {
        std::unique_lock lock(mutex);
        if (!changed.wait_for(lock, limit, [&] { return !heard.empty(); })) return std::nullopt;
        auto front = heard.front();
        heard.pop_front();
        return front;
    }
};

/// One agent: its own service loop, client and lease.
struct agent_side {
    std::shared_ptr<service_loop> loop = std::make_shared<service_loop>();
    std::shared_ptr<redis_client> redis;
    std::shared_ptr<heard_log> log = std::make_shared<heard_log>();
    std::shared_ptr<wake_lease> lease;

    agent_side(const test::redis_server& server, std::string id, std::chrono::milliseconds ttl) {
        redis_options o;
        o.address = connect_address::parse(server.address());
        o.reconnect_min = 10ms;
        o.reconnect_max = 50ms;
        o.wake_lease = ttl;
        redis = std::make_shared<redis_client>(o, loop, nullptr);
        lease = std::make_shared<wake_lease>(redis, std::move(id), nullptr);
        lease->on_outcome([l = log](app_protocol p, std::string_view rid, outcome what) {
            l->add(p, rid, what);
        });
    }
    ~agent_side() { loop->join(); }

    /// Runs a wake_coordinator call on the service loop, as the cold starter does.
    template <typename Fn>
    void on_loop(Fn fn) {
        loop->post([fn = std::move(fn)](uv_loop_t*) mutable { fn(); });
    }
    claim_result claim(app_protocol p, const std::string& id) {
        auto done = std::make_shared<std::promise<claim_result>>();
        auto f = done->get_future();
        on_loop([this, p, id, done] {
            lease->claim(p, id, [done](claim_result r) { done->set_value(r); });
        });
        REQUIRE(f.wait_for(5s) == std::future_status::ready);
        return f.get();
    }
    /// A raw command's answer (reads the lease key as a platform would).
    redis_result command(std::vector<std::string> args) {
        auto done = std::make_shared<std::promise<redis_result>>();
        auto f = done->get_future();
        redis->command(std::move(args), [done](redis_result r) { done->set_value(std::move(r)); });
        REQUIRE(f.wait_for(5s) == std::future_status::ready);
        return f.get();
    }
    bool ready() const {
        return redis->connected(redis_link::command) && redis->connected(redis_link::subscriber);
    }
};

std::string metric_line(const wake_lease& l, std::string_view line) {
    std::string out;
    l.render_metrics(out);
    return out.find(line) == std::string::npos ? "missing: " + std::string(line) : "found";
}

}  // namespace

TEST_CASE("wake lease: the outcome message format", "[redis][wake]") {
    const wake_outcome_message m{"agent-a", app_protocol::postgres, outcome::failed, "orders db"};
    CHECK(encode(m) == "1 agent-a postgres failed orders db");
    const auto back = parse_wake_outcome("1 agent-a postgres failed orders db\n");
    REQUIRE(back);
    CHECK(back->origin == "agent-a");
    CHECK(back->protocol == app_protocol::postgres);
    CHECK(back->what == outcome::failed);
    CHECK(back->id == "orders db");
    CHECK(parse_wake_outcome("1 - http ready app.test")->what == outcome::ready);
    CHECK_FALSE(parse_wake_outcome("2 - http ready app.test"));
    CHECK_FALSE(parse_wake_outcome("1 - gopher ready app.test"));
    CHECK_FALSE(parse_wake_outcome("1 - http sleepy app.test"));
    CHECK_FALSE(parse_wake_outcome("1 - http ready"));
    CHECK_FALSE(parse_wake_outcome(""));
}

TEST_CASE("wake lease: one winner, the others follow its outcome", "[redis][wake]") {
    test::redis_server server;
    agent_side a(server, "agent-a", 5000ms);
    agent_side b(server, "agent-b", 5000ms);
    agent_side c(server, "agent-c", 5000ms);
    REQUIRE(eventually([&] { return a.ready() && b.ready() && c.ready(); }));

    CHECK(a.claim(app_protocol::http, "app.test") == claim_result::won);
    CHECK(b.claim(app_protocol::http, "app.test") == claim_result::lost);
    CHECK(c.claim(app_protocol::http, "app.test") == claim_result::lost);
    // Another protocol is another resource.
    CHECK(b.claim(app_protocol::tls, "app.test") == claim_result::won);
    const auto holder = a.command({"GET", "spoa:wake:http:app.test"});
    CHECK(holder.text == "agent-a");
    const auto ttl = a.command({"PTTL", "spoa:wake:http:app.test"});
    CHECK(ttl.integer > 4000);
    CHECK(ttl.integer <= 5000);

    // The subscriptions are confirmed asynchronously: an outcome published before B listens
    // is lost to it (the followers poll for that case), so wait until both listen.
    REQUIRE(eventually([&] {
        return a.command({"PUBLISH", "spoa:wake", "1 - http ready warmup"}).integer == 3;
    }));
    for (auto* side : {&a, &b, &c}) {
        while (side->log->next(100ms)) {
        }
    }

    a.on_loop([&] { a.lease->release(app_protocol::http, "app.test", outcome::ready); });
    for (auto* side : {&b, &c}) {
        const auto got = side->log->next();
        REQUIRE(got);
        CHECK(std::get<0>(*got) == app_protocol::http);
        CHECK(std::get<1>(*got) == "app.test");
        CHECK(std::get<2>(*got) == outcome::ready);
    }
    CHECK_FALSE(a.log->next(50ms));  // its own echo
    // Ready: the key says so for one more lease; a late claim (a follower's periodic one) loses
    // and wakes nothing.
    REQUIRE(eventually([&] {
        return a.command({"GET", "spoa:wake:http:app.test"}).text == "ready:agent-a";
    }));
    CHECK(a.command({"PTTL", "spoa:wake:http:app.test"}).integer > 4000);
    CHECK(c.claim(app_protocol::http, "app.test") == claim_result::lost);
    // Failed: the key is freed, the next start may claim again at once.
    b.on_loop([&] { b.lease->release(app_protocol::tls, "app.test", outcome::failed); });
    REQUIRE(eventually([&] {
        return a.command({"EXISTS", "spoa:wake:tls:app.test"}).integer == 0;
    }));
    CHECK(c.claim(app_protocol::tls, "app.test") == claim_result::won);

    CHECK(metric_line(*a.lease, "spoa_redis_wake_claims_total{result=\"won\"} 1") == "found");
    CHECK(metric_line(*b.lease, "spoa_redis_wake_claims_total{result=\"lost\"} 1") == "found");
    CHECK(metric_line(*c.lease, "spoa_redis_wake_claims_total{result=\"lost\"} 2") == "found");
    CHECK(metric_line(*a.lease, "spoa_redis_wake_outcomes_total{event=\"published\"} 1") ==
          "found");
    CHECK(metric_line(*b.lease, "spoa_redis_wake_outcomes_total{event=\"applied\"} 2") ==
          "found");  // the warm-up and A's
}

TEST_CASE("wake lease: a claim given up frees the key and announces nothing", "[redis][wake]") {
    test::redis_server server;
    agent_side a(server, "agent-a", 5000ms);
    agent_side b(server, "agent-b", 5000ms);
    REQUIRE(eventually([&] { return a.ready() && b.ready(); }));
    REQUIRE(eventually([&] {
        return a.command({"PUBLISH", "spoa:wake", "1 - http ready warmup"}).integer == 2;
    }));
    while (b.log->next(100ms)) {
    }

    REQUIRE(a.claim(app_protocol::http, "late.test") == claim_result::won);
    // Not the holder: B's give-up leaves A's lease alone.
    b.on_loop([&] { b.lease->give_up(app_protocol::http, "late.test"); });
    CHECK(b.command({"GET", "spoa:wake:http:late.test"}).text == "agent-a");
    a.on_loop([&] { a.lease->give_up(app_protocol::http, "late.test"); });
    REQUIRE(eventually([&] {
        return a.command({"EXISTS", "spoa:wake:http:late.test"}).integer == 0;
    }));
    CHECK_FALSE(b.log->next(100ms));
    CHECK(b.claim(app_protocol::http, "late.test") == claim_result::won);
}

TEST_CASE("wake lease: a renewal extends it, left alone it expires and is taken over",
          "[redis][wake]") {
    test::redis_server server;
    agent_side a(server, "agent-a", 2000ms);
    agent_side b(server, "agent-b", 2000ms);
    REQUIRE(eventually([&] { return a.ready() && b.ready(); }));

    REQUIRE(a.claim(app_protocol::http, "slow.test") == claim_result::won);
    const auto pttl = [&] { return a.command({"PTTL", "spoa:wake:http:slow.test"}).integer; };
    REQUIRE(eventually([&] { return pttl() < 1800; }));
    const auto before = pttl();
    a.on_loop([&] { a.lease->renew(app_protocol::http, "slow.test"); });
    REQUIRE(eventually([&] { return pttl() > before + 100; }));
    CHECK(b.claim(app_protocol::http, "slow.test") == claim_result::lost);

    // The holder stops renewing (as a killed agent would): B wins once the lease ran out.
    CHECK(eventually([&] { return b.claim(app_protocol::http, "slow.test") == claim_result::won; },
                     5000ms));
    // The old holder's late renewal and release leave B's lease alone.
    a.on_loop([&] { a.lease->renew(app_protocol::http, "slow.test"); });
    a.on_loop([&] { a.lease->release(app_protocol::http, "slow.test", outcome::failed); });
    REQUIRE(eventually([&] {
        std::string out;
        a.lease->render_metrics(out);
        return out.find("spoa_redis_wake_claims_total{result=\"renew_lost\"} 1") !=
               std::string::npos;
    }));
    // The release's script ran after the renewal (one connection, in order).
    REQUIRE(eventually([&] {
        return metric_line(*a.lease, "spoa_redis_wake_outcomes_total{event=\"published\"} 1") ==
               "found";
    }));
    CHECK(b.command({"GET", "spoa:wake:http:slow.test"}).text == "agent-b");
}

TEST_CASE("wake lease: Redis down, a claim is unknown and nothing waits", "[redis][wake]") {
    test::redis_server server;
    agent_side a(server, "agent-a", 1000ms);
    REQUIRE(eventually([&] { return a.ready(); }));
    server.kill();
    REQUIRE(eventually([&] { return !a.redis->connected(redis_link::command); }));
    const auto started = std::chrono::steady_clock::now();
    CHECK(a.claim(app_protocol::http, "app.test") == claim_result::unknown);
    // Not connected: answered at once, not after a timeout.
    CHECK(std::chrono::steady_clock::now() - started < 200ms);
    CHECK(metric_line(*a.lease, "spoa_redis_wake_claims_total{result=\"unknown\"} 1") == "found");

    server.start();
    REQUIRE(eventually([&] { return a.redis->connected(redis_link::command); }));
    CHECK(a.claim(app_protocol::http, "app.test") == claim_result::won);
}

}  // namespace spoa::handlers::routing
