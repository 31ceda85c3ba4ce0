#include <catch2/catch.hpp>

#include "spoa/handlers/routing/invalidation_message.hpp"

namespace spoa::handlers::routing {

TEST_CASE("invalidation message: round trip, ids with spaces, every protocol", "[invalidation]") {
    const invalidation_message m{"agent-1", app_protocol::postgres, "orders db"};
    CHECK(encode(m) == "1 agent-1 postgres orders db");
    const auto back = parse_invalidation(encode(m));
    REQUIRE(back);
    CHECK(back->origin == "agent-1");
    CHECK(back->protocol == app_protocol::postgres);
    CHECK(back->id == "orders db");

    const auto all = parse_invalidation("1 - * app.example.com\n");  // a shell's newline
    REQUIRE(all);
    CHECK(all->origin == "-");
    CHECK_FALSE(all->protocol);
    CHECK(all->id == "app.example.com");
    CHECK(encode(*all) == "1 - * app.example.com");
}

TEST_CASE("invalidation message: what is not a version-1 message is refused", "[invalidation]") {
    for (const char* bad : {"", "1", "1 a", "1 a http", "1 a http ", "2 a http x", "1 a gopher x",
                            "v1 a http x", "1  http x", "1 a http \n"}) {
        INFO(bad);
        CHECK_FALSE(parse_invalidation(bad));
    }
}

TEST_CASE("invalidation message: agent ids", "[invalidation]") {
    CHECK(valid_agent_id("edge-1.eu_west"));
    CHECK_FALSE(valid_agent_id(""));
    CHECK_FALSE(valid_agent_id("-"));
    CHECK_FALSE(valid_agent_id("a b"));
    CHECK_FALSE(valid_agent_id(std::string(65, 'a')));
    const auto r = random_agent_id();
    CHECK(r.size() == 16);
    CHECK(valid_agent_id(r));
    CHECK(r != random_agent_id());
}

}  // namespace spoa::handlers::routing
