#pragma once
/// Reading and writing the resolver's answer in msgpack, shared by the remote resolver (the
/// `resolve` result and error of msgpack-RPC) and the shared cache tier (the value stored in
/// Redis). Private to spoa::handlers: msgpack types never reach a public header.
///
/// Every reader checks each type before using a value and never throws; a problem is returned
/// as text (empty text = ok), for a log line or a counter.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <msgpack.hpp>

#include "spoa/handlers/routing/resolver.hpp"

namespace spoa::handlers::routing::route_msgpack {

/// msgpack::packer output into a std::string.
struct string_sink {
    std::string* out;
    void write(const char* p, std::size_t n) { out->append(p, n); }
};
using packer = msgpack::packer<string_sink>;

void pack_str(packer& pk, std::string_view s);

[[nodiscard]] inline bool is_str(const msgpack::object& o) noexcept {
    return o.type == msgpack::type::STR;
}
[[nodiscard]] inline std::string_view str(const msgpack::object& o) noexcept {
    return {o.via.str.ptr, o.via.str.size};
}
[[nodiscard]] inline std::optional<std::uint64_t> as_uint(const msgpack::object& o) noexcept {
    if (o.type == msgpack::type::POSITIVE_INTEGER) return o.via.u64;
    return std::nullopt;
}

/// Non-negative milliseconds (at most a year); nil = absent. Returns false on a bad type.
bool read_ms(const msgpack::object& o, std::optional<std::chrono::milliseconds>& out);
/// ["host:port", ...]; empty string = ok, else the problem.
std::string read_endpoints(const msgpack::object& o, std::vector<endpoint>& out);
/// A route map {endpoints, paths, metadata, ttl_ms, timeout_ms, state}; unknown keys ignored.
/// Empty string = ok, else the problem.
std::string parse_route(const msgpack::object& o, route& r);
/// An error {code, reason, retry_after_ms} or a bare string. Never fails: a shape it does not
/// know is `internal`.
resolve_error parse_error(const msgpack::object& o);

/// Writes `r` as the map parse_route reads (the same keys; absent optionals are left out).
void pack_route(packer& pk, const route& r);
/// Writes `e` as the map parse_error reads.
void pack_error(packer& pk, const resolve_error& e);

}  // namespace spoa::handlers::routing::route_msgpack
