// remote_resolver against the Python reference control plane (a child process) and against fake
// servers that send what a correct server never would.

#include "spoa/handlers/routing/remote_resolver.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <msgpack.hpp>
#include <mutex>
#include <set>

#include "remote_test_util.hpp"

using spoa::ip_address;
namespace handlers = spoa::handlers;
using namespace spoa::handlers::routing;
using namespace spoa::remote_test;

namespace {

const char* const routes_json = R"({
  "routes": {
    "http": {
      "app.example.com": {
        "endpoints": ["127.0.0.1:8080", "[::1]:8081"],
        "paths": {"/api": ["127.0.0.1:9000"], "/api/v2": ["127.0.0.1:9002"]},
        "metadata": {"tenant": "acme", "tier": "gold"},
        "ttl_ms": 1500, "timeout_ms": 700, "state": "ready"
      },
      "*.wild.test": {"endpoints": ["10.1.2.3:80"]},
      "sleepy.example.com": {"state": "asleep"},
      "down.example.com": {"error": "unavailable", "reason": "maintenance", "retry_after_ms": 3000},
      "banned.example.com": {"error": "forbidden", "reason": "tenant suspended"},
      "slow.example.com": {"endpoints": ["127.0.0.1:8080"], "delay_ms": 2000}
    },
    "postgres": {
      "orders": {"endpoints": ["127.0.0.1:5432"]}
    }
  }
})";

remote_resolver_options options_for(const std::string& address) {
    remote_resolver_options o;
    o.addresses = {connect_address::parse(address)};
    o.call_timeout = 1000ms;
    o.reconnect_min = 10ms;
    o.reconnect_max = 100ms;
    o.max_pending = 10000;
    return o;
}

resolve_context http() {
    return {};
}

resolve_context proto(app_protocol p) {
    resolve_context c;
    c.proto = p;
    return c;
}

route as_route(const std::optional<resolve_result>& r) {
    REQUIRE(r.has_value());
    if (const auto* e = std::get_if<resolve_error>(&*r))
        FAIL("expected a route, got " << to_string(e->code) << ": " << e->reason);
    return std::get<route>(*r);
}

resolve_error as_error(const std::optional<resolve_result>& r) {
    REQUIRE(r.has_value());
    REQUIRE(std::holds_alternative<resolve_error>(*r));
    return std::get<resolve_error>(*r);
}

#define REQUIRE_PYTHON()                                                                   \
    do {                                                                                   \
        if (!python_available()) {                                                         \
            WARN("skipped: " SPOA_TEST_PYTHON " cannot import msgpack (python3-msgpack)"); \
            return;                                                                        \
        }                                                                                  \
    } while (0)

/// A server, a service loop and a resolver connected to it.
struct fixture {
    temp_dir dir;
    control_plane server;
    std::shared_ptr<handlers::service_loop> loop = std::make_shared<handlers::service_loop>();
    std::shared_ptr<remote_resolver> resolver;

    explicit fixture(std::vector<std::string> extra = {}, remote_resolver_options* opts = nullptr)
        : server(dir.write("routes.json", routes_json), "127.0.0.1:0", std::move(extra)) {
        auto o = opts ? *opts : options_for(server.address());
        o.addresses = {connect_address::parse(server.address())};
        resolver = std::make_shared<remote_resolver>(o, loop, nullptr);
        REQUIRE(eventually([&] { return resolver->connected(); }));
    }
    ~fixture() {
        resolver.reset();
        loop->join();
    }
};

}  // namespace

TEST_CASE("remote resolver: resolve returns the control plane's route", "[remote][unit]") {
    REQUIRE_PYTHON();
    fixture f;
    resolve_context ctx;
    ctx.path = "/api/v2/x";
    ctx.source = ip_address::parse("192.0.2.7");
    ctx.attributes["user"] = "alice";
    const auto res = resolve_sync(*f.resolver, "app.example.com", ctx);
    const route r = as_route(res);
    REQUIRE(r.endpoints == std::vector<endpoint>{{"127.0.0.1", 8080}, {"::1", 8081}});
    REQUIRE(r.paths.size() == 2);
    CHECK(r.paths[0].prefix == "/api/v2");  // longest prefix first
    CHECK(r.paths[0].endpoints == std::vector<endpoint>{{"127.0.0.1", 9002}});
    CHECK(r.paths[1].prefix == "/api");
    CHECK(r.metadata == std::map<std::string, std::string>{{"tenant", "acme"}, {"tier", "gold"}});
    CHECK(r.ttl == std::chrono::milliseconds(1500));
    CHECK(r.timeout == std::chrono::milliseconds(700));
    CHECK(r.state == backend_state::ready);

    CHECK(as_route(resolve_sync(*f.resolver, "a.wild.test")).endpoints ==
          std::vector<endpoint>{{"10.1.2.3", 80}});
    CHECK(as_route(resolve_sync(*f.resolver, "orders", proto(app_protocol::postgres))).endpoints ==
          std::vector<endpoint>{{"127.0.0.1", 5432}});
    const route sleepy = as_route(resolve_sync(*f.resolver, "sleepy.example.com"));
    CHECK(sleepy.state == backend_state::asleep);
    CHECK(sleepy.endpoints.empty());

    CHECK(f.server.count("resolve", "http/app.example.com") == 1);
    CHECK(f.server.count("resolve", "postgres/orders") == 1);
    const auto st = f.resolver->remote_stats();
    CHECK(st.resolve.calls == 4);
    CHECK(st.resolve.errors == 0);
    CHECK(st.connections == 1);
    CHECK(f.resolver->stats().calls == 4);
    CHECK(f.resolver->call_latency("resolve").count() == 4);
}

