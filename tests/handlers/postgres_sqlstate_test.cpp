// The SQLSTATE a refused PostgreSQL client is shown, for each refusal status.

#include <catch2/catch.hpp>

#include "spoa/handlers/routing/postgres_sqlstate.hpp"

using spoa::handlers::routing::postgres_sqlstate;

TEST_CASE("postgres_sqlstate: each refusal status has the client's error class", "[postgres]") {
    CHECK(postgres_sqlstate(400, false) == "08P01");  // protocol_violation
    CHECK(postgres_sqlstate(403, false) == "28000");  // invalid_authorization_specification
    CHECK(postgres_sqlstate(404, false) == "3D000");  // invalid_catalog_name
    CHECK(postgres_sqlstate(404, true) == "28000");   // the resource is a role
    CHECK(postgres_sqlstate(503, false) == "57P03");  // cannot_connect_now
    CHECK(postgres_sqlstate(504, false) == "57P03");
    CHECK(postgres_sqlstate(500, false) == "XX000");  // internal_error
    CHECK(postgres_sqlstate(418, false) == "XX000");
}
