// The shared cache tier: the value codec, and routers of two agents sharing one private
// redis-server (tests/handlers/redis_server.hpp): what one resolves the other reads without
// calling its resolver (routes and not_found), TTLs as Redis keeps them, bad values and Redis
// down read as misses, invalidation, and coordinated misses (one resolver call for the fleet;
// a lease holder that never answers does not hold the others past their deadline).

#include <spdlog/logger.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.hpp"
#include "spoa/agent/agent.hpp"
#include "spoa/handlers/routing/contract.hpp"
#include "spoa/handlers/routing/redis_client.hpp"
#include "spoa/handlers/routing/router.hpp"
#include "spoa/handlers/routing/shared_route_tier.hpp"
#include "spoa/handlers/routing/shared_route_value.hpp"
#include "spoa/handlers/service_loop.hpp"
#include "spoa/protocol/action.hpp"
#include "spoa/testing/fake_haproxy.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace std::chrono_literals;
namespace spop = spoa::protocol;
using spop::typed_value;
using test::eventually;
using testing::fake_haproxy;
using testing::message_spec;
using testing::owned_value;

// ---- the value codec -----------------------------------------------------------------------

route full_route() {
    route r;
    r.endpoints = {{"127.0.0.1", 9001}, {"::1", 9002}, {"backend.internal", 80}};
    r.paths = {{"/api/v2", {{"127.0.0.1", 9003}}}, {"/api", {{"127.0.0.1", 9004}}}};
    r.metadata = {{"tenant", "alpha"}, {"plan", "pro"}};
    r.ttl = 1500ms;
    r.timeout = 20000ms;
    r.state = backend_state::asleep;
    return r;
}

void check_same(const route& a, const route& b) {
    CHECK(a.endpoints == b.endpoints);
    REQUIRE(a.paths.size() == b.paths.size());
    for (std::size_t i = 0; i < a.paths.size(); ++i) {
        CHECK(a.paths[i].prefix == b.paths[i].prefix);
        CHECK(a.paths[i].endpoints == b.paths[i].endpoints);
    }
    CHECK(a.metadata == b.metadata);
    CHECK(a.ttl == b.ttl);
    CHECK(a.timeout == b.timeout);
    CHECK(a.state == b.state);
}

TEST_CASE("shared value: routes and errors survive a round trip", "[shared_cache]") {
    SECTION("a route with paths, metadata, TTL, timeout and state") {
        const route r = full_route();
        const auto back = decode_shared_value(encode_shared_value(r));
        REQUIRE(back);
        REQUIRE(std::holds_alternative<route>(*back));
        check_same(r, std::get<route>(*back));
    }
    SECTION("a minimal route: no TTL or timeout, ready") {
        route r;
        r.endpoints = {{"10.0.0.1", 5432}};
        const auto back = decode_shared_value(encode_shared_value(r));
        REQUIRE(back);
        check_same(r, std::get<route>(*back));
    }
    SECTION("every error code, with and without a retry hint") {
        for (auto code : {error_code::not_found, error_code::forbidden, error_code::unavailable,
                          error_code::timeout, error_code::internal}) {
            for (auto hint : {std::optional<std::chrono::milliseconds>{},
                              std::optional<std::chrono::milliseconds>{2500ms}}) {
                const resolve_error e{code, "because", hint};
                const auto back = decode_shared_value(encode_shared_value(e));
                REQUIRE(back);
                const auto& got = std::get<resolve_error>(*back);
                CHECK(got.code == code);
                CHECK(got.reason == "because");
                CHECK(got.retry_after == hint);
            }
        }
    }
}

/// msgpack by hand: fixmap / fixstr / positive fixint, enough for the bad values below.
std::string fixstr(std::string_view s) {
    return std::string(1, static_cast<char>(0xa0 | s.size())) + std::string(s);
}

