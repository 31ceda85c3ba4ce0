#pragma once
/// The SQLSTATE a PostgreSQL client is shown when its connection is refused
/// (txn.route.sqlstate, sent in an ErrorResponse by haproxy/spoa-postgres.lua), from the
/// refusal's HTTP-style status. The codes are PostgreSQL's (its "Error Codes" appendix).

#include <string_view>

namespace spoa::handlers::routing {

/// `resource_is_role`: the resource id is the user name (postgres.resource_from: user), so
/// an unknown one is an unknown role, not an unknown database.
[[nodiscard]] std::string_view postgres_sqlstate(int status, bool resource_is_role) noexcept;

}  // namespace spoa::handlers::routing
