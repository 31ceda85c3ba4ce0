// The endpoint checker on a real service loop: IP literals checked directly, names resolved with
// getaddrinfo and every address checked, unresolvable names answered as unavailable.

#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>

#include "spoa/handlers/routing/endpoint_checker.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

struct outcome {
    std::shared_ptr<const checked_route> route;
    std::optional<resolve_error> error;
    bool on_loop_thread = false;
};

/// Runs checker.check(r) on the service loop (where it must run) and waits for its answer.
outcome run_check(handlers::service_loop& loop, endpoint_checker& checker, route r) {
    auto done = std::make_shared<std::promise<outcome>>();
    auto fut = done->get_future();
    loop.post([&checker, &loop, r = std::move(r), done](uv_loop_t*) mutable {
        checker.check(std::move(r), [&loop, done](std::shared_ptr<const checked_route> c,
                                                  std::optional<resolve_error> e) {
            done->set_value(outcome{std::move(c), std::move(e), loop.on_loop_thread()});
        });
    });
    // getaddrinfo of a .invalid name is answered locally (RFC 6761), so this stays short.
    REQUIRE(fut.wait_for(10s) == std::future_status::ready);
    return fut.get();
}

route make_route(std::vector<endpoint> eps) {
    route r;
    r.endpoints = std::move(eps);
    return r;
}

named_range range(std::string_view text) {
    return {*cidr::parse(text), "test"};
}

}  // namespace

TEST_CASE("endpoint checker: IP literals", "[checker]") {
    handlers::service_loop loop;
    endpoint_checker blocklist(loop, ssrf_policy{});

    SECTION("allowed") {
        route r = make_route({{"8.8.8.8", 53}, {"2606:4700:4700::1111", 443}});
        r.metadata["tenant"] = "alpha";
        r.timeout = 1500ms;
        const auto o = run_check(loop, blocklist, r);
        CHECK(o.on_loop_thread);
        REQUIRE_FALSE(o.error.has_value());
        REQUIRE(o.route != nullptr);
        REQUIRE(o.route->endpoints.size() == 2);
        CHECK(o.route->endpoints[0].address == *ip_address::parse("8.8.8.8"));
        CHECK(o.route->endpoints[0].port == 53);
        CHECK(o.route->endpoints[0].host == "8.8.8.8");
        CHECK(o.route->endpoints[1].address == *ip_address::parse("2606:4700:4700::1111"));
        CHECK(o.route->endpoints[1].port == 443);
        CHECK(o.route->metadata.at("tenant") == "alpha");
        CHECK(o.route->timeout == 1500ms);
        CHECK(o.route->state == backend_state::ready);
        CHECK(o.route->paths.empty());
    }
    SECTION("refused, naming the endpoint and the range") {
        const auto o = run_check(loop, blocklist, make_route({{"8.8.8.8", 53}, {"127.0.0.1", 80}}));
        CHECK(o.route == nullptr);
        REQUIRE(o.error.has_value());
        CHECK(o.error->code == error_code::forbidden);
        CHECK(o.error->reason ==
              "endpoint 127.0.0.1:80 refused: 127.0.0.1 is in 127.0.0.0/8 (loopback)");
    }
    SECTION("an embedded IPv4 form is refused") {
        const auto o = run_check(loop, blocklist, make_route({{"::ffff:169.254.169.254", 80}}));
        REQUIRE(o.error.has_value());
        CHECK(o.error->code == error_code::forbidden);
        CHECK(o.error->reason ==
              "endpoint [::ffff:169.254.169.254]:80 refused: ::ffff:169.254.169.254 embeds "
              "169.254.169.254 is in 169.254.0.0/16 (link-local, cloud metadata (RFC 3927))");
    }
    SECTION("port 0 is refused") {
        const auto o = run_check(loop, blocklist, make_route({{"8.8.8.8", 0}}));
        REQUIRE(o.error.has_value());
        CHECK(o.error->code == error_code::forbidden);
        CHECK(o.error->reason == "endpoint 8.8.8.8:0 refused: port 0 is outside 1-65535");
    }
    SECTION("allowlist") {
        endpoint_checker allow(loop, ssrf_policy::allowlist({range("10.0.0.0/8")}));
        const auto ok = run_check(loop, allow, make_route({{"10.1.2.3", 8080}}));
        REQUIRE(ok.route != nullptr);
        CHECK(ok.route->endpoints.at(0).address == *ip_address::parse("10.1.2.3"));
        const auto no = run_check(loop, allow, make_route({{"11.0.0.1", 8080}}));
        REQUIRE(no.error.has_value());
        CHECK(no.error->reason ==
              "endpoint 11.0.0.1:8080 refused: 11.0.0.1 is not in the allowlist");
    }
    SECTION("paths are checked and kept in order") {
        route r = make_route({{"8.8.8.8", 80}});
        r.paths.push_back({"/api/v2", {{"8.8.4.4", 8082}}});
        r.paths.push_back({"/api", {{"8.8.4.4", 8081}, {"1.1.1.1", 8081}}});
        const auto o = run_check(loop, blocklist, r);
        REQUIRE(o.route != nullptr);
        REQUIRE(o.route->paths.size() == 2);
        CHECK(o.route->paths[0].prefix == "/api/v2");
        REQUIRE(o.route->paths[0].endpoints.size() == 1);
        CHECK(o.route->paths[0].endpoints[0].port == 8082);
        CHECK(o.route->paths[1].prefix == "/api");
        REQUIRE(o.route->paths[1].endpoints.size() == 2);
        CHECK(o.route->paths[1].endpoints[1].address == *ip_address::parse("1.1.1.1"));
        CHECK(o.route->endpoints.size() == 1);

        // A refused address in a path refuses the whole route.
        r.paths.push_back({"/admin", {{"10.0.0.1", 80}}});
        const auto bad = run_check(loop, blocklist, r);
        REQUIRE(bad.error.has_value());
        CHECK(bad.error->reason ==
              "endpoint 10.0.0.1:80 refused: 10.0.0.1 is in 10.0.0.0/8 (private (RFC 1918))");
    }
    SECTION("no endpoint at all") {
        const auto o = run_check(loop, blocklist, route{});
        REQUIRE(o.error.has_value());
        CHECK(o.error->code == error_code::unavailable);
        CHECK(o.error->reason == "resolver returned no endpoint");
        // A sleeping backend has no endpoint yet: that is not an error.
        route asleep;
        asleep.state = backend_state::asleep;
        const auto a = run_check(loop, blocklist, asleep);
        REQUIRE(a.route != nullptr);
        CHECK(a.route->state == backend_state::asleep);
        CHECK(a.route->endpoints.empty());
    }
}