TEST_CASE("shared value: bad values are refused, never thrown", "[shared_cache]") {
    const std::string good = encode_shared_value(full_route());
    std::string problem;
    const auto bad = [&](const std::string& bytes) {
        problem.clear();
        const bool refused = !decode_shared_value(bytes, &problem).has_value();
        return refused && !problem.empty();
    };
    CHECK(bad(""));
    CHECK(bad("not msgpack at all \xc1"));
    CHECK(bad(good + "x"));                       // trailing bytes
    CHECK(bad(good.substr(0, good.size() / 2)));  // cut short
    CHECK(bad(std::string(shared_value_max_bytes + 1, '\x90')));
    // {"v": 2, "route": {...}}: another version.
    CHECK(bad("\x82" + fixstr("v") + "\x02" + fixstr("route") + "\x81" + fixstr("endpoints") +
              "\x91" + fixstr("127.0.0.1:80")));
    // {"v": 1}: no answer.
    CHECK(bad("\x81" + fixstr("v") + "\x01"));
    // {"v": 1, "error": {"code": "nope"}}: unknown code.
    CHECK(bad("\x82" + fixstr("v") + "\x01" + fixstr("error") + "\x81" + fixstr("code") +
              fixstr("nope")));
    // {"v": 1, "route": {}}: a ready route without endpoints.
    CHECK(bad("\x82" + fixstr("v") + "\x01" + fixstr("route") + "\x80"));
    // {"v": 1, "route": {"endpoints": ["no port"]}}
    CHECK(bad("\x82" + fixstr("v") + "\x01" + fixstr("route") + "\x81" + fixstr("endpoints") +
              "\x91" + fixstr("no port")));
    // Deep nesting beyond the bound.
    CHECK(bad(std::string(64, '\x91') + "\x01"));
    // Unknown keys are ignored (a newer writer may add some).
    const auto extra =
        decode_shared_value("\x83" + fixstr("v") + "\x01" + fixstr("new") + "\x01" +
                            fixstr("error") + "\x81" + fixstr("code") + fixstr("not_found"));
    REQUIRE(extra);
    CHECK(std::get<resolve_error>(*extra).code == error_code::not_found);
}

// ---- two agents --------------------------------------------------------------------------------

/// Counts its calls; answers at once, or holds them until release() when `hold`.
class counting_resolver final : public resolver {
  public:
    explicit counting_resolver(resolve_result answer, bool hold = false)
        : answer_(std::move(answer)), hold_(hold) {}
    void resolve(const std::string& /*id*/, const resolve_context& /*ctx*/,
                 resolve_callback done) override {
        calls_++;
        if (hold_) {
            std::lock_guard lock(mutex_);
            pending_.push_back(std::move(done));
            return;
        }
        done(answer_);
    }
    [[nodiscard]] std::string_view name() const noexcept override { return "counting"; }
    [[nodiscard]] int calls() const { return calls_.load(); }
    /// Answers the held calls from a thread of its own (resolvers may answer on any thread).
    void release() {
        std::vector<resolve_callback> batch;
        {
            std::lock_guard lock(mutex_);
            batch.swap(pending_);
        }
        std::thread([&batch, this] {
            for (auto& cb : batch)
                cb(answer_);
        }).join();
    }

  private:
    resolve_result answer_;
    bool hold_;
    std::atomic<int> calls_{0};
    std::mutex mutex_;
    std::vector<resolve_callback> pending_;
};

route route_to(std::uint16_t port) {
    route r;
    r.endpoints = {{"127.0.0.1", port}};
    return r;
}

redis_options redis_for(const std::string& address, bool coordinate) {
    redis_options o;
    o.address = connect_address::parse(address);
    o.command_timeout = 200ms;
    o.reconnect_min = 10ms;
    o.reconnect_max = 50ms;
    o.coordinate_resolves = coordinate;
    o.resolve_lease = 2000ms;
    return o;
}

router_options fleet_router_options() {
    router_options o;
    o.cache.ttl = 5000ms;
    o.cache.negative_ttl = 3000ms;
    o.resolve_timeout = 800ms;
    return o;
}

/// One agent of the fleet: a service loop, a Redis client, the tier, a router attached to an
/// agent on 127.0.0.1 and a free port.
class fleet_agent {
  public:
    fleet_agent(std::shared_ptr<resolver> r, const std::string& redis_address, std::string id,
                bool coordinate = false, router_options opts = fleet_router_options())
        : service_(std::make_shared<handlers::service_loop>()),
          redis_(std::make_shared<redis_client>(redis_for(redis_address, coordinate), service_,
                                                nullptr)),
          tier_(std::make_shared<shared_route_tier>(redis_, std::move(id), service_, nullptr)),
          router_(std::move(r),
                  ssrf_policy::allowlist({{*cidr::parse("127.0.0.0/8"), "test loopback"}}),
                  std::move(opts), service_, std::make_shared<spdlog::logger>("fleet-test")),
          agent_(config()) {
        router_.share_routes(tier_);
        router_.attach(agent_);
        agent_.start();
        port_ = agent_.bound_addresses().at(0).port;
    }
    ~fleet_agent() {
        agent_.stop(false);
        agent_.wait();
        service_->join();
    }
    fleet_agent(const fleet_agent&) = delete;
    fleet_agent& operator=(const fleet_agent&) = delete;

