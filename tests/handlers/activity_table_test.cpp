// Activity table: one record per resource, bounded, least recently resolved dropped first.

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "spoa/handlers/routing/activity_table.hpp"

namespace spoa::handlers::routing {
namespace {

std::vector<std::string> ids_in(const activity_table& t) {
    std::vector<std::string> ids;
    t.for_each([&](const resource_activity& a) { ids.push_back(a.id); });
    return ids;
}

TEST_CASE("activity table: one record per key", "[activity]") {
    activity_table t(10);
    const auto a = t.record(app_protocol::http, "http:a", "a");
    const auto again = t.record(app_protocol::http, "http:a", "a");
    CHECK(a == again);
    CHECK(a->id == "a");
    CHECK(a->proto == app_protocol::http);
    CHECK(t.record(app_protocol::postgres, "postgres:a", "a") != a);
    CHECK(t.stats().entries == 2);
    CHECK(t.stats().evictions == 0);
}

TEST_CASE("activity table: bounded, least recently resolved dropped first", "[activity]") {
    activity_table t(3);
    const auto a = t.record(app_protocol::http, "http:a", "a");
    (void)t.record(app_protocol::http, "http:b", "b");
    (void)t.record(app_protocol::http, "http:c", "c");
    (void)t.record(app_protocol::http, "http:a", "a");  // a resolved again: now the newest
    (void)t.record(app_protocol::http, "http:d", "d");  // drops b
    CHECK(ids_in(t) == std::vector<std::string>{"c", "a", "d"});
    CHECK(t.stats().entries == 3);
    CHECK(t.stats().evictions == 1);
    // A record dropped from the table stays valid for whoever holds it (a cached route).
    a->decisions.fetch_add(1);
    for (int i = 0; i < 100; ++i)
        (void)t.record(app_protocol::http, "http:x" + std::to_string(i), "x");
    CHECK(t.stats().entries == 3);
    CHECK(t.stats().evictions == 101);
    CHECK(a->decisions.load() == 1);
    CHECK(t.record(app_protocol::http, "http:a", "a") != a);  // a new record after the drop
}

}  // namespace
}  // namespace spoa::handlers::routing