TEST_CASE("remote resolver: errors of the control plane keep their code and reason",
          "[remote][unit]") {
    REQUIRE_PYTHON();
    fixture f;
    SECTION("unknown id: not_found with the server's reason") {
        const auto e = as_error(resolve_sync(*f.resolver, "nope.example.com"));
        CHECK(e.code == error_code::not_found);
        CHECK(e.reason == "no http route for 'nope.example.com'");
        // Same id, other protocol: ids live in one namespace per protocol.
        CHECK(
            as_error(resolve_sync(*f.resolver, "app.example.com", proto(app_protocol::tls))).code ==
            error_code::not_found);
    }
    SECTION("per-route errors with retry_after") {
        const auto e = as_error(resolve_sync(*f.resolver, "down.example.com"));
        CHECK(e.code == error_code::unavailable);
        CHECK(e.reason == "maintenance");
        CHECK(e.retry_after == std::chrono::milliseconds(3000));
        const auto b = as_error(resolve_sync(*f.resolver, "banned.example.com"));
        CHECK(b.code == error_code::forbidden);
        CHECK(b.reason == "tenant suspended");
        CHECK_FALSE(b.retry_after.has_value());
        CHECK(f.resolver->stats().errors == 2);
    }
    CHECK(f.resolver->connected());  // an error answer is not a connection problem
}

TEST_CASE("remote resolver: a call not answered in time fails with timeout", "[remote][unit]") {
    REQUIRE_PYTHON();
    auto o = options_for("127.0.0.1:1");
    o.call_timeout = 200ms;
    SECTION("--delay-ms longer than the call timeout") {
        fixture f({"--delay-ms", "600"}, &o);
        const auto start = std::chrono::steady_clock::now();
        const auto e = as_error(resolve_sync(*f.resolver, "app.example.com"));
        const auto took = std::chrono::steady_clock::now() - start;
        CHECK(e.code == error_code::timeout);
        CHECK(took >= 190ms);
        CHECK(took < 1500ms);  // generous: a loaded machine; the code already proves it
        // The late answer is ignored, and the connection stays usable.
        std::this_thread::sleep_for(500ms);
        CHECK(f.resolver->connected());
        CHECK(f.resolver->remote_stats().resolve.timeouts == 1);
        CHECK(f.resolver->remote_stats().protocol_errors == 0);
        f.server.admin("delay 0");
        CHECK(as_route(resolve_sync(*f.resolver, "app.example.com")).endpoints.size() == 2);
    }
    SECTION("the server stops answering (admin pause), then answers again") {
        fixture f({}, &o);
        f.server.admin("pause");
        CHECK(as_error(resolve_sync(*f.resolver, "app.example.com")).code == error_code::timeout);
        CHECK(as_error(resolve_sync(*f.resolver, "a.wild.test")).code == error_code::timeout);
        f.server.admin("resume");
        CHECK(as_route(resolve_sync(*f.resolver, "app.example.com")).endpoints.size() == 2);
        CHECK(f.resolver->remote_stats().resolve.timeouts == 2);
    }
    SECTION("one slow route does not hold up the others") {
        fixture f({}, &o);
        CHECK(as_error(resolve_sync(*f.resolver, "slow.example.com")).code == error_code::timeout);
        CHECK(as_route(resolve_sync(*f.resolver, "app.example.com")).endpoints.size() == 2);
    }
}

