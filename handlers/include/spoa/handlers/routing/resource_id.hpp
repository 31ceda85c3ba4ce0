#pragma once
/// Normalisation of resource ids, so that one resource has one cache key.

#include <string>
#include <string_view>

namespace spoa::handlers::routing {

/// Lowercases, strips a port (":8080", also after a bracketed IPv6 literal) and a trailing dot.
/// "App.Example.COM.:8443" -> "app.example.com"; "[2001:DB8::1]:80" -> "[2001:db8::1]".
[[nodiscard]] std::string normalize_host(std::string_view host);

/// Same into a caller buffer (no allocation); returns the view (into `buf`, or `host` itself
/// when it is already in normal form), or an empty view if `host` is longer than the buffer.
[[nodiscard]] std::string_view normalize_host(std::string_view host, char* buf,
                                              std::size_t cap) noexcept;

/// "/api" covers "/api", "/api/..." and "/api?...", not "/apiary": prefixes end on a segment
/// boundary (a prefix ending in "/" already does).
[[nodiscard]] bool path_has_prefix(std::string_view path, std::string_view prefix) noexcept;

}  // namespace spoa::handlers::routing