    [[nodiscard]] fake_haproxy connect() const {
        auto c = fake_haproxy::connect_tcp("127.0.0.1", port_);
        (void)c.handshake(testing::hello_options::v3());
        return c;
    }
    [[nodiscard]] bool redis_up() const { return redis_->connected(redis_link::command); }
    [[nodiscard]] bool subscribed() const { return redis_->connected(redis_link::subscriber); }
    [[nodiscard]] shared_route_tier& tier() { return *tier_; }
    [[nodiscard]] routing::router& router() { return router_; }

    /// One command on this agent's client, waited for (bounded).
    redis_result call(std::vector<std::string> args) {
        auto done = std::make_shared<std::promise<redis_result>>();
        auto answer = done->get_future();
        redis_->command(std::move(args), [done](redis_result r) { done->set_value(std::move(r)); });
        REQUIRE(answer.wait_for(5s) == std::future_status::ready);
        return answer.get();
    }

  private:
    static agent_config config() {
        agent_config cfg;
        cfg.listeners.push_back(listen_address::parse("127.0.0.1:0"));
        cfg.threads = 1;
        cfg.handle_signals = false;
        cfg.close_linger = 200ms;
        cfg.drain_timeout = 500ms;
        return cfg;
    }

    std::shared_ptr<handlers::service_loop> service_;
    std::shared_ptr<redis_client> redis_;
    std::shared_ptr<shared_route_tier> tier_;
    routing::router router_;
    spoa::agent agent_;
    std::uint16_t port_ = 0;
};

/// The variables of one ACK, by name.
std::map<std::string, owned_value> decode(const testing::received_frame& f) {
    REQUIRE(f.type == spop::frame_type::ack);
    std::vector<spop::action> actions;
    REQUIRE(spop::decode_actions({f.payload.data(), f.payload.size()}, actions) ==
            spop::error::none);
    std::map<std::string, owned_value> vars;
    for (const auto& a : actions)
        vars[std::string(a.name)] = owned_value::from(a.value);
    return vars;
}

message_spec http(const std::string& host) {
    return {std::string(contract::message::http),
            {{contract::arg::host, typed_value::string(host)},
             {contract::arg::path, typed_value::string("/")}}};
}

/// What a decision answered: "port <n>", "status <n>", with its cache label.
struct outcome {
    std::string what;
    std::string label;
};

outcome summary(const std::map<std::string, owned_value>& v) {
    outcome o;
    if (const auto it = v.find(std::string(contract::var::port)); it != v.end())
        o.what = "port " + std::to_string(it->second.integer);
    else if (const auto st = v.find(std::string(contract::var::status)); st != v.end())
        o.what = "status " + std::to_string(st->second.integer);
    if (const auto it = v.find(std::string(contract::var::cache)); it != v.end())
        o.label = it->second.bytes;
    return o;
}

outcome ask(fake_haproxy& c, const std::string& host) {
    static std::atomic<std::uint64_t> next_stream{1};
    const std::uint64_t sid = next_stream.fetch_add(2);
    c.send_notify(sid, 1, http(host));
    return summary(decode(c.expect(spop::frame_type::ack, 5000ms)));
}

