// Endpoint health: the table of endpoint states stays bounded by the endpoints in use, and a
// circuit's opening time is visible with its state.

#include <catch2/catch.hpp>

#include <memory>
#include <vector>

#include "spoa/handlers/routing/endpoint_health.hpp"
#include "spoa/handlers/routing/route_cache.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace std::chrono_literals;

const ip_address local = *ip_address::parse("127.0.0.1");

TEST_CASE("endpoint health: states nobody holds are dropped, held ones kept", "[health]") {
    handlers::service_loop loop;
    endpoint_health h(loop, health_options{}, breaker_options{}, nullptr);
    std::vector<std::shared_ptr<endpoint_state>> held;
    for (std::uint16_t port = 1; port <= 10; ++port)
        held.push_back(h.state_of(local, port));
    // Routes that came and went: 5,000 endpoints, none held.
    for (std::uint16_t port = 1000; port < 6000; ++port)
        (void)h.state_of(local, port);
    CHECK(h.tracked() <= 2048);
    CHECK(h.tracked() >= held.size());
    // The held states are still the ones the table gives out (not new ones).
    for (std::uint16_t port = 1; port <= 10; ++port)
        CHECK(h.state_of(local, port) == held[port - 1u]);
}

TEST_CASE("endpoint health: an open or unhealthy state is never dropped", "[health]") {
    handlers::service_loop loop;
    breaker_options b;
    b.failures = 1;
    endpoint_health h(loop, health_options{}, b, nullptr);
    {
        const auto s = h.state_of(local, 7);
        h.report_failure(*s, "refused");
        REQUIRE(s->circuit() == endpoint_state::breaker::open);
    }
    for (std::uint16_t port = 1000; port < 4000; ++port)
        (void)h.state_of(local, port);
    // Still the open one: its circuit is not forgotten by dropping its state.
    const auto again = h.state_of(local, 7);
    CHECK(again->circuit() == endpoint_state::breaker::open);
    CHECK(again->opened_at_ms_.load() != 0);
    CHECK(h.admit(*again, steady_ms()) == endpoint_health::verdict::open);
}

}  // namespace
}  // namespace spoa::handlers::routing
