#include "route_msgpack.hpp"

#include <algorithm>
#include <stdexcept>

namespace spoa::handlers::routing::route_msgpack {

void pack_str(packer& pk, std::string_view s) {
    pk.pack_str(static_cast<std::uint32_t>(s.size()));
    pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

/// Non-negative milliseconds; nil = absent. Returns false on a bad type.
bool read_ms(const msgpack::object& o, std::optional<std::chrono::milliseconds>& out) {
    if (o.type == msgpack::type::NIL) return true;
    const auto v = as_uint(o);
    if (!v || *v > 365ull * 24 * 3600 * 1000) return false;
    out = std::chrono::milliseconds(static_cast<std::int64_t>(*v));
    return true;
}

/// ["host:port", ...]; empty string = ok, else the problem.
std::string read_endpoints(const msgpack::object& o, std::vector<endpoint>& out) {
    if (o.type != msgpack::type::ARRAY) return "endpoints must be an array of \"host:port\"";
    for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        const auto& e = o.via.array.ptr[i];
        if (!is_str(e)) return "endpoints must be an array of \"host:port\"";
        try {
            out.push_back(endpoint::parse(str(e)));
        } catch (const std::invalid_argument& ex) {
            return ex.what();
        }
    }
    return {};
}

/// The `resolve` result map; empty string = ok, else the problem.
std::string parse_route(const msgpack::object& o, route& r) {
    if (o.type != msgpack::type::MAP) return "the result is not a map";
    for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        if (!is_str(kv.key)) return "a result key is not a string";
        const std::string_view key = str(kv.key);
        const msgpack::object& v = kv.val;
        if (key == "endpoints") {
            if (v.type == msgpack::type::NIL) continue;
            if (auto p = read_endpoints(v, r.endpoints); !p.empty()) return p;
        } else if (key == "paths") {
            if (v.type == msgpack::type::NIL) continue;
            if (v.type != msgpack::type::MAP) return "paths must map a prefix to endpoints";
            for (std::uint32_t j = 0; j < v.via.map.size; ++j) {
                const auto& pkv = v.via.map.ptr[j];
                if (!is_str(pkv.key) || !str(pkv.key).starts_with('/'))
                    return "a path prefix must be a string starting with /";
                path_route pr{std::string(str(pkv.key)), {}};
                if (auto p = read_endpoints(pkv.val, pr.endpoints); !p.empty()) return p;
                r.paths.push_back(std::move(pr));
            }
            // Longest prefix first, as the router expects (same as the static resolver).
            std::sort(r.paths.begin(), r.paths.end(), [](const path_route& a, const path_route& b) {
                return a.prefix.size() > b.prefix.size();
            });
        } else if (key == "metadata") {
            if (v.type == msgpack::type::NIL) continue;
            if (v.type != msgpack::type::MAP) return "metadata must be a map of strings";
            for (std::uint32_t j = 0; j < v.via.map.size; ++j) {
                const auto& mkv = v.via.map.ptr[j];
                if (!is_str(mkv.key) || !is_str(mkv.val))
                    return "metadata must be a map of strings";
                r.metadata[std::string(str(mkv.key))] = std::string(str(mkv.val));
            }
        } else if (key == "ttl_ms") {
            if (!read_ms(v, r.ttl)) return "ttl_ms must be a non-negative integer";
        } else if (key == "timeout_ms") {
            if (!read_ms(v, r.timeout)) return "timeout_ms must be a non-negative integer";
        } else if (key == "state") {
            if (v.type == msgpack::type::NIL) continue;
            const auto s = is_str(v) ? parse_backend_state(str(v)) : std::nullopt;
            if (!s) return "state must be ready, asleep, starting or failed";
            r.state = *s;
        }
        // Other keys: ignored, so a control plane may send more than this agent understands.
    }
    if (r.state == backend_state::ready && r.endpoints.empty() && r.paths.empty())
        return "a ready route needs endpoints or paths";
    return {};
}

/// The error field of a response (not nil). Never fails: a shape we do not know is `internal`.
resolve_error parse_error(const msgpack::object& o) {
    if (is_str(o)) return {error_code::internal, std::string(str(o)), {}};
    if (o.type != msgpack::type::MAP)
        return {error_code::internal, "control plane error of an unexpected type", {}};
    resolve_error e{error_code::internal, {}, {}};
    bool have_code = false;
    for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        const auto& kv = o.via.map.ptr[i];
        if (!is_str(kv.key)) continue;
        const std::string_view key = str(kv.key);
        if (key == "code" && is_str(kv.val)) {
            if (const auto c = parse_error_code(str(kv.val))) {
                e.code = *c;
                have_code = true;
            } else {
                e.reason = "unknown error code '" + std::string(str(kv.val)) + "'";
            }
        } else if (key == "reason" && is_str(kv.val)) {
            if (e.reason.empty()) e.reason = std::string(str(kv.val));
        } else if (key == "retry_after_ms") {
            std::optional<std::chrono::milliseconds> ra;
            if (read_ms(kv.val, ra)) e.retry_after = ra;
        }
    }
    if (!have_code && e.reason.empty()) e.reason = "control plane error without a code";
    if (e.reason.empty()) e.reason = std::string(to_string(e.code));
    return e;
}

namespace {

void pack_endpoints(packer& pk, const std::vector<endpoint>& eps) {
    pk.pack_array(static_cast<std::uint32_t>(eps.size()));
    for (const auto& e : eps)
        pack_str(pk, e.to_string());
}

void pack_ms(packer& pk, std::string_view key, std::chrono::milliseconds v) {
    pack_str(pk, key);
    pk.pack_uint64(static_cast<std::uint64_t>(std::max<std::int64_t>(0, v.count())));
}

}  // namespace

void pack_route(packer& pk, const route& r) {
    const std::uint32_t n = 4 + (r.ttl ? 1 : 0) + (r.timeout ? 1 : 0);
    pk.pack_map(n);
    pack_str(pk, "endpoints");
    pack_endpoints(pk, r.endpoints);
    pack_str(pk, "paths");
    pk.pack_map(static_cast<std::uint32_t>(r.paths.size()));
    for (const auto& p : r.paths) {
        pack_str(pk, p.prefix);
        pack_endpoints(pk, p.endpoints);
    }
    pack_str(pk, "metadata");
    pk.pack_map(static_cast<std::uint32_t>(r.metadata.size()));
    for (const auto& [k, v] : r.metadata) {
        pack_str(pk, k);
        pack_str(pk, v);
    }
    pack_str(pk, "state");
    pack_str(pk, to_string(r.state));
    if (r.ttl) pack_ms(pk, "ttl_ms", *r.ttl);
    if (r.timeout) pack_ms(pk, "timeout_ms", *r.timeout);
}

void pack_error(packer& pk, const resolve_error& e) {
    pk.pack_map(e.retry_after ? 3 : 2);
    pack_str(pk, "code");
    pack_str(pk, to_string(e.code));
    pack_str(pk, "reason");
    pack_str(pk, e.reason);
    if (e.retry_after) pack_ms(pk, "retry_after_ms", *e.retry_after);
}

}  // namespace spoa::handlers::routing::route_msgpack
