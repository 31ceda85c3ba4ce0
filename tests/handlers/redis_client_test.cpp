// The Redis client against a real, private redis-server (tests/handlers/redis_server.hpp):
// connect, commands and their timeout against a stopped server, the pending bound, reconnect
// after a kill and a restart or a reset, resubscription, SELECT, and AUTH with an ACL user.

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "redis_server.hpp"
#include "redis_test_client.hpp"
#include "spoa/handlers/routing/redis_client.hpp"
#include "spoa/handlers/service_loop.hpp"
#include "tcp_relay.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace std::chrono_literals;
using test::eventually;

using test::call;
using test::client_options;

struct fixture {
    std::shared_ptr<service_loop> loop = std::make_shared<service_loop>();
};

}  // namespace

TEST_CASE("redis client: connects, sends commands, reports its state", "[redis]") {
    test::redis_server server(test::redis_server::listen_on::tcp);
    fixture f;
    redis_client c(client_options(server), f.loop, nullptr);
    REQUIRE(eventually([&] { return c.connected(redis_link::command); }));
    REQUIRE(eventually([&] { return c.connected(redis_link::subscriber); }));

    CHECK(call(c, {"PING"}).text == "PONG");
    CHECK_FALSE(call(c, {"SET", "k", std::string("a\0b", 3)}).error);
    CHECK(call(c, {"GET", "k"}).text == std::string("a\0b", 3));  // binary safe
    CHECK(call(c, {"GET", "absent"}).nil);
    CHECK(call(c, {"INCRBY", "n", "5"}).integer == 5);
    const auto bad = call(c, {"NOSUCHCOMMAND"});
    REQUIRE(bad.error);
    CHECK(*bad.error == redis_error::server);
    CHECK(bad.text.find("unknown command") != std::string::npos);

    std::string metrics;
    c.render_metrics(metrics);
    CHECK(metrics.find("spoa_redis_connected{connection=\"command\"} 1") != std::string::npos);
    CHECK(metrics.find("spoa_redis_command_errors_total{reason=\"server\"} 1") !=
          std::string::npos);
    CHECK(metrics.find("spoa_redis_command_seconds_count 6") != std::string::npos);
    f.loop->join();
}

TEST_CASE("redis client: a stopped server times commands out; the bound fails fast", "[redis]") {
    test::redis_server server;
    fixture f;
    auto opts = client_options(server);
    opts.max_pending = 2;
    redis_client c(opts, f.loop, nullptr);
    REQUIRE(eventually([&] { return c.connected(redis_link::command); }));

    server.pause();
    const auto start = std::chrono::steady_clock::now();
    const auto r = call(c, {"PING"});
    const auto took = std::chrono::steady_clock::now() - start;
    REQUIRE(r.error);
    CHECK(*r.error == redis_error::timeout);
    CHECK(took >= 150ms);  // the command_timeout (200 ms), within timer slack
    CHECK(took < 2s);
    // The timed-out PING is still owed by Redis: one more fits, the third fails at once.
    const auto second = std::make_shared<std::promise<redis_result>>();
    c.command({"PING"}, [second](redis_result x) { second->set_value(std::move(x)); });
    const auto third = call(c, {"PING"});
    REQUIRE(third.error);
    CHECK(*third.error == redis_error::overloaded);
    CHECK(*second->get_future().get().error == redis_error::timeout);

    server.resume();
    // The late answers are ignored; the connection serves again.
    REQUIRE(eventually([&] { return c.stats().pending == 0; }));
    CHECK(call(c, {"PING"}).text == "PONG");
    const auto s = c.stats();
    CHECK(s.errors[static_cast<std::size_t>(redis_error::timeout)] == 2);
    CHECK(s.errors[static_cast<std::size_t>(redis_error::overloaded)] == 1);
    f.loop->join();
}