TEST_CASE("remote resolver: an unreachable control plane fails calls fast with unavailable",
          "[remote][unit]") {
    // A port nobody listens on: bind one, read its number, close it.
    std::string address;
    {
        fake_server probe([](int, int) {});
        address = probe.address();
    }
    auto loop = std::make_shared<handlers::service_loop>();
    auto o = options_for(address);
    o.call_timeout = 2000ms;  // failing must not wait for it
    auto r = std::make_shared<remote_resolver>(o, loop, nullptr);
    for (int i = 0; i < 20; ++i) {
        const auto start = std::chrono::steady_clock::now();
        const auto e = as_error(resolve_sync(*r, "app.example.com"));
        CHECK(e.code == error_code::unavailable);
        CHECK_THAT(e.reason, Catch::Contains("control plane unreachable"));
        CHECK(std::chrono::steady_clock::now() - start < 1000ms);  // the call timeout is 2 s
        const auto w = wake_sync(*r, "app.example.com");
        REQUIRE(w.has_value());
        REQUIRE(w->has_value());
        CHECK((*w)->code == error_code::unavailable);
        std::this_thread::sleep_for(10ms);
    }
    CHECK_FALSE(r->connected());
    CHECK(r->reconnects() > 0);  // it keeps trying
    CHECK(r->remote_stats().pending == 0);
    // Notifications are dropped, not queued.
    r->track_activity("app.example.com", app_protocol::http);
    CHECK(r->remote_stats().notifications_dropped >= 1);
    r.reset();
    loop->join();
}

TEST_CASE("remote resolver: reconnects after the control plane restarts", "[remote][unit]") {
    REQUIRE_PYTHON();
    temp_dir dir;
    const auto routes = dir.write("routes.json", routes_json);
    auto server = std::make_unique<control_plane>(routes);
    const std::string address = server->address();
    auto loop = std::make_shared<handlers::service_loop>();
    auto r = std::make_shared<remote_resolver>(options_for(address), loop, nullptr);
    REQUIRE(as_route(resolve_sync(*r, "app.example.com")).endpoints.size() == 2);

    SECTION("calls waiting when the connection drops fail with unavailable") {
        auto p = std::make_shared<std::promise<resolve_result>>();
        auto fut = p->get_future();
        r->resolve("slow.example.com", http(), [p](resolve_result res) { p->set_value(res); });
        std::this_thread::sleep_for(100ms);  // the request is on the wire
        server->kill();
        REQUIRE(fut.wait_for(2s) == std::future_status::ready);
        const auto res = fut.get();
        REQUIRE(std::holds_alternative<resolve_error>(res));
        CHECK(std::get<resolve_error>(res).code == error_code::unavailable);
        CHECK_THAT(std::get<resolve_error>(res).reason, Catch::Contains("connection lost"));
    }
    SECTION("server killed") {
        server->kill();
    }
    REQUIRE(eventually([&] { return !r->connected(); }));
    CHECK(as_error(resolve_sync(*r, "app.example.com")).code == error_code::unavailable);

    // Same address again: the resolver finds it on its own.
    server = std::make_unique<control_plane>(routes, address);
    REQUIRE(eventually([&] { return r->connected(); }));
    CHECK(as_route(resolve_sync(*r, "app.example.com")).endpoints.size() == 2);
    // At least 2, not exactly: under load an extra short-lived connection around the restart
    // was seen (likely a reconnect reaching the killed server's socket before the kernel closed
    // it); what this test is about is that it reconnects on its own.
    CHECK(r->remote_stats().connections >= 2);
    CHECK(r->reconnects() >= 1);
    r.reset();
    loop->join();
}

TEST_CASE("remote resolver: invalidate pushes reach the handler", "[remote][unit]") {
    REQUIRE_PYTHON();
    fixture f;
    std::mutex m;
    std::vector<std::pair<std::string, std::optional<app_protocol>>> seen;
    f.resolver->set_invalidation_handler([&](std::string id, std::optional<app_protocol> p) {
        CHECK(f.loop->on_loop_thread());
        std::lock_guard lock(m);
        seen.emplace_back(std::move(id), p);
    });
    const auto n = [&] {
        std::lock_guard lock(m);
        return seen.size();
    };

    // Change a route: the server pushes [id, protocol]; the next resolve sees the new route.
    CHECK_THAT(f.server.admin(R"(set http app.example.com {"endpoints": ["127.0.0.1:7777"]})"),
               Catch::Contains("\"pushed\": 1"));
    REQUIRE(eventually([&] { return n() == 1; }));
    {
        std::lock_guard lock(m);
        CHECK(seen[0].first == "app.example.com");
        CHECK(seen[0].second == app_protocol::http);
    }
    CHECK(as_route(resolve_sync(*f.resolver, "app.example.com")).endpoints ==
          std::vector<endpoint>{{"127.0.0.1", 7777}});

    // [id] alone: every protocol.
    f.server.admin("invalidate orders");
    REQUIRE(eventually([&] { return n() == 2; }));
    {
        std::lock_guard lock(m);
        CHECK(seen[1].first == "orders");
        CHECK_FALSE(seen[1].second.has_value());
    }
    f.server.admin("delete postgres orders");
    REQUIRE(eventually([&] { return n() == 3; }));
    CHECK(as_error(resolve_sync(*f.resolver, "orders", proto(app_protocol::postgres))).code ==
          error_code::not_found);
    CHECK(f.resolver->stats().invalidations == 3);

    // A throwing handler is contained.
    f.resolver->set_invalidation_handler(
        [](std::string, std::optional<app_protocol>) { throw std::runtime_error("boom"); });
    f.server.admin("invalidate x.example.com http");
    REQUIRE(eventually([&] { return f.resolver->stats().invalidations == 4; }));
    CHECK(f.resolver->connected());
    CHECK(as_route(resolve_sync(*f.resolver, "a.wild.test")).endpoints.size() == 1);
}