TEST_CASE("shared cache: what agent A resolved, agent B reads without its resolver",
          "[shared_cache]") {
    test::redis_server server;
    auto ra = std::make_shared<counting_resolver>(route_to(9001));
    auto rb = std::make_shared<counting_resolver>(route_to(9999));  // B's would differ
    fleet_agent a(ra, server.address(), "agent-a");
    fleet_agent b(rb, server.address(), "agent-b");
    REQUIRE(eventually([&] { return a.redis_up() && b.redis_up(); }));

    auto ca = a.connect();
    const auto first = ask(ca, "app.example");
    CHECK(first.what == "port 9001");
    CHECK(first.label == "miss");
    CHECK(ra->calls() == 1);
    // Written with the route TTL (SET PX): the write is fire and forget, so wait for it.
    REQUIRE(eventually([&] { return a.tier().stats().stores == 1; }));
    const auto pttl = a.call({"PTTL", "spoa:cache:http:app.example"}).integer;
    CHECK(pttl > 0);
    CHECK(pttl <= 5000);

    auto cb = b.connect();
    const auto second = ask(cb, "app.example");
    CHECK(second.what == "port 9001");  // A's answer, not B's resolver's
    CHECK(second.label == "miss");      // a miss of B's first tier (see README)
    CHECK(rb->calls() == 0);
    CHECK(b.tier().stats().hits == 1);
    // Now in B's first tier: the next decision is a plain hit, Redis untouched.
    CHECK(ask(cb, "app.example").label == "hit");
    CHECK(b.tier().stats().hits == 1);
    CHECK(b.tier().stats().misses == 0);
    std::string metrics;
    b.tier().render_metrics(metrics);
    CHECK_THAT(metrics, Catch::Contains("spoa_redis_shared_cache_hits_total 1\n"));
    CHECK_THAT(metrics, Catch::Contains("spoa_redis_shared_cache_misses_total 0\n"));
    CHECK_THAT(metrics,
               Catch::Contains("spoa_redis_shared_cache_follows_total{outcome=\"deadline\"} 0\n"));
}

TEST_CASE("shared cache: not_found is shared with the negative TTL", "[shared_cache]") {
    test::redis_server server;
    auto ra = std::make_shared<counting_resolver>(
        resolve_error{error_code::not_found, "no such app", std::nullopt});
    auto rb = std::make_shared<counting_resolver>(route_to(9999));
    fleet_agent a(ra, server.address(), "agent-a");
    fleet_agent b(rb, server.address(), "agent-b");
    REQUIRE(eventually([&] { return a.redis_up() && b.redis_up(); }));

    auto ca = a.connect();
    CHECK(ask(ca, "gone.example").what == "status 404");
    REQUIRE(eventually([&] { return a.tier().stats().stores == 1; }));
    const auto pttl = a.call({"PTTL", "spoa:cache:http:gone.example"}).integer;
    CHECK(pttl > 0);
    CHECK(pttl <= 3000);  // negative_ttl

    auto cb = b.connect();
    CHECK(ask(cb, "gone.example").what == "status 404");
    CHECK(rb->calls() == 0);
    // B's local negative entry lasts no longer than the shared one.
    const auto e = b.router().cache().inspect("http:gone.example");
    REQUIRE(e);
    CHECK(e->expires_ms - e->stored_ms <= 3000);
}

TEST_CASE("shared cache: errors other than not_found and sleeping backends are not shared",
          "[shared_cache]") {
    cache_options c;
    c.ttl = 1000ms;
    c.negative_ttl = 2000ms;
    CHECK(shared_ttl(route_to(1), c) == 1000ms);
    route own = route_to(1);
    own.ttl = 300ms;
    CHECK(shared_ttl(own, c) == 300ms);
    route asleep = route_to(1);
    asleep.state = backend_state::asleep;
    CHECK(shared_ttl(asleep, c) == 0ms);
    CHECK(shared_ttl(resolve_error{error_code::not_found, "", std::nullopt}, c) == 2000ms);
    CHECK(shared_ttl(resolve_error{error_code::not_found, "", 700ms}, c) == 700ms);
    CHECK(shared_ttl(resolve_error{error_code::unavailable, "", std::nullopt}, c) == 0ms);
    CHECK(shared_ttl(resolve_error{error_code::forbidden, "", std::nullopt}, c) == 0ms);
}

TEST_CASE("shared cache: the entry lives for the route's TTL, then B resolves itself",
          "[shared_cache]") {
    test::redis_server server;
    route short_lived = route_to(9001);
    short_lived.ttl = 300ms;
    auto ra = std::make_shared<counting_resolver>(short_lived);
    auto rb = std::make_shared<counting_resolver>(route_to(9002));
    fleet_agent a(ra, server.address(), "agent-a");
    fleet_agent b(rb, server.address(), "agent-b");
    REQUIRE(eventually([&] { return a.redis_up() && b.redis_up(); }));

    auto ca = a.connect();
    CHECK(ask(ca, "brief.example").what == "port 9001");
    REQUIRE(eventually([&] { return a.tier().stats().stores == 1; }));
    const auto pttl = a.call({"PTTL", "spoa:cache:http:brief.example"}).integer;
    CHECK(pttl > 0);
    CHECK(pttl <= 300);
    // Redis drops it at its PX.
    REQUIRE(eventually([&] {
        return a.call({"EXISTS", "spoa:cache:http:brief.example"}).integer == 0;
    }));
    auto cb = b.connect();
    CHECK(ask(cb, "brief.example").what == "port 9002");
    CHECK(rb->calls() == 1);
    CHECK(b.tier().stats().misses == 1);
}