TEST_CASE("redis client: reconnects after a kill and a restart, and resubscribes", "[redis]") {
    test::redis_server server;
    fixture f;
    redis_client c(client_options(server), f.loop, nullptr);
    std::atomic<int> messages{0};
    std::atomic<int> resubscribed{0};
    c.subscribe("spoa:test", [&](std::string_view payload) {
        if (payload == "hello") messages++;
    });
    c.on_resubscribed([&] { resubscribed++; });
    REQUIRE(eventually([&] { return c.connected(redis_link::subscriber); }));
    // Subscribed once PUBLISH counts a receiver.
    REQUIRE(eventually([&] { return call(c, {"PUBLISH", "spoa:test", "hello"}).integer == 1; }));
    REQUIRE(eventually([&] { return messages >= 1; }));
    CHECK(resubscribed == 0);  // the first SUBSCRIBE is no resubscription

    server.kill();
    REQUIRE(eventually(
        [&] { return !c.connected(redis_link::command) && !c.connected(redis_link::subscriber); }));
    const auto down = call(c, {"PING"});
    REQUIRE(down.error);
    CHECK(*down.error == redis_error::unavailable);

    server.start();
    REQUIRE(eventually([&] { return c.connected(redis_link::command); }));
    REQUIRE(eventually([&] { return resubscribed == 1; }));
    const int before = messages;
    CHECK(call(c, {"PUBLISH", "spoa:test", "hello"}).integer == 1);
    REQUIRE(eventually([&] { return messages == before + 1; }));
    CHECK(c.stats().reconnects >= 2);
    CHECK(c.stats().connections >= 4);
    f.loop->join();
}

TEST_CASE("redis client: a connection the server resets is made again at once", "[redis]") {
    // A server that dies with commands unread resets its connections: the socket reports an
    // error rather than an end of file. The health checks are off (client_options), so only
    // the socket's own error can end these connections.
    test::redis_server server(test::redis_server::listen_on::tcp);
    fixture f;
    redis_client c(client_options(server), f.loop, nullptr);
    std::atomic<int> resubscribed{0};
    c.subscribe("spoa:test", [](std::string_view) {});
    c.on_resubscribed([&] { resubscribed++; });
    REQUIRE(eventually([&] { return c.connected(redis_link::subscriber); }));
    REQUIRE(eventually([&] { return call(c, {"PUBLISH", "spoa:test", "x"}).integer == 1; }));

    server.pause();
    c.command({"PING"}, nullptr);                        // unread on the command connection
    c.subscribe("spoa:other", [](std::string_view) {});  // unread on the subscription
    REQUIRE(eventually([&] { return server.connections_with_unread_input() == 2; }));
    server.crash();
    REQUIRE(eventually(
        [&] { return !c.connected(redis_link::command) && !c.connected(redis_link::subscriber); }));

    server.start();
    REQUIRE(eventually([&] { return c.connected(redis_link::command); }));
    REQUIRE(eventually([&] { return resubscribed == 1; }));
    CHECK(call(c, {"PUBLISH", "spoa:other", "y"}).integer == 1);
    f.loop->join();
}

TEST_CASE("redis client: never connected, commands fail at once", "[redis]") {
    test::temp_dir dir;
    fixture f;
    redis_options o;
    o.address = connect_address::parse("unix:" + (dir.path() / "nothing.sock").string());
    o.reconnect_min = 10ms;
    o.reconnect_max = 20ms;
    redis_client c(o, f.loop, nullptr);
    const auto r = call(c, {"PING"});
    REQUIRE(r.error);
    CHECK(*r.error == redis_error::unavailable);
    REQUIRE(eventually([&] { return c.stats().reconnects >= 3; }));
    CHECK_FALSE(c.connected(redis_link::command));
    f.loop->join();
}

TEST_CASE("redis client: SELECT puts commands in the configured database", "[redis]") {
    test::redis_server server;
    fixture f;
    auto opts = client_options(server);
    opts.database = 2;
    redis_client in_two(opts, f.loop, nullptr);
    redis_client in_zero(client_options(server), f.loop, nullptr);
    REQUIRE(eventually([&] {
        return in_two.connected(redis_link::command) && in_zero.connected(redis_link::command);
    }));
    CHECK_FALSE(call(in_two, {"SET", "where", "two"}).error);
    CHECK(call(in_two, {"GET", "where"}).text == "two");
    CHECK(call(in_zero, {"GET", "where"}).nil);
    f.loop->join();
}