TEST_CASE("remote resolver: no invalidation handler runs once it was removed", "[remote][unit]") {
    // The handler is a closure over the caller's objects (main: the router). Once
    // set_invalidation_handler(nullptr) or the destructor returned, the caller may free them: a
    // handler still running on the service loop then would use freed memory.
    REQUIRE_PYTHON();
    const bool destroy = GENERATE(false, true);
    CAPTURE(destroy);
    fixture f;
    std::atomic<bool> entered{false};
    std::atomic<bool> removed{false};
    std::atomic<bool> ran_after_removal{false};
    f.resolver->set_invalidation_handler([&](std::string, std::optional<app_protocol>) {
        entered = true;
        std::this_thread::sleep_for(300ms);
        if (removed.load()) ran_after_removal = true;
    });
    f.server.admin("invalidate x.example.com http");
    REQUIRE(eventually([&] { return entered.load(); }));
    if (destroy) {
        f.resolver.reset();
    } else {
        f.resolver->set_invalidation_handler(nullptr);
    }
    removed = true;
    // Let the loop finish whatever it was doing before the locals go.
    std::promise<void> flushed;
    f.loop->post([&](uv_loop_t*) { flushed.set_value(); });
    REQUIRE(flushed.get_future().wait_for(5s) == std::future_status::ready);
    CHECK_FALSE(ran_after_removal.load());
}

TEST_CASE("remote resolver: the invalidation handler may replace itself or drop the resolver",
          "[remote][unit]") {
    REQUIRE_PYTHON();
    fixture f;
    std::atomic<int> calls{0};
    std::promise<void> done;
    f.resolver->set_invalidation_handler([&](std::string, std::optional<app_protocol>) {
        ++calls;
        // On the loop thread, inside the push: neither may deadlock.
        f.resolver->set_invalidation_handler([&](std::string, std::optional<app_protocol>) {
            ++calls;
            f.resolver.reset();
            done.set_value();
        });
    });
    f.server.admin("invalidate a.example.com");
    REQUIRE(eventually([&] { return calls.load() == 1; }));
    f.server.admin("invalidate b.example.com");
    REQUIRE(done.get_future().wait_for(5s) == std::future_status::ready);
    CHECK(calls.load() == 2);
}

TEST_CASE("remote resolver: wake and the notifications", "[remote][unit]") {
    REQUIRE_PYTHON();
    fixture f;
    const auto w = wake_sync(*f.resolver, "sleepy.example.com");
    REQUIRE(w.has_value());
    CHECK_FALSE(w->has_value());  // nil result: waking
    CHECK_THAT(f.server.admin("stats"),
               Catch::Contains(R"({"id": "sleepy.example.com", "protocol": "http"})"));
    const auto missing = wake_sync(*f.resolver, "nope.example.com");
    REQUIRE(missing.has_value());
    REQUIRE(missing->has_value());
    CHECK((*missing)->code == error_code::not_found);
    CHECK(f.resolver->remote_stats().wake.calls == 2);
    CHECK(f.resolver->remote_stats().wake.errors == 1);

    f.resolver->track_activity("app.example.com", app_protocol::http);
    resolve_context ctx = proto(app_protocol::postgres);
    ctx.attributes["user"] = "bob";
    f.resolver->on_connect("orders", ctx);
    f.resolver->on_disconnect("orders", disconnect_report{10, 20, 300ms});
    CHECK(eventually([&] {
        return f.server.count("activity", "http/app.example.com") == 1 &&
               f.server.count("connect", "postgres/orders") == 1 &&
               f.server.count("disconnect", "-/orders") == 1;
    }));
    CHECK(f.resolver->remote_stats().notifications_sent == 3);
}

TEST_CASE("remote resolver: over a Unix socket", "[remote][unit]") {
    REQUIRE_PYTHON();
    temp_dir dir;
    control_plane server(dir.write("routes.json", routes_json), "unix:" + dir.path() + "/cp.sock");
    CHECK(server.address() == "unix:" + dir.path() + "/cp.sock");
    auto loop = std::make_shared<handlers::service_loop>();
    auto r = std::make_shared<remote_resolver>(options_for(server.address()), loop, nullptr);
    CHECK(as_route(resolve_sync(*r, "app.example.com")).endpoints.size() == 2);
    CHECK(as_error(resolve_sync(*r, "nope")).code == error_code::not_found);
    r.reset();
    loop->join();
}

