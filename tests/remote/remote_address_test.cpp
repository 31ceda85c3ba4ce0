// remote_resolver's addresses: host names looked up at every attempt (the system's getaddrinfo
// with `localhost`, and a scripted lookup whose answers a test changes), lists tried in order,
// and the back-off once every address failed. Only `localhost` and numeric addresses: no test
// depends on external DNS.

#include <netdb.h>
#include <sys/socket.h>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <catch2/catch.hpp>
#include <future>
#include <map>
#include <mutex>

#include "remote_test_util.hpp"
#include "spoa/handlers/routing/remote_resolver.hpp"

using spoa::ip_address;
namespace handlers = spoa::handlers;
using namespace spoa::handlers::routing;
using namespace spoa::remote_test;

namespace {

/// Names a test controls: `set` what a name stands for, `hold` to leave its lookups unanswered
/// (a stuck DNS server) until `release` runs on the loop thread. Threads: lookup() and release()
/// on the service loop, the others on the test's; everything under the mutex.
class scripted_lookup final : public host_lookup {
  public:
    void set(const std::string& host, std::vector<ip_address> addresses) {
        std::lock_guard lock(mutex_);
        answers_[host] = std::move(addresses);
    }
    void hold(const std::string& host) {
        std::lock_guard lock(mutex_);
        held_names_.push_back(host);
    }
    [[nodiscard]] int calls(const std::string& host) const {
        std::lock_guard lock(mutex_);
        const auto it = calls_.find(host);
        return it == calls_.end() ? 0 : it->second;
    }

    void lookup(uv_loop_t* /*loop*/, const std::string& host, done_fn done) override {
        host_lookup_result r;
        {
            std::lock_guard lock(mutex_);
            ++calls_[host];
            for (const auto& h : held_names_) {
                if (h == host) {
                    held_.push_back(std::move(done));
                    return;
                }
            }
            const auto it = answers_.find(host);
            if (it != answers_.end()) r.addresses = it->second;
        }
        if (r.addresses.empty()) r.error = "unknown name (scripted)";
        done(std::move(r));  // before lookup() returns: the resolver must cope with that
    }

    /// Answers the held lookups with what `set` says now (loop thread).
    void release() {
        std::vector<done_fn> held;
        {
            std::lock_guard lock(mutex_);
            held.swap(held_);
            held_names_.clear();
        }
        for (auto& done : held) {
            host_lookup_result r;
            r.error = "released without an answer";
            done(std::move(r));
        }
    }

  private:
    mutable std::mutex mutex_;
    std::map<std::string, std::vector<ip_address>> answers_;
    std::map<std::string, int> calls_;
    std::vector<std::string> held_names_;
    std::vector<done_fn> held_;
};

ip_address ip(const char* text) {
    return *ip_address::parse(text);
}

/// Answers every request with a route to 127.0.0.1:<tag> until the agent closes, so a test
/// sees which server answered.
fake_server::script answering(std::uint16_t tag) {
    return [tag](int fd, int) {
        std::string buffer;
        while (const auto req = read_request(fd, buffer, 10s))
            send_all(fd, encode_route_response(req->msgid, "127.0.0.1:" + std::to_string(tag)));
    };
}

/// A port nobody listens on (bound, then closed: connecting to it is refused).
std::uint16_t closed_port() {
    fake_server probe([](int, int) {});
    return probe.port();
}

std::string local(std::uint16_t port) {
    return "127.0.0.1:" + std::to_string(port);
}

remote_resolver_options options_for(std::vector<std::string> addresses,
                                    std::shared_ptr<host_lookup> lookup = nullptr) {
    remote_resolver_options o;
    for (const auto& a : addresses)
        o.addresses.push_back(connect_address::parse(a));
    o.lookup = std::move(lookup);
    o.call_timeout = 1000ms;
    o.reconnect_min = 10ms;
    o.reconnect_max = 100ms;
    return o;
}

std::optional<std::uint16_t> answered_by(remote_resolver& r) {
    const auto res = resolve_sync(r, "app.example.com");
    if (!res || !std::holds_alternative<route>(*res)) return std::nullopt;
    const auto& eps = std::get<route>(*res).endpoints;
    if (eps.size() != 1) return std::nullopt;
    return eps[0].port;
}

/// What the resolver logs (the loop thread writes, the test thread reads; base_sink's mutex
/// guards the text for both).
class captured_log final : public spdlog::sinks::base_sink<std::mutex> {
  public:
    [[nodiscard]] bool contains(const std::string& text) {
        std::lock_guard lock(mutex_);
        return text_.find(text) != std::string::npos;
    }

  protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        text_.append(msg.payload.data(), msg.payload.size());
        text_ += '\n';
    }
    void flush_() override {}

  private:
    std::string text_;
};

std::shared_ptr<spdlog::logger> logger_to(std::shared_ptr<captured_log> sink) {
    return std::make_shared<spdlog::logger>("remote", std::move(sink));
}

