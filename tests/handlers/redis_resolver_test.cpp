// The `redis` resolver against a real, private redis-server: a route stored as JSON is found
// with every field, a missing key is not_found, malformed, oversized and non-string values are
// internal (naming the key, logged rate-limited), Redis down, paused or overloaded is
// unavailable/timeout (never not_found), and in a chain static -> redis -> a fallback only
// not_found moves on.

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <sstream>

#include "redis_server.hpp"
#include "redis_test_client.hpp"
#include "spoa/handlers/routing/chain_resolver.hpp"
#include "spoa/handlers/routing/redis_client.hpp"
#include "spoa/handlers/routing/redis_resolver.hpp"
#include "spoa/handlers/routing/static_resolver.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace std::chrono_literals;
using test::eventually;

redis_options options_for(const test::redis_server& server) {
    auto o = test::client_options(server);
    o.key_prefix = "t1:";
    return o;
}

using test::call;

resolve_result resolve(resolver& r, const std::string& id, app_protocol p = app_protocol::http) {
    auto done = std::make_shared<std::promise<resolve_result>>();
    auto answer = done->get_future();
    resolve_context ctx;
    ctx.proto = p;
    r.resolve(id, ctx, [done](resolve_result res) { done->set_value(std::move(res)); });
    REQUIRE(answer.wait_for(5s) == std::future_status::ready);
    return answer.get();
}

resolve_error error_of(const resolve_result& res) {
    REQUIRE(std::holds_alternative<resolve_error>(res));
    return std::get<resolve_error>(res);
}

route route_of(const resolve_result& res) {
    if (const auto* e = std::get_if<resolve_error>(&res)) FAIL("error: " << e->reason);
    return std::get<route>(res);
}

/// A log that the test reads (spdlog's ostream sink, locked by spdlog).
struct captured_log {
    std::ostringstream text;
    std::shared_ptr<spdlog::logger> logger = std::make_shared<spdlog::logger>(
        "redis_resolver_test", std::make_shared<spdlog::sinks::ostream_sink_mt>(text));
    [[nodiscard]] std::size_t lines_with(std::string_view what) {
        logger->flush();
        std::size_t n = 0;
        std::istringstream in(text.str());
        for (std::string line; std::getline(in, line);)
            if (line.find(what) != std::string::npos) ++n;
        return n;
    }
};

/// A Redis, a client on its own service loop, and the resolver under test.
struct fixture {
    explicit fixture(std::size_t max_value = redis_resolver::default_max_value_bytes,
                     std::size_t max_pending = 10000) {
        auto opts = options_for(server);
        opts.max_pending = max_pending;
        client = std::make_shared<redis_client>(opts, loop, log.logger);
        routes = std::make_shared<redis_resolver>(client, log.logger, max_value);
        REQUIRE(eventually([&] { return client->connected(redis_link::command); }));
    }
    ~fixture() { loop->join(); }
    fixture(const fixture&) = delete;
    fixture& operator=(const fixture&) = delete;

    void set(const std::string& key, const std::string& value) {
        REQUIRE(call(*client, {"SET", key, value}).text == "OK");
    }

    test::redis_server server;
    captured_log log;
    std::shared_ptr<service_loop> loop = std::make_shared<service_loop>();
    std::shared_ptr<redis_client> client;
    std::shared_ptr<redis_resolver> routes;
};

/// Stands for the remote resolver at the end of a chain: answers every id, counts the calls.
class fallback_resolver final : public resolver {
  public:
    void resolve(const std::string& id, const resolve_context&, resolve_callback done) override {
        calls.fetch_add(1);
        route r;
        r.endpoints = {endpoint{"10.0.0.9", 80}};
        r.metadata["from"] = "fallback:" + id;
        done(std::move(r));
    }
    [[nodiscard]] std::string_view name() const noexcept override { return "fallback"; }
    std::atomic<int> calls{0};
};

std::shared_ptr<const route_table> static_table() {
    auto table = std::make_shared<route_table>();
    route r;
    r.endpoints = {endpoint{"10.0.0.1", 80}};
    table->add(app_protocol::http, "static.example.com", r);
    return table;
}

}  // namespace