TEST_CASE("remote resolver: many concurrent calls, answered out of order", "[remote][unit]") {
    REQUIRE_PYTHON();
    constexpr int n = 300;
    std::string json = R"({"routes": {"http": {)";
    for (int i = 0; i < n; ++i) {
        if (i) json += ",";
        // Later ids answer sooner: the answers come back in another order than the requests.
        json += "\"svc-" + std::to_string(i) + ".test\": {\"endpoints\": [\"10.0." +
                std::to_string(i / 256) + "." + std::to_string(i % 256) + ":" +
                std::to_string(1000 + i) + "\"], \"delay_ms\": " + std::to_string(300 - i) + "}";
    }
    json += "}}}";
    temp_dir dir;
    control_plane server(dir.write("routes.json", json));
    auto loop = std::make_shared<handlers::service_loop>();
    auto o = options_for(server.address());
    o.call_timeout = 3000ms;
    auto r = std::make_shared<remote_resolver>(o, loop, nullptr);
    REQUIRE(eventually([&] { return r->connected(); }));

    std::mutex m;
    std::vector<int> order;
    std::atomic<int> wrong{0};
    std::atomic<int> done{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = t; i < n; i += 4) {
                r->resolve(
                    "svc-" + std::to_string(i) + ".test", http(), [&, i](resolve_result res) {
                        const auto* rt = std::get_if<route>(&res);
                        if (!rt || rt->endpoints.size() != 1 || rt->endpoints[0].port != 1000 + i)
                            ++wrong;
                        {
                            std::lock_guard lock(m);
                            order.push_back(i);
                        }
                        ++done;
                    });
            }
        });
    }
    for (auto& t : threads)
        t.join();
    REQUIRE(eventually([&] { return done == n; }, 10s));
    CHECK(wrong == 0);
    {
        std::lock_guard lock(m);
        CHECK_FALSE(std::is_sorted(order.begin(), order.end()));
        CHECK(std::set<int>(order.begin(), order.end()).size() == n);
    }
    CHECK(r->remote_stats().resolve.calls == n);
    CHECK(r->remote_stats().resolve.errors == 0);
    CHECK(r->remote_stats().pending == 0);
    r.reset();
    loop->join();
}

TEST_CASE("remote resolver: calls beyond max_pending fail with unavailable", "[remote][unit]") {
    REQUIRE_PYTHON();
    auto o = options_for("127.0.0.1:1");
    o.max_pending = 3;
    o.call_timeout = 300ms;
    fixture f({}, &o);
    f.server.admin("pause");
    std::atomic<int> timeouts{0};
    for (int i = 0; i < 3; ++i) {
        f.resolver->resolve("app.example.com", http(), [&](resolve_result res) {
            const auto* e = std::get_if<resolve_error>(&res);
            if (e && e->code == error_code::timeout) ++timeouts;
        });
    }
    const auto e = as_error(resolve_sync(*f.resolver, "app.example.com"));
    CHECK(e.code == error_code::unavailable);
    CHECK_THAT(e.reason, Catch::Contains("too many pending"));
    REQUIRE(eventually([&] { return timeouts == 3; }));
    f.server.admin("resume");
    CHECK(as_route(resolve_sync(*f.resolver, "app.example.com")).endpoints.size() == 2);
}

TEST_CASE("remote resolver: destroying it completes the calls in flight", "[remote][unit]") {
    REQUIRE_PYTHON();
    temp_dir dir;
    control_plane server(dir.write("routes.json", routes_json));
    auto loop = std::make_shared<handlers::service_loop>();
    auto o = options_for(server.address());
    o.call_timeout = 5000ms;
    auto r = std::make_shared<remote_resolver>(o, loop, nullptr);
    REQUIRE(eventually([&] { return r->connected(); }));
    auto p = std::make_shared<std::promise<resolve_result>>();
    auto fut = p->get_future();
    r->resolve("slow.example.com", http(), [p](resolve_result res) { p->set_value(res); });
    std::this_thread::sleep_for(50ms);
    r.reset();
    REQUIRE(fut.wait_for(2s) == std::future_status::ready);
    const auto res = fut.get();
    REQUIRE(std::holds_alternative<resolve_error>(res));
    CHECK(std::get<resolve_error>(res).code == error_code::unavailable);
    loop->join();
}

