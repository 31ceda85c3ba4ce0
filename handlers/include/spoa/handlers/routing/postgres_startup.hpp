#pragma once
/// Parser for the first packet a PostgreSQL client sends (protocol 3.x): StartupMessage,
/// SSLRequest, GSSENCRequest or CancelRequest, or the start of a TLS ClientHello (direct TLS,
/// PostgreSQL 17+). Pure and bounds-checked: views into the caller's bytes, no allocation.

#include <cstdint>
#include <string_view>
#include <utility>

namespace spoa::handlers::routing {

struct postgres_startup {
    enum class kind : std::uint8_t {
        startup,         ///< StartupMessage: parameters available
        ssl_request,     ///< 80877103
        gss_request,     ///< 80877104
        cancel_request,  ///< 80877102 (carries a backend pid and key, no database)
        tls_hello,       ///< a TLS record: route on SNI instead
        invalid,
    };
    kind type = kind::invalid;
    std::uint16_t major = 0;
    std::uint16_t minor = 0;
    std::string_view user;
    std::string_view database;  ///< defaults to user when absent, as the server does
    std::string_view options;
    std::string_view application_name;
    const char* error = nullptr;  ///< why `invalid`

    /// Looks a parameter up by name (the bytes must still be alive).
    [[nodiscard]] std::string_view parameter(std::string_view name) const noexcept;
    /// The value of `endpoint=<id>` inside `options` ("endpoint=x", "-c endpoint=x",
    /// "--endpoint=x"), empty if none.
    [[nodiscard]] std::string_view endpoint_option() const noexcept;

    std::string_view params_;  ///< raw name/value area, for parameter()
};

/// PostgreSQL's own limit on a startup packet.
inline constexpr std::uint32_t postgres_max_startup_length = 10000;

[[nodiscard]] postgres_startup parse_postgres_startup(std::string_view bytes) noexcept;

}  // namespace spoa::handlers::routing