TEST_CASE("redis resolver: a route stored as JSON is found with every field", "[redis]") {
    fixture f;
    CHECK(f.routes->key_of(app_protocol::http, "app.example.com") ==
          "t1:routes:http:app.example.com");
    f.set("t1:routes:http:app.example.com", R"({
        "endpoints": ["10.1.0.1:8080", "[fd00::1]:8081"],
        "paths": {"/api": ["10.1.0.2:9000"], "/api/v2": ["10.1.0.3:9000"]},
        "metadata": {"tenant": "acme", "tier": 2},
        "ttl_ms": 1500, "timeout_ms": 7000, "state": "asleep"})");
    const auto r = route_of(resolve(*f.routes, "app.example.com"));
    CHECK(r.endpoints == std::vector<endpoint>{{"10.1.0.1", 8080}, {"fd00::1", 8081}});
    REQUIRE(r.paths.size() == 2);
    CHECK(r.paths[0].prefix == "/api/v2");  // longest prefix first, as in the static table
    CHECK(r.paths[1].endpoints == std::vector<endpoint>{{"10.1.0.2", 9000}});
    CHECK(r.metadata == std::map<std::string, std::string>{{"tenant", "acme"}, {"tier", "2"}});
    CHECK(r.ttl == 1500ms);
    CHECK(r.timeout == 7000ms);
    CHECK(r.state == backend_state::asleep);

    // The protocol is part of the key; an error entry is an answer too.
    f.set("t1:routes:postgres:orders", R"({"endpoints": ["10.2.0.1:5432"]})");
    CHECK(route_of(resolve(*f.routes, "orders", app_protocol::postgres)).endpoints.size() == 1);
    CHECK(error_of(resolve(*f.routes, "orders", app_protocol::tcp)).code == error_code::not_found);
    f.set("t1:routes:http:blocked.example.com",
          R"({"error": "forbidden", "reason": "suspended", "retry_after_ms": 500})");
    const auto blocked = error_of(resolve(*f.routes, "blocked.example.com"));
    CHECK(blocked.code == error_code::forbidden);
    CHECK(blocked.reason == "suspended");
    CHECK(blocked.retry_after == 500ms);

    const auto s = f.routes->outcome_stats();
    CHECK(s.found == 3);
    CHECK(s.missing == 1);
    CHECK(f.routes->stats().calls == 4);
    CHECK(f.routes->stats().errors == 2);  // not_found and the forbidden entry
    f.routes->invalidate("app.example.com");
    CHECK(f.routes->stats().invalidations == 1);
}

TEST_CASE("redis resolver: a missing key is not_found, naming the key", "[redis]") {
    fixture f;
    const auto e = error_of(resolve(*f.routes, "nowhere.example.com"));
    CHECK(e.code == error_code::not_found);
    CHECK(e.reason.find("t1:routes:http:nowhere.example.com") != std::string::npos);
    CHECK(f.routes->outcome_stats().missing == 1);
}

TEST_CASE("redis resolver: malformed values are internal errors naming the key", "[redis]") {
    fixture f;
    const std::pair<std::string, std::string> cases[] = {
        {"{\"endpoints\": [\"10.0.0.1:80\"", "end of sequence flow not found"},  // broken JSON
        {R"({"endpoints": ["10.0.0.1:80"], "weight": 3})", "unknown key 'weight'"},
        {R"({"endpoints": ["10.0.0.1"]})", "is not host:port"},
        {R"({"metadata": {"a": "b"}})", "a route needs endpoints, paths or error"},
        {R"({"endpoints": ["10.0.0.1:80"], "metadata": {"a": {"b": "c"}}})", "bad conversion"},
        {R"({"endpoints": ["10.0.0.1:80"], "state": "sleeping"})", "unknown state 'sleeping'"},
        {R"(["10.0.0.1:80"])", "a route must be a map"},
        {"", "a route must be a map"},
        {std::string(3000, '[') + std::string(3000, ']'), "line 1"},  // beyond yaml-cpp's depth
    };
    for (const auto& [value, problem] : cases) {
        INFO(value.substr(0, 80));
        f.set("t1:routes:http:bad.example.com", value);
        const auto e = error_of(resolve(*f.routes, "bad.example.com"));
        INFO(e.reason);
        CHECK(e.code == error_code::internal);
        CHECK(e.reason.find("t1:routes:http:bad.example.com") != std::string::npos);
        CHECK(e.reason.find(problem) != std::string::npos);
    }
    // A key of another type is the platform's mistake too, not an outage.
    REQUIRE(
        call(*f.client, {"HSET", "t1:routes:http:hash.example.com", "endpoints", "x"}).integer ==
        1);
    const auto wrong = error_of(resolve(*f.routes, "hash.example.com"));
    CHECK(wrong.code == error_code::internal);
    CHECK(wrong.reason.find("does not hold a string") != std::string::npos);

    const auto n = std::size(cases) + 1;
    CHECK(f.routes->outcome_stats().malformed == n);
    // Logged, but not once per request: one line, the others wait for the next period.
    CHECK(f.log.lines_with("malformed route in Redis key") == 1);
}