TEST_CASE("remote resolver: stopping the service loop completes the calls in flight",
          "[remote][unit]") {
    REQUIRE_PYTHON();
    temp_dir dir;
    control_plane server(dir.write("routes.json", routes_json));
    auto loop = std::make_shared<handlers::service_loop>();
    auto o = options_for(server.address());
    o.call_timeout = 5000ms;
    auto r = std::make_shared<remote_resolver>(o, loop, nullptr);
    REQUIRE(eventually([&] { return r->connected(); }));
    auto p = std::make_shared<std::promise<resolve_result>>();
    auto fut = p->get_future();
    r->resolve("slow.example.com", http(), [p](resolve_result res) { p->set_value(res); });
    std::this_thread::sleep_for(50ms);
    loop->join();
    REQUIRE(fut.wait_for(1s) == std::future_status::ready);
    CHECK(std::get<resolve_error>(fut.get()).code == error_code::unavailable);
    // After the loop ended: still an answer, at once.
    CHECK(as_error(resolve_sync(*r, "app.example.com", http(), 1s)).code ==
          error_code::unavailable);
}

// ---- fake servers: malformed input --------------------------------------------------------------

namespace {

std::string pack(const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& fn) {
    msgpack::sbuffer sb;
    msgpack::packer<msgpack::sbuffer> pk(sb);
    fn(pk);
    return {sb.data(), sb.size()};
}

}  // namespace

TEST_CASE("remote resolver: malformed messages reset the connection, never crash",
          "[remote][unit]") {
    using pk_t = msgpack::packer<msgpack::sbuffer>;
    struct malformed_case {
        const char* name;
        std::function<std::string(std::uint32_t msgid)> bytes;
    };
    const std::vector<malformed_case> cases = {
        {"a byte msgpack never uses", [](std::uint32_t) { return std::string("\xc1", 1); }},
        {"not an array", [](std::uint32_t) { return pack([](pk_t& p) { p.pack(42); }); }},
        {"empty array", [](std::uint32_t) { return pack([](pk_t& p) { p.pack_array(0); }); }},
        {"msgid is a string",
         [](std::uint32_t) {
             return pack([](pk_t& p) {
                 p.pack_array(4);
                 p.pack(1);
                 p.pack(std::string("7"));
                 p.pack_nil();
                 p.pack_nil();
             });
         }},
        {"msgid too large",
         [](std::uint32_t) {
             return pack([](pk_t& p) {
                 p.pack_array(4);
                 p.pack(1);
                 p.pack(std::uint64_t{1} << 40);
                 p.pack_nil();
                 p.pack_nil();
             });
         }},
        {"response with five elements",
         [](std::uint32_t id) {
             return pack([id](pk_t& p) {
                 p.pack_array(5);
                 p.pack(1);
                 p.pack(id);
                 p.pack_nil();
                 p.pack_nil();
                 p.pack_nil();
             });
         }},
        {"unknown message type",
         [](std::uint32_t id) {
             return pack([id](pk_t& p) {
                 p.pack_array(4);
                 p.pack(7);
                 p.pack(id);
                 p.pack_nil();
                 p.pack_nil();
             });
         }},
        {"negative message type",
         [](std::uint32_t id) {
             return pack([id](pk_t& p) {
                 p.pack_array(4);
                 p.pack(-1);
                 p.pack(id);
                 p.pack_nil();
                 p.pack_nil();
             });
         }},
        {"invalidate with an integer id",
         [](std::uint32_t) {
             return pack([](pk_t& p) {
                 p.pack_array(3);
                 p.pack(2);
                 p.pack(std::string("invalidate"));
                 p.pack_array(1);
                 p.pack(5);
             });
         }},
        {"invalidate with an unknown protocol",
         [](std::uint32_t) {
             return pack([](pk_t& p) {
                 p.pack_array(3);
                 p.pack(2);
                 p.pack(std::string("invalidate"));
                 p.pack_array(2);
                 p.pack(std::string("a"));
                 p.pack(std::string("gopher"));
             });
         }},
        {"notification params not an array",
         [](std::uint32_t) {
             return pack([](pk_t& p) {
                 p.pack_array(3);
                 p.pack(2);
                 p.pack(std::string("invalidate"));
                 p.pack(std::string("a"));
             });
         }},
        {"a message over 4 MiB",
         [](std::uint32_t) {
             // str32 announcing 100 MB, then 5 MiB of it: the agent gives up at 4 MiB.
             std::string s("\xdb\x05\xf5\xe1\x00", 5);
             s.append(5 * 1024 * 1024, 'a');
             return s;
         }},
        {"nesting too deep", [](std::uint32_t) { return std::string(64, '\x91'); }},
    };

    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            std::atomic<bool> reset_seen{false};
            fake_server server([&](int fd, int index) {
                std::string buf;
                const auto req = read_request(fd, buf);
                if (!req) return;
                if (index == 0) {
                    // First connection: garbage, then the agent must hang up on us.
                    send_all(fd, c.bytes(req->msgid));
                    reset_seen = wait_closed(fd);
                    return;
                }
                // Later connections answer properly.
                send_all(fd, encode_route_response(req->msgid, "127.0.0.1:81"));
                (void)wait_closed(fd);
            });
            auto loop = std::make_shared<handlers::service_loop>();
            auto r =
                std::make_shared<remote_resolver>(options_for(server.address()), loop, nullptr);
            const auto e = as_error(resolve_sync(*r, "app.example.com"));
            CHECK(e.code == error_code::unavailable);
            CHECK_THAT(e.reason, Catch::Contains("malformed"));
            CHECK(eventually([&] { return reset_seen.load(); }));
            CHECK(r->remote_stats().protocol_errors == 1);
            // It reconnects, and the next server answer is used.
            CHECK(eventually([&] {
                const auto res = resolve_sync(*r, "app.example.com");
                return res && std::holds_alternative<route>(*res);
            }));
            r.reset();
            loop->join();
        }
    }
}