/// The resolver and its loop, destroyed in that order.
struct client {
    std::shared_ptr<handlers::service_loop> loop = std::make_shared<handlers::service_loop>();
    std::shared_ptr<remote_resolver> resolver;
    explicit client(remote_resolver_options o, std::shared_ptr<spdlog::logger> log = nullptr)
        : resolver(std::make_shared<remote_resolver>(std::move(o), loop, std::move(log))) {}
    ~client() {
        resolver.reset();
        loop->join();
    }
    client(const client&) = delete;
    client& operator=(const client&) = delete;
};

/// Where `localhost` points first here (127.0.0.1 on most systems; ::1 on some).
std::string localhost_ip() {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    REQUIRE(::getaddrinfo("localhost", nullptr, &hints, &res) == 0);
    std::string found = "::1";
    for (const addrinfo* a = res; a; a = a->ai_next)
        if (a->ai_family == AF_INET) found = "127.0.0.1";
    ::freeaddrinfo(res);
    return found;
}

}  // namespace

TEST_CASE("remote address: localhost:PORT through the system's getaddrinfo", "[remote][unit]") {
    fake_server server(answering(1111), localhost_ip());
    client c(options_for({"localhost:" + std::to_string(server.port())}));
    REQUIRE(eventually([&] { return c.resolver->connected(); }));
    CHECK(answered_by(*c.resolver) == 1111);
    const auto st = c.resolver->remote_stats();
    CHECK(st.address == "localhost:" + std::to_string(server.port()));
    CHECK_THAT(st.peer, Catch::StartsWith(st.address + " ("));
    std::string metrics;
    c.resolver->render_metrics(metrics);
    CHECK_THAT(metrics, Catch::Contains("spoa_control_plane_peer{address=\"" + st.address +
                                        "\",connected_to=\"" + st.address + "\",peer=\"" + st.peer +
                                        "\"} 1"));
}

TEST_CASE("remote address: a name that does not resolve fails calls, never hangs",
          "[remote][unit]") {
    {
        auto names = std::make_shared<scripted_lookup>();
        auto log = std::make_shared<captured_log>();
        client c(options_for({"cp.test:7001"}, names), logger_to(log));
        REQUIRE(eventually([&] { return names->calls("cp.test") >= 3; }));
        CHECK(
            log->contains("control plane at cp.test:7001 unreachable (cp.test:7001: cannot "
                          "resolve cp.test: unknown name (scripted))"));
        const auto res = resolve_sync(*c.resolver, "app.example.com");
        REQUIRE(res.has_value());
        REQUIRE(std::holds_alternative<resolve_error>(*res));
        const auto& e = std::get<resolve_error>(*res);
        CHECK(e.code == error_code::unavailable);
        CHECK_THAT(e.reason, Catch::Contains("control plane unreachable"));
        CHECK(c.resolver->remote_stats().pending == 0);
        CHECK(c.resolver->remote_stats().address.empty());
    }
}

TEST_CASE("remote address: a name is looked up again at each reconnect", "[remote][unit]") {
    // Two servers on one port, on two loopback addresses: the name moves from one to the other.
    std::promise<void> close_first;
    auto closed = close_first.get_future().share();
    fake_server first(
        [closed](int fd, int) {
            std::string buffer;
            if (const auto req = read_request(fd, buffer))
                send_all(fd, encode_route_response(req->msgid, "127.0.0.1:1"));
            (void)closed.wait_for(10s);  // then the connection closes: the service "moved"
        },
        "127.0.0.1");
    fake_server second(answering(2), "127.0.0.2", first.port());
    auto names = std::make_shared<scripted_lookup>();
    names->set("cp.test", {ip("127.0.0.1")});
    client c(options_for({"cp.test:" + std::to_string(first.port())}, names));

    REQUIRE(eventually([&] { return c.resolver->connected(); }));
    CHECK(answered_by(*c.resolver) == 1);
    CHECK_THAT(c.resolver->remote_stats().peer, Catch::Contains("(127.0.0.1:"));
    names->set("cp.test", {ip("127.0.0.2")});
    close_first.set_value();

    REQUIRE(eventually([&] { return second.accepted() == 1 && c.resolver->connected(); }));
    CHECK(answered_by(*c.resolver) == 2);
    CHECK_THAT(c.resolver->remote_stats().peer, Catch::Contains("(127.0.0.2:"));
    CHECK(names->calls("cp.test") >= 2);
    CHECK(first.accepted() == 1);
}

TEST_CASE("remote address: every address a name gives is tried in turn", "[remote][unit]") {
    fake_server server(answering(3), "127.0.0.3");
    const auto port = server.port();
    auto names = std::make_shared<scripted_lookup>();
    // 127.0.0.4 has nobody on that port: refused, then the next address of the name.
    names->set("cp.test", {ip("127.0.0.4"), ip("127.0.0.3")});
    client c(options_for({"cp.test:" + std::to_string(port)}, names));
    REQUIRE(eventually([&] { return c.resolver->connected(); }));
    CHECK(answered_by(*c.resolver) == 3);
    CHECK(c.resolver->remote_stats().peer ==
          "cp.test:" + std::to_string(port) + " (127.0.0.3:" + std::to_string(port) + ")");
}

