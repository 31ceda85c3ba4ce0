#include "spoa/handlers/routing/postgres_sqlstate.hpp"

namespace spoa::handlers::routing {

std::string_view postgres_sqlstate(int status, bool resource_is_role) noexcept {
    switch (status) {
        case 400:
            return "08P01";  // protocol_violation: the packet names nothing routable
        case 403:
            return "28000";  // invalid_authorization_specification: forbidden by policy
        case 404:
            return resource_is_role ? "28000" : "3D000";  // invalid_catalog_name
        case 503:
        case 504:
            return "57P03";  // cannot_connect_now: waking, unavailable, or too slow to resolve
        default:
            return "XX000";  // internal_error
    }
}

}  // namespace spoa::handlers::routing