TEST_CASE("redis client: AUTH with an ACL user; a wrong password never connects", "[redis]") {
    test::redis_server server(test::redis_server::listen_on::unix_socket,
                              {"--user", "fleet", "on", ">s3cret", "~*", "&*", "+@all"});
    fixture f;
    auto good = client_options(server);
    good.user = "fleet";
    good.password = "s3cret";
    redis_client c(good, f.loop, nullptr);
    REQUIRE(eventually([&] { return c.connected(redis_link::command); }));
    CHECK(call(c, {"ACL", "WHOAMI"}).text == "fleet");

    auto bad = good;
    bad.password = "wrong";
    redis_client refused(bad, f.loop, nullptr);
    REQUIRE(eventually([&] { return refused.stats().reconnects >= 2; }));
    CHECK(refused.stats().connections == 0);
    const auto r = call(refused, {"PING"});
    REQUIRE(r.error);
    CHECK(*r.error == redis_error::unavailable);
    f.loop->join();
}

TEST_CASE("redis client: destroyed with commands pending, each completes once", "[redis]") {
    test::redis_server server;
    fixture f;
    auto c = std::make_unique<redis_client>(client_options(server), f.loop, nullptr);
    REQUIRE(eventually([&] { return c->connected(redis_link::command); }));
    server.pause();
    std::atomic<int> completed{0};
    for (int i = 0; i < 5; ++i)
        c->command({"PING"}, [&](redis_result r) {
            CHECK(r.error);
            completed++;
        });
    c.reset();
    REQUIRE(eventually([&] { return completed == 5; }));
    f.loop->join();
    CHECK(completed == 5);
    server.resume();
}

}  // namespace spoa::handlers::routing

namespace spoa::handlers::routing {
namespace {

/// A lookup the test controls: names map to addresses, anything else fails; counts calls.
class table_lookup final : public host_lookup {
  public:
    explicit table_lookup(std::map<std::string, std::string> names) : names_(std::move(names)) {}
    void lookup(uv_loop_t*, const std::string& host, done_fn done) override {
        calls++;
        std::string to;
        {
            std::lock_guard lock(mutex_);
            const auto it = names_.find(host);
            if (it != names_.end()) to = it->second;
        }
        if (to.empty()) return done({{}, "no such name"});
        done({{*ip_address::parse(to)}, {}});
    }
    void set(const std::string& name, const std::string& address) {
        std::lock_guard lock(mutex_);
        names_[name] = address;
    }
    std::atomic<int> calls{0};

  private:
    std::mutex mutex_;
    std::map<std::string, std::string> names_;
};

}  // namespace

TEST_CASE("redis client: a host name is looked up at every attempt", "[redis]") {
    test::redis_server server(test::redis_server::listen_on::tcp);
    const auto port = connect_address::parse(server.address()).port;
    fixture f;
    SECTION("the system's lookup (localhost)") {
        auto o = client_options(server);
        o.address = connect_address::parse("localhost:" + std::to_string(port));
        redis_client c(o, f.loop, nullptr);
        REQUIRE(eventually([&] { return c.connected(redis_link::command); }));
        CHECK(call(c, {"PING"}).text == "PONG");
    }
    SECTION("a name that does not resolve yet, then does") {
        auto lookup = std::make_shared<table_lookup>(std::map<std::string, std::string>{});
        auto o = client_options(server);
        o.address = connect_address::parse("redis.fleet.test:" + std::to_string(port));
        o.lookup = lookup;
        redis_client c(o, f.loop, nullptr);
        // Not resolvable: attempts go on with the back-off, commands fail at once meanwhile.
        REQUIRE(eventually([&] { return lookup->calls.load() >= 3; }));
        CHECK_FALSE(c.connected(redis_link::command));
        CHECK(call(c, {"PING"}).error == redis_error::unavailable);
        lookup->set("redis.fleet.test", "127.0.0.1");
        REQUIRE(eventually([&] {
            return c.connected(redis_link::command) && c.connected(redis_link::subscriber);
        }));
        CHECK(call(c, {"PING"}).text == "PONG");
    }
    f.loop->join();
}

}  // namespace spoa::handlers::routing

