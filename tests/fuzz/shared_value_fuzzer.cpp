// libFuzzer target for the value of a shared cache entry (shared_route_value.hpp), which an agent
// reads from Redis, where any client of the server may have written anything. The decoder must
// never throw, crash or read out of bounds; a value it accepts must encode again to a value that
// decodes to the same answer (nothing it accepts is lost or changed on the next write).
//
// Corpus: tests/fuzz/corpus/shared_value (make_shared_value_corpus.py).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "spoa/handlers/routing/shared_route_value.hpp"

namespace {

using namespace spoa::handlers::routing;

bool same_endpoints(const std::vector<endpoint>& a, const std::vector<endpoint>& b) {
    return a == b;
}

/// Paths as a sorted list: the decoder orders them longest prefix first, and prefixes of one
/// length may come back in another order (they never both match one request path).
std::vector<std::pair<std::string, std::vector<std::string>>> path_list(const route& r) {
    std::vector<std::pair<std::string, std::vector<std::string>>> out;
    for (const auto& p : r.paths) {
        std::vector<std::string> eps;
        for (const auto& e : p.endpoints)
            eps.push_back(e.to_string());
        out.emplace_back(p.prefix, std::move(eps));
    }
    std::sort(out.begin(), out.end());
    return out;
}

bool same(const resolve_result& a, const resolve_result& b) {
    if (a.index() != b.index()) return false;
    if (const auto* ra = std::get_if<route>(&a)) {
        const auto& rb = std::get<route>(b);
        if (!same_endpoints(ra->endpoints, rb.endpoints) || ra->metadata != rb.metadata ||
            ra->ttl != rb.ttl || ra->timeout != rb.timeout || ra->state != rb.state)
            return false;
        return path_list(*ra) == path_list(rb);
    }
    const auto& ea = std::get<resolve_error>(a);
    const auto& eb = std::get<resolve_error>(b);
    return ea.code == eb.code && ea.reason == eb.reason && ea.retry_after == eb.retry_after;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view bytes(reinterpret_cast<const char*>(data), size);
    const auto first = decode_shared_value(bytes);
    if (!first) return 0;
    const auto again = decode_shared_value(encode_shared_value(*first));
    if (!again || !same(*first, *again)) std::abort();
    return 0;
}
