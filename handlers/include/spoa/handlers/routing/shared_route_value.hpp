#pragma once
/// The value of a shared cache entry in Redis (`<key_prefix>cache:<protocol>:<id>`, README
/// "Running several agents"): what the resolver answered, never what an agent made of it (each
/// agent checks endpoints against its own SSRF policy). A msgpack map:
///
///     {"v": 1, "route": {...}}     a route, the map the remote resolver's `resolve` returns:
///         "endpoints": ["host:port", ...]
///         "paths":     {"/prefix": ["host:port", ...], ...}   (HTTP; longest prefix wins)
///         "metadata":  {"key": "value", ...}
///         "state":     "ready" | "asleep" | "starting" | "failed"
///         "ttl_ms":    the resolver's TTL override, when it gave one
///         "timeout_ms": the resolver's cold-start wait override, when it gave one
///     {"v": 1, "error": {...}}     a refusal:
///         "code":   "not_found" | "forbidden" | "unavailable" | "timeout" | "internal"
///         "reason": text
///         "retry_after_ms": the resolver's hint, when it gave one
///
/// The entry's lifetime is the Redis key's (SET ... PX), not a field of the value. Keys this
/// version does not know are ignored (a newer writer may add some); another "v", a missing or
/// doubled answer, a wrong type or trailing bytes make the value bad (the reader treats it as
/// a miss).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "spoa/handlers/routing/resolver.hpp"

namespace spoa::handlers::routing {

inline constexpr std::uint64_t shared_value_version = 1;
/// A value longer than this is bad without being parsed (a route is a few hundred bytes).
inline constexpr std::size_t shared_value_max_bytes = 256 * 1024;

[[nodiscard]] std::string encode_shared_value(const resolve_result& answer);
/// The answer, or nullopt for a bad value (`problem`, when given, says why). Never throws.
[[nodiscard]] std::optional<resolve_result> decode_shared_value(
    std::string_view bytes, std::string* problem = nullptr) noexcept;

}  // namespace spoa::handlers::routing