TEST_CASE("redis resolver: values over the size limit are refused before parsing", "[redis]") {
    const std::string fits = R"({"endpoints": ["10.0.0.1:80"]})";
    fixture f(fits.size());
    f.set("t1:routes:http:fits.example.com", fits);
    CHECK(route_of(resolve(*f.routes, "fits.example.com")).endpoints.size() == 1);
    f.set("t1:routes:http:big.example.com", fits + " ");
    const auto e = error_of(resolve(*f.routes, "big.example.com"));
    CHECK(e.code == error_code::internal);
    CHECK(e.reason.find("t1:routes:http:big.example.com") != std::string::npos);
    CHECK(e.reason.find(std::to_string(fits.size() + 1) + " bytes, over the limit of " +
                        std::to_string(fits.size())) != std::string::npos);
}

TEST_CASE("redis resolver: Redis down, paused or overloaded is never not_found", "[redis]") {
    fixture f(redis_resolver::default_max_value_bytes, 1);
    f.set("t1:routes:http:app.example.com", R"({"endpoints": ["10.0.0.1:80"]})");

    // Paused: the GET times out; the next one finds the timed-out one still owed (max_pending 1).
    f.server.pause();
    auto first = std::make_shared<std::promise<resolve_result>>();
    f.routes->resolve("app.example.com", {},
                      [first](resolve_result r) { first->set_value(std::move(r)); });
    const auto overloaded = error_of(resolve(*f.routes, "app.example.com"));
    CHECK(overloaded.code == error_code::unavailable);
    CHECK(overloaded.reason.find("overloaded") != std::string::npos);
    CHECK(error_of(first->get_future().get()).code == error_code::timeout);
    f.server.resume();
    REQUIRE(eventually([&] { return f.client->stats().pending == 0; }));
    CHECK(route_of(resolve(*f.routes, "app.example.com")).endpoints.size() == 1);

    // Killed: unavailable at once, for an id that exists and one that does not.
    f.server.kill();
    REQUIRE(eventually([&] { return !f.client->connected(redis_link::command); }));
    for (const auto* id : {"app.example.com", "absent.example.com"}) {
        const auto e = error_of(resolve(*f.routes, id));
        CHECK(e.code == error_code::unavailable);
        CHECK(e.reason.find("Redis unreachable") != std::string::npos);
    }
    CHECK(f.routes->outcome_stats().failed == 4);
    CHECK(f.routes->outcome_stats().missing == 0);

    // Back: routes are read again (the data went with the process).
    f.server.start();
    REQUIRE(eventually([&] { return f.client->connected(redis_link::command); }));
    CHECK(error_of(resolve(*f.routes, "app.example.com")).code == error_code::not_found);
}

TEST_CASE("redis resolver: in a chain static -> redis -> fallback only not_found moves on",
          "[redis]") {
    fixture f;
    auto fallback = std::make_shared<fallback_resolver>();
    auto inner = std::make_shared<chain_resolver>(f.routes, fallback);
    chain_resolver chain(std::make_shared<static_resolver>(static_table()), inner);
    f.set("t1:routes:http:static.example.com", R"({"endpoints": ["10.5.0.1:80"]})");
    f.set("t1:routes:http:redis.example.com", R"({"endpoints": ["10.0.0.2:80"]})");
    f.set("t1:routes:http:broken.example.com", R"({"endpoints": "10.0.0.3:80"})");

    // The static table wins for its ids: Redis is not asked.
    CHECK(route_of(resolve(chain, "static.example.com")).endpoints[0].host == "10.0.0.1");
    CHECK(f.routes->stats().calls == 0);
    CHECK(route_of(resolve(chain, "redis.example.com")).endpoints[0].host == "10.0.0.2");
    CHECK(fallback->calls == 0);
    CHECK(route_of(resolve(chain, "other.example.com")).metadata.at("from") ==
          "fallback:other.example.com");
    CHECK(fallback->calls == 1);
    // A broken value is an answer (internal), not a reason to ask the fallback.
    CHECK(error_of(resolve(chain, "broken.example.com")).code == error_code::internal);
    CHECK(fallback->calls == 1);

    // Redis down: the static ids still resolve; the others fail instead of falling through.
    f.server.kill();
    REQUIRE(eventually([&] { return !f.client->connected(redis_link::command); }));
    CHECK(route_of(resolve(chain, "static.example.com")).endpoints[0].host == "10.0.0.1");
    CHECK(error_of(resolve(chain, "redis.example.com")).code == error_code::unavailable);
    CHECK(error_of(resolve(chain, "other.example.com")).code == error_code::unavailable);
    CHECK(fallback->calls == 1);
    CHECK(inner->fallbacks() == 1);

    // Invalidations reach the redis link through both chains.
    chain.invalidate("redis.example.com");
    CHECK(f.routes->stats().invalidations == 1);
}

}  // namespace spoa::handlers::routing