TEST_CASE("remote address: a list, tried in order", "[remote][unit]") {
    fake_server second(answering(20));
    SECTION("the first refuses, the second answers") {
        client c(options_for({local(closed_port()), second.address()}));
        REQUIRE(eventually([&] { return c.resolver->connected(); }));
        CHECK(c.resolver->remote_stats().address == second.address());
        CHECK(answered_by(*c.resolver) == 20);
        CHECK(c.resolver->remote_stats().connections == 1);
    }
    SECTION("the first is a name that does not resolve") {
        auto names = std::make_shared<scripted_lookup>();
        client c(options_for({"gone.test:7001", second.address()}, names));
        REQUIRE(eventually([&] { return c.resolver->connected(); }));
        CHECK(answered_by(*c.resolver) == 20);
        CHECK(names->calls("gone.test") == 1);
    }
    SECTION("the first is a name whose lookup never returns: the lookup times out") {
        auto names = std::make_shared<scripted_lookup>();
        names->hold("stuck.test");
        client c(options_for({"stuck.test:7001", second.address()}, names));
        REQUIRE(eventually([&] { return c.resolver->connected(); }));
        CHECK(answered_by(*c.resolver) == 20);
        c.loop->post([names](uv_loop_t*) { names->release(); });
    }
    SECTION("the first answers: the others are not used") {
        fake_server first(answering(10));
        client c(options_for({first.address(), second.address()}));
        REQUIRE(eventually([&] { return c.resolver->connected(); }));
        CHECK(answered_by(*c.resolver) == 10);
        CHECK(second.accepted() == 0);
    }
}

TEST_CASE("remote address: a lost connection moves on to the next address", "[remote][unit]") {
    std::promise<void> close_first;
    auto closed = close_first.get_future().share();
    fake_server first(
        [closed](int fd, int index) {
            std::string buffer;
            if (const auto req = read_request(fd, buffer))
                send_all(fd, encode_route_response(req->msgid, "127.0.0.1:10"));
            if (index == 0) (void)closed.wait_for(10s);
        },
        "127.0.0.1");
    fake_server second(answering(20));
    client c(options_for({first.address(), second.address()}));
    REQUIRE(eventually([&] { return c.resolver->connected(); }));
    CHECK(answered_by(*c.resolver) == 10);
    close_first.set_value();
    REQUIRE(eventually([&] { return c.resolver->remote_stats().address == second.address(); }));
    CHECK(answered_by(*c.resolver) == 20);
}

TEST_CASE("remote address: all addresses down, then one comes back", "[remote][unit]") {
    const auto port_a = closed_port();
    const auto port_b = closed_port();
    auto log = std::make_shared<captured_log>();
    client c(options_for({local(port_a), local(port_b)}), logger_to(log));
    // Several whole rounds failed (each one retried after the back-off).
    REQUIRE(eventually([&] { return c.resolver->reconnects() >= 6; }));
    CHECK_FALSE(c.resolver->connected());
    const auto res = resolve_sync(*c.resolver, "app.example.com");
    REQUIRE(res.has_value());
    REQUIRE(std::holds_alternative<resolve_error>(*res));
    CHECK(std::get<resolve_error>(*res).code == error_code::unavailable);
    // Exactly this: the reason reaches HAProxy, the addresses only the log.
    CHECK(std::get<resolve_error>(*res).reason == "control plane unreachable");
    CHECK(log->contains("control plane at " + local(port_a) + "," + local(port_b) +
                        " unreachable (" + local(port_a) + ": cannot connect: "));

    fake_server back(answering(30), "127.0.0.1", port_b);
    REQUIRE(eventually([&] { return c.resolver->connected(); }));
    CHECK(c.resolver->remote_stats().address == local(port_b));
    CHECK(answered_by(*c.resolver) == 30);
    CHECK(log->contains("connected to the control plane at " + local(port_b)));
}

TEST_CASE("remote address: a stuck lookup is waited for, never started twice", "[remote][unit]") {
    auto names = std::make_shared<scripted_lookup>();
    names->hold("stuck.test");
    auto o = options_for({"stuck.test:7001"}, names);
    o.call_timeout = 50ms;  // the lookup timeout is max(call timeout, 1 s)
    client c(o);
    // Two attempts timed out on the same lookup (about 1 s each).
    REQUIRE(eventually([&] { return c.resolver->reconnects() >= 2; }, 10s));
    CHECK(names->calls("stuck.test") == 1);
    CHECK_FALSE(c.resolver->connected());
    c.loop->post([names](uv_loop_t*) { names->release(); });
    REQUIRE(eventually([&] { return names->calls("stuck.test") >= 2; }, 10s));
}