TEST_CASE("remote resolver: partial reads and several messages in one read", "[remote][unit]") {
    fake_server server([](int fd, int) {
        std::string buf;
        std::vector<std::uint32_t> ids;
        for (int i = 0; i < 3; ++i) {
            const auto req = read_request(fd, buf);
            if (!req) return;
            ids.push_back(req->msgid);
        }
        // Answers 2 and 3 in one write, out of order, after answer 1 sent byte by byte.
        const std::string first = encode_route_response(ids[0], "127.0.0.1:1001");
        for (char ch : first) {
            send_all(fd, std::string(1, ch));
            std::this_thread::sleep_for(1ms);
        }
        send_all(fd, encode_route_response(ids[2], "127.0.0.1:1003") +
                         encode_route_response(ids[1], "127.0.0.1:1002"));
        (void)wait_closed(fd);
    });
    auto loop = std::make_shared<handlers::service_loop>();
    auto r = std::make_shared<remote_resolver>(options_for(server.address()), loop, nullptr);
    REQUIRE(eventually([&] { return r->connected(); }));
    std::vector<std::promise<resolve_result>> promises(3);
    std::vector<std::future<resolve_result>> futures;
    for (int i = 0; i < 3; ++i) {
        futures.push_back(promises[static_cast<std::size_t>(i)].get_future());
        r->resolve("id" + std::to_string(i), http(), [&promises, i](resolve_result res) {
            promises[static_cast<std::size_t>(i)].set_value(std::move(res));
        });
        std::this_thread::sleep_for(20ms);  // keep the request order
    }
    for (int i = 0; i < 3; ++i) {
        REQUIRE(futures[static_cast<std::size_t>(i)].wait_for(3s) == std::future_status::ready);
        const auto res = futures[static_cast<std::size_t>(i)].get();
        REQUIRE(std::holds_alternative<route>(res));
        CHECK(std::get<route>(res).endpoints[0].port == 1001 + i);
    }
    CHECK(r->remote_stats().protocol_errors == 0);
    r.reset();
    loop->join();
}

TEST_CASE("remote resolver: a result of the wrong shape fails that call only", "[remote][unit]") {
    using pk_t = msgpack::packer<msgpack::sbuffer>;
    const std::vector<std::pair<const char*, std::function<void(pk_t&)>>> results = {
        {"result is an array", [](pk_t& p) { p.pack_array(0); }},
        {"endpoints not strings",
         [](pk_t& p) {
             p.pack_map(1);
             p.pack(std::string("endpoints"));
             p.pack_array(1);
             p.pack(80);
         }},
        {"bad endpoint",
         [](pk_t& p) {
             p.pack_map(1);
             p.pack(std::string("endpoints"));
             p.pack_array(1);
             p.pack(std::string("no-port"));
         }},
        {"negative ttl",
         [](pk_t& p) {
             p.pack_map(2);
             p.pack(std::string("endpoints"));
             p.pack_array(1);
             p.pack(std::string("127.0.0.1:80"));
             p.pack(std::string("ttl_ms"));
             p.pack(-5);
         }},
        {"unknown state",
         [](pk_t& p) {
             p.pack_map(2);
             p.pack(std::string("endpoints"));
             p.pack_array(1);
             p.pack(std::string("127.0.0.1:80"));
             p.pack(std::string("state"));
             p.pack(std::string("dozing"));
         }},
        {"ready without endpoints",
         [](pk_t& p) {
             p.pack_map(1);
             p.pack(std::string("metadata"));
             p.pack_map(0);
         }},
        {"nil result and nil error", [](pk_t& p) { p.pack_nil(); }},
    };
    for (const auto& [name, write_result] : results) {
        DYNAMIC_SECTION(name) {
            fake_server server([&](int fd, int) {
                std::string buf;
                auto req = read_request(fd, buf);
                if (!req) return;
                send_all(fd, pack([&](pk_t& p) {
                             p.pack_array(4);
                             p.pack(1);
                             p.pack(req->msgid);
                             p.pack_nil();
                             write_result(p);
                         }));
                req = read_request(fd, buf);
                if (!req) return;
                send_all(fd, encode_route_response(req->msgid, "127.0.0.1:82"));
                (void)wait_closed(fd);
            });
            auto loop = std::make_shared<handlers::service_loop>();
            auto r =
                std::make_shared<remote_resolver>(options_for(server.address()), loop, nullptr);
            const auto e = as_error(resolve_sync(*r, "x"));
            CHECK(e.code == error_code::internal);
            CHECK(r->connected());
            CHECK(as_route(resolve_sync(*r, "y")).endpoints[0].port == 82);
            CHECK(server.accepted() == 1);  // same connection
            r.reset();
            loop->join();
        }
    }
}