TEST_CASE("shared cache: a bad value is a miss, and the resolver's answer replaces it",
          "[shared_cache]") {
    test::redis_server server;
    auto rb = std::make_shared<counting_resolver>(route_to(9002));
    fleet_agent b(rb, server.address(), "agent-b");
    REQUIRE(eventually([&] { return b.redis_up(); }));
    CHECK_FALSE(b.call({"SET", "spoa:cache:http:bad.example", "\xc1garbage", "PX", "60000"}).error);

    auto cb = b.connect();
    CHECK(ask(cb, "bad.example").what == "port 9002");
    CHECK(rb->calls() == 1);
    const auto st = b.tier().stats();
    CHECK(st.bad_values == 1);
    CHECK(st.misses == 1);
    REQUIRE(eventually([&] { return b.tier().stats().stores == 1; }));
    const auto v = b.call({"GET", "spoa:cache:http:bad.example"});
    REQUIRE(decode_shared_value(v.text));
}

TEST_CASE("shared cache: Redis down, misses resolve as without it", "[shared_cache]") {
    test::redis_server server;
    auto rb = std::make_shared<counting_resolver>(route_to(9002));
    fleet_agent b(rb, server.address(), "agent-b", true);
    REQUIRE(eventually([&] { return b.redis_up(); }));
    server.kill();
    REQUIRE(eventually([&] { return !b.redis_up(); }));

    auto cb = b.connect();
    const auto started = std::chrono::steady_clock::now();
    CHECK(ask(cb, "down.example").what == "port 9002");
    CHECK(std::chrono::steady_clock::now() - started < 800ms);  // within the resolve deadline
    CHECK(rb->calls() == 1);
    CHECK(b.tier().stats().errors >= 1);
    CHECK(b.tier().stats().leases_taken == 0);
}

TEST_CASE("shared cache: a slow Redis costs one command timeout, then the agent resolves",
          "[shared_cache]") {
    test::redis_server server;
    auto rb = std::make_shared<counting_resolver>(route_to(9002));
    fleet_agent b(rb, server.address(), "agent-b", true);
    REQUIRE(eventually([&] { return b.redis_up(); }));
    server.pause();
    auto cb = b.connect();
    const auto started = std::chrono::steady_clock::now();
    CHECK(ask(cb, "paused.example").what == "port 9002");
    CHECK(std::chrono::steady_clock::now() - started < 800ms);
    CHECK(rb->calls() == 1);
    CHECK(b.tier().stats().errors >= 1);
    server.resume();
}

TEST_CASE("shared cache: invalidate deletes the entry for one protocol or all", "[shared_cache]") {
    test::redis_server server;
    auto ra = std::make_shared<counting_resolver>(route_to(9001));
    fleet_agent a(ra, server.address(), "agent-a");
    REQUIRE(eventually([&] { return a.redis_up(); }));
    auto ca = a.connect();
    CHECK(ask(ca, "inv.example").what == "port 9001");
    REQUIRE(eventually([&] { return a.tier().stats().stores == 1; }));
    a.tier().invalidate("INV.example", app_protocol::postgres);  // another protocol: kept
    // Same connection, so after the DEL: the HTTP entry is still there.
    CHECK(a.call({"EXISTS", "spoa:cache:http:inv.example"}).integer == 1);
    a.tier().invalidate("INV.Example", std::nullopt);  // every protocol, normalised as a host
    REQUIRE(eventually([&] {
        return a.call({"EXISTS", "spoa:cache:http:inv.example"}).integer == 0;
    }));
    CHECK(a.tier().stats().invalidations == 2);
}