namespace spoa::handlers::routing {

TEST_CASE("redis client: a server that stops answering loses its connection until it answers",
          "[redis][health]") {
    test::redis_server server;
    fixture f;
    auto opts = client_options(server);
    opts.ping_interval = 50ms;
    opts.command_timeout = 100ms;
    opts.connect_timeout = 300ms;
    redis_client c(opts, f.loop, nullptr);
    REQUIRE(eventually([&] { return c.connected(redis_link::command); }));
    server.pause();
    REQUIRE(eventually([&] { return c.stats().health_failures[0] >= 1; }));
    // The kernel still accepts connections for the stopped server, but the handshake's PING
    // goes unanswered: the connection does not come up again while it is stopped.
    REQUIRE(eventually([&] { return !c.connected(redis_link::command); }));
    CHECK(call(c, {"PING"}).error == redis_error::unavailable);
    server.resume();
    REQUIRE(eventually([&] { return c.connected(redis_link::command); }));
    CHECK(call(c, {"PING"}).text == "PONG");
    std::string metrics;
    c.render_metrics(metrics);
    CHECK(metrics.find("spoa_redis_health_check_failures_total{connection=\"command\"}") !=
          std::string::npos);
    f.loop->join();
}

TEST_CASE("redis client: a subscription that delivers nothing is made again", "[redis][health]") {
    test::redis_server server(test::redis_server::listen_on::tcp);
    test::tcp_relay relay(connect_address::parse(server.address()).port);
    fixture f;
    auto opts = client_options(server);
    opts.address = connect_address::parse("127.0.0.1:" + std::to_string(relay.port()));
    opts.ping_interval = 50ms;
    opts.command_timeout = 100ms;
    redis_client c(opts, f.loop, nullptr);
    std::atomic<int> messages{0};
    std::atomic<int> resubscribed{0};
    c.subscribe("spoa:test", [&](std::string_view) { messages++; });
    c.on_resubscribed([&] { resubscribed++; });
    REQUIRE(eventually([&] {
        return c.connected(redis_link::subscriber) &&
               call(c, {"PUBLISH", "spoa:test", "x"}).integer == 1;
    }));
    REQUIRE(eventually([&] { return messages >= 1; }));

    // The path to the subscriber dies silently: its socket stays open, nothing arrives.
    relay.mute_subscribers();
    REQUIRE(eventually([&] { return c.stats().health_failures[1] >= 1; }));
    REQUIRE(eventually([&] { return resubscribed >= 1; }));
    CHECK(c.stats().health_failures[0] == 0);  // the command connection was fine
    // A new subscription connection (a new relayed connection) delivers again.
    const int before = messages;
    REQUIRE(eventually([&] { return call(c, {"PUBLISH", "spoa:test", "y"}).integer == 1; }));
    REQUIRE(eventually([&] { return messages > before; }));
    f.loop->join();
}

}  // namespace spoa::handlers::routing

namespace spoa::handlers::routing {

TEST_CASE("redis client: a handler holding the client does not keep it alive after the stop",
          "[redis]") {
    test::redis_server server;
    std::weak_ptr<redis_client> weak;
    {
        fixture f;
        auto c = std::make_shared<redis_client>(client_options(server), f.loop, nullptr);
        weak = c;
        // What an owner of the client subscribes with may hold the client itself (a cycle
        // through the client's own state).
        c->subscribe("spoa:test", [c](std::string_view) {});
        c->on_resubscribed([c] {});
        REQUIRE(eventually([&] { return c->connected(redis_link::subscriber); }));
        f.loop->join();
    }
    CHECK(weak.expired());
}

}  // namespace spoa::handlers::routing