TEST_CASE("remote resolver: error payloads of other shapes", "[remote][unit]") {
    using pk_t = msgpack::packer<msgpack::sbuffer>;
    struct error_case {
        const char* name;
        std::function<void(pk_t&)> error;
        error_code code;
        const char* reason;
    };
    const std::vector<error_case> cases = {
        {"plain string", [](pk_t& p) { p.pack(std::string("database on fire")); },
         error_code::internal, "database on fire"},
        {"unknown code",
         [](pk_t& p) {
             p.pack_map(1);
             p.pack(std::string("code"));
             p.pack(std::string("teapot"));
         },
         error_code::internal, "unknown error code 'teapot'"},
        {"code only",
         [](pk_t& p) {
             p.pack_map(1);
             p.pack(std::string("code"));
             p.pack(std::string("timeout"));
         },
         error_code::timeout, "timeout"},
        {"an integer", [](pk_t& p) { p.pack(3); }, error_code::internal,
         "control plane error of an unexpected type"},
    };
    for (const auto& c : cases) {
        DYNAMIC_SECTION(c.name) {
            fake_server server([&](int fd, int) {
                std::string buf;
                const auto req = read_request(fd, buf);
                if (!req) return;
                send_all(fd, pack([&](pk_t& p) {
                             p.pack_array(4);
                             p.pack(1);
                             p.pack(req->msgid);
                             c.error(p);
                             p.pack_nil();
                         }));
                (void)wait_closed(fd);
            });
            auto loop = std::make_shared<handlers::service_loop>();
            auto r =
                std::make_shared<remote_resolver>(options_for(server.address()), loop, nullptr);
            const auto e = as_error(resolve_sync(*r, "x"));
            CHECK(e.code == c.code);
            CHECK(e.reason == c.reason);
            r.reset();
            loop->join();
        }
    }
}

TEST_CASE("remote resolver: requests from the server get an error answer", "[remote][unit]") {
    std::atomic<bool> answered{false};
    fake_server server([&](int fd, int) {
        send_all(fd, pack([](msgpack::packer<msgpack::sbuffer>& p) {
                     p.pack_array(4);
                     p.pack(0);
                     p.pack(99);
                     p.pack(std::string("ping"));
                     p.pack_array(0);
                 }));
        std::string buf;
        char chunk[256];
        pollfd pfd{fd, POLLIN, 0};
        if (::poll(&pfd, 1, 3000) <= 0) return;
        const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return;
        const auto oh = msgpack::unpack(chunk, static_cast<std::size_t>(n));
        const auto o = oh.get();
        answered = o.type == msgpack::type::ARRAY && o.via.array.size == 4 &&
                   o.via.array.ptr[0].as<int>() == 1 && o.via.array.ptr[1].as<int>() == 99 &&
                   o.via.array.ptr[2].type == msgpack::type::STR;
        (void)wait_closed(fd);
    });
    auto loop = std::make_shared<handlers::service_loop>();
    auto r = std::make_shared<remote_resolver>(options_for(server.address()), loop, nullptr);
    CHECK(eventually([&] { return answered.load(); }));
    CHECK(r->connected());
    r.reset();
    loop->join();
}

TEST_CASE("remote resolver: metrics text", "[remote][unit]") {
    REQUIRE_PYTHON();
    fixture f;
    (void)resolve_sync(*f.resolver, "app.example.com");
    (void)resolve_sync(*f.resolver, "nope");
    std::string out;
    f.resolver->render_metrics(out);
    const std::string addr = "address=\"" + f.server.address() + "\"";
    CHECK_THAT(out, Catch::Contains("spoa_control_plane_connected{" + addr + "} 1"));
    CHECK_THAT(
        out, Catch::Contains("spoa_control_plane_calls_total{" + addr + ",method=\"resolve\"} 2"));
    CHECK_THAT(out, Catch::Contains("spoa_control_plane_call_errors_total{" + addr +
                                    ",method=\"resolve\"} 1"));
    CHECK_THAT(out, Catch::Contains("spoa_control_plane_call_seconds_count{" + addr +
                                    ",method=\"resolve\"} 2"));
    CHECK_THAT(out, Catch::Contains("spoa_control_plane_reconnects_total{" + addr + "} 0"));
}