TEST_CASE("coordinated misses: N concurrent misses on two agents make one resolver call",
          "[shared_cache]") {
    test::redis_server server;
    // One slow resolver behind both agents (a remote control plane), counting every call.
    auto plane = std::make_shared<counting_resolver>(route_to(9001), true);
    fleet_agent a(plane, server.address(), "agent-a", true);
    fleet_agent b(plane, server.address(), "agent-b", true);
    REQUIRE(eventually([&] { return a.redis_up() && b.redis_up(); }));
    REQUIRE(eventually([&] { return a.subscribed() && b.subscribed(); }));

    constexpr int n = 8;
    auto ca = a.connect();
    auto cb = b.connect();
    for (int i = 0; i < n; ++i) {
        ca.send_notify(1000 + 2 * i, 1, http("busy.example"));
        cb.send_notify(1000 + 2 * i, 1, http("busy.example"));
    }
    // One agent took the lease and called the resolver; the other waits for it.
    REQUIRE(eventually([&] {
        const auto sa = a.tier().stats();
        const auto sb = b.tier().stats();
        return plane->calls() == 1 && sa.leases_taken + sb.leases_taken == 1 &&
               sa.waiting + sb.waiting == 1;
    }));
    plane->release();
    for (auto* c : {&ca, &cb}) {
        for (int i = 0; i < n; ++i) {
            const auto o = summary(decode(c->expect(spop::frame_type::ack, 5000ms)));
            CHECK(o.what == "port 9001");
        }
    }
    CHECK(plane->calls() == 1);
    const auto sa = a.tier().stats();
    const auto sb = b.tier().stats();
    CHECK(sa.follows[static_cast<std::size_t>(follow_outcome::shared)] +
              sb.follows[static_cast<std::size_t>(follow_outcome::shared)] ==
          1);
    CHECK(sa.waiting + sb.waiting == 0);
    // The lease was released.
    CHECK(a.call({"EXISTS", "spoa:resolve:http:busy.example"}).integer == 0);
}

TEST_CASE("coordinated misses: a lease holder that never answers does not hold the others",
          "[shared_cache]") {
    test::redis_server server;
    auto stuck = std::make_shared<counting_resolver>(route_to(9001), true);  // never released
    auto rb = std::make_shared<counting_resolver>(route_to(9002));
    fleet_agent a(stuck, server.address(), "agent-a", true);
    fleet_agent b(rb, server.address(), "agent-b", true);
    REQUIRE(eventually([&] { return a.redis_up() && b.redis_up(); }));

    auto ca = a.connect();
    ca.send_notify(1, 1, http("stuck.example"));
    REQUIRE(eventually([&] { return stuck->calls() == 1 && a.tier().stats().leases_taken == 1; }));

    auto cb = b.connect();
    const auto started = std::chrono::steady_clock::now();
    const auto o = ask(cb, "stuck.example");
    const auto took = std::chrono::steady_clock::now() - started;
    CHECK(o.what == "port 9002");
    CHECK(took < 800ms);   // the resolve deadline
    CHECK(took >= 300ms);  // it did wait (half the deadline) before resolving itself
    CHECK(rb->calls() == 1);
    CHECK(b.tier().stats().follows[static_cast<std::size_t>(follow_outcome::deadline)] == 1);
    // A answers 504 at its deadline and releases its lease.
    CHECK(summary(decode(ca.expect(spop::frame_type::ack, 5000ms))).what == "status 504");
    REQUIRE(eventually([&] {
        return a.call({"EXISTS", "spoa:resolve:http:stuck.example"}).integer == 0;
    }));
}

TEST_CASE("coordinated misses: a leader that shares nothing sends the others to resolve at once",
          "[shared_cache]") {
    test::redis_server server;
    auto plane = std::make_shared<counting_resolver>(
        resolve_error{error_code::unavailable, "control plane busy", std::nullopt}, true);
    fleet_agent a(plane, server.address(), "agent-a", true);
    fleet_agent b(plane, server.address(), "agent-b", true);
    REQUIRE(eventually([&] { return a.subscribed() && b.subscribed(); }));
    REQUIRE(eventually([&] { return a.redis_up() && b.redis_up(); }));

    auto ca = a.connect();
    auto cb = b.connect();
    ca.send_notify(1, 1, http("busy.example"));
    REQUIRE(eventually([&] { return plane->calls() == 1; }));
    cb.send_notify(1, 1, http("busy.example"));
    REQUIRE(eventually([&] { return b.tier().stats().waiting == 1; }));
    plane->release();  // A's answer: unavailable, not shared; B is told and asks itself
    CHECK(summary(decode(ca.expect(spop::frame_type::ack, 5000ms))).what == "status 503");
    REQUIRE(eventually([&] { return plane->calls() == 2; }));
    CHECK(b.tier().stats().follows[static_cast<std::size_t>(follow_outcome::no_share)] == 1);
    plane->release();
    CHECK(summary(decode(cb.expect(spop::frame_type::ack, 5000ms))).what == "status 503");
}

}  // namespace
}  // namespace spoa::handlers::routing
