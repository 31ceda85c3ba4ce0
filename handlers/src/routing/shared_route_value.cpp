#include "spoa/handlers/routing/shared_route_value.hpp"

#include <exception>

#include "route_msgpack.hpp"

namespace spoa::handlers::routing {
namespace {

using namespace route_msgpack;

/// Bounds for one value: array, map, str, bin, ext sizes and nesting depth.
msgpack::unpack_limit value_limits() {
    return {4096, 4096, 64 * 1024, 0, 0, 6};
}

/// An error map with a known code; parse_error alone would accept any shape as `internal`.
bool has_known_code(const msgpack::object& o) {
    if (o.type != msgpack::type::MAP) return false;
    for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        if (is_str(kv.key) && str(kv.key) == "code")
            return is_str(kv.val) && parse_error_code(str(kv.val)).has_value();
    }
    return false;
}

std::optional<resolve_result> decode_object(const msgpack::object& o, std::string& problem) {
    if (o.type != msgpack::type::MAP) {
        problem = "not a map";
        return std::nullopt;
    }
    const msgpack::object* route_obj = nullptr;
    const msgpack::object* error_obj = nullptr;
    bool version_ok = false;
    for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        if (!is_str(kv.key)) {
            problem = "a key is not a string";
            return std::nullopt;
        }
        const std::string_view key = str(kv.key);
        if (key == "v") {
            version_ok = as_uint(kv.val) == shared_value_version;
        } else if (key == "route") {
            if (route_obj) problem = "two routes";
            route_obj = &kv.val;
        } else if (key == "error") {
            if (error_obj) problem = "two errors";
            error_obj = &kv.val;
        }
    }
    if (!problem.empty()) return std::nullopt;
    if (!version_ok) {
        problem = "no version 1";
        return std::nullopt;
    }
    if ((route_obj == nullptr) == (error_obj == nullptr)) {
        problem = "needs exactly one of route and error";
        return std::nullopt;
    }
    if (error_obj) {
        if (!has_known_code(*error_obj)) {
            problem = "error without a known code";
            return std::nullopt;
        }
        return resolve_result{parse_error(*error_obj)};
    }
    route r;
    if (problem = parse_route(*route_obj, r); !problem.empty()) return std::nullopt;
    return resolve_result{std::move(r)};
}

}  // namespace

std::string encode_shared_value(const resolve_result& answer) {
    std::string out;
    string_sink sink{&out};
    packer pk(sink);
    pk.pack_map(2);
    pack_str(pk, "v");
    pk.pack_uint64(shared_value_version);
    if (const auto* r = std::get_if<route>(&answer)) {
        pack_str(pk, "route");
        pack_route(pk, *r);
    } else {
        pack_str(pk, "error");
        pack_error(pk, std::get<resolve_error>(answer));
    }
    return out;
}

std::optional<resolve_result> decode_shared_value(std::string_view bytes,
                                                  std::string* problem) noexcept {
    std::string why;
    std::optional<resolve_result> out;
    try {
        if (bytes.size() > shared_value_max_bytes) {
            why = "too long";
        } else {
            std::size_t offset = 0;
            const auto handle = msgpack::unpack(bytes.data(), bytes.size(), offset, nullptr,
                                                nullptr, value_limits());
            if (offset != bytes.size()) {
                why = "trailing bytes";
            } else {
                out = decode_object(handle.get(), why);
            }
        }
    } catch (const std::exception& e) {
        why = std::string("undecodable: ") + e.what();
        out.reset();
    } catch (...) {
        why = "undecodable";
        out.reset();
    }
    if (problem) *problem = std::move(why);  // a move: does not throw
    return out;
}

}  // namespace spoa::handlers::routing