TEST_CASE("endpoint checker: names are resolved, then every address is checked", "[checker]") {
    handlers::service_loop loop;

    SECTION("localhost under an allowlist of loopback") {
        // ::1 too: on hosts whose /etc/hosts maps localhost to ::1 as well, every address of
        // the name must pass.
        endpoint_checker allow(loop,
                               ssrf_policy::allowlist({range("127.0.0.0/8"), range("::1/128")}));
        const auto o = run_check(loop, allow, make_route({{"localhost", 5432}}));
        CHECK(o.on_loop_thread);
        REQUIRE_FALSE(o.error.has_value());
        REQUIRE(o.route != nullptr);
        REQUIRE_FALSE(o.route->endpoints.empty());
        bool saw_v4_loopback = false;
        for (const auto& ep : o.route->endpoints) {
            CHECK(ep.port == 5432);
            CHECK(ep.host == "localhost");  // for logs; HAProxy only gets the address
            const auto text = ep.address.to_string();
            CHECK((text == "127.0.0.1" || text == "::1"));
            saw_v4_loopback |= text == "127.0.0.1";
        }
        CHECK(saw_v4_loopback);
    }
    SECTION("localhost under the default blocklist") {
        endpoint_checker block(loop, ssrf_policy{});
        const auto o = run_check(loop, block, make_route({{"localhost", 5432}}));
        CHECK(o.route == nullptr);
        REQUIRE(o.error.has_value());
        CHECK(o.error->code == error_code::forbidden);
        CHECK_THAT(o.error->reason, StartsWith("endpoint localhost:5432 refused: "));
        CHECK_THAT(o.error->reason, Contains("127.0.0.1 is in 127.0.0.0/8 (loopback)") ||
                                        Contains("::1 is in ::1/128 (loopback)"));
    }
    SECTION("a name with one refused address is refused") {
        // localhost resolves to loopback only; allowing 127.0.0.2 alone must refuse it.
        endpoint_checker narrow(loop, ssrf_policy::allowlist({range("127.0.0.2/32")}));
        const auto o = run_check(loop, narrow, make_route({{"localhost", 80}}));
        REQUIRE(o.error.has_value());
        CHECK(o.error->code == error_code::forbidden);
        CHECK_THAT(o.error->reason, Contains("is not in the allowlist"));
    }
    SECTION("an unresolvable name is unavailable") {
        endpoint_checker allow_all(loop, ssrf_policy::allowlist({range("0.0.0.0/0")}));
        const auto o = run_check(loop, allow_all, make_route({{"does-not-exist.invalid", 80}}));
        CHECK(o.route == nullptr);
        REQUIRE(o.error.has_value());
        CHECK(o.error->code == error_code::unavailable);
        CHECK_THAT(o.error->reason, StartsWith("cannot resolve does-not-exist.invalid: "));
    }
    SECTION("a literal and a name together") {
        endpoint_checker allow(loop,
                               ssrf_policy::allowlist({range("127.0.0.0/8"), range("::1/128")}));
        const auto o =
            run_check(loop, allow, make_route({{"127.0.0.9", 1000}, {"localhost", 2000}}));
        REQUIRE(o.route != nullptr);
        REQUIRE(o.route->endpoints.size() >= 2);
        CHECK(o.route->endpoints[0].address == *ip_address::parse("127.0.0.9"));
        CHECK(o.route->endpoints[0].port == 1000);
        CHECK(o.route->endpoints[1].port == 2000);
    }
}

}  // namespace spoa::handlers::routing
