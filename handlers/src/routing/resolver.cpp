#include "spoa/handlers/routing/resolver.hpp"

#include <charconv>
#include <stdexcept>

namespace spoa::handlers::routing {

std::string_view to_string(app_protocol p) noexcept {
    switch (p) {
        case app_protocol::http:
            return "http";
        case app_protocol::postgres:
            return "postgres";
        case app_protocol::tcp:
            return "tcp";
        case app_protocol::tls:
            return "tls";
    }
    return "unknown";
}

std::optional<app_protocol> parse_app_protocol(std::string_view s) noexcept {
    if (s == "http") return app_protocol::http;
    if (s == "postgres" || s == "postgresql" || s == "pg") return app_protocol::postgres;
    if (s == "tcp") return app_protocol::tcp;
    if (s == "tls") return app_protocol::tls;
    return std::nullopt;
}

std::string_view to_string(error_code e) noexcept {
    switch (e) {
        case error_code::not_found:
            return "not_found";
        case error_code::forbidden:
            return "forbidden";
        case error_code::unavailable:
            return "unavailable";
        case error_code::timeout:
            return "timeout";
        case error_code::internal:
            return "internal";
    }
    return "internal";
}

std::optional<error_code> parse_error_code(std::string_view s) noexcept {
    if (s == "not_found") return error_code::not_found;
    if (s == "forbidden") return error_code::forbidden;
    if (s == "unavailable") return error_code::unavailable;
    if (s == "timeout") return error_code::timeout;
    if (s == "internal") return error_code::internal;
    return std::nullopt;
}

int http_status(error_code e) noexcept {
    switch (e) {
        case error_code::not_found:
            return 404;
        case error_code::forbidden:
            return 403;
        case error_code::unavailable:
            return 503;
        case error_code::timeout:
            return 504;
        case error_code::internal:
            return 500;
    }
    return 500;
}

std::string_view to_string(backend_state s) noexcept {
    switch (s) {
        case backend_state::ready:
            return "ready";
        case backend_state::asleep:
            return "asleep";
        case backend_state::starting:
            return "starting";
        case backend_state::failed:
            return "failed";
    }
    return "failed";
}

std::optional<backend_state> parse_backend_state(std::string_view s) noexcept {
    if (s == "ready" || s == "running") return backend_state::ready;
    if (s == "asleep" || s == "cold" || s == "idle" || s == "stopped") return backend_state::asleep;
    if (s == "starting") return backend_state::starting;
    if (s == "failed") return backend_state::failed;
    return std::nullopt;
}

endpoint endpoint::parse(std::string_view text) {
    std::string_view host;
    std::string_view port;
    if (text.starts_with('[')) {
        const auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            throw std::invalid_argument("endpoint '" + std::string(text) + "' is not [v6]:port");
        }
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        const auto colon = text.rfind(':');
        if (colon == std::string_view::npos || text.find(':') != colon) {
            throw std::invalid_argument("endpoint '" + std::string(text) +
                                        "' is not host:port (IPv6 needs brackets)");
        }
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    unsigned p = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (host.empty() || port.empty() || ec != std::errc() || end != port.data() + port.size() ||
        p == 0 || p > 65535) {
        throw std::invalid_argument("endpoint '" + std::string(text) +
                                    "': host must be set and port within 1-65535");
    }
    return endpoint{std::string(host), static_cast<std::uint16_t>(p)};
}

std::string endpoint::to_string() const {
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

}  // namespace spoa::handlers::routing
