#pragma once
// `spoa-cli notify --repeat N --concurrency C`: the same NOTIFY N times over C connections (one
// thread each, one frame in flight per connection), then ACK/s and latency percentiles. A quick
// operator check of a live agent, not a benchmark (tests/bench has those).

#include <chrono>
#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "connection_options.hpp"
#include "exit_code.hpp"
#include "spoa/protocol/bytes.hpp"

namespace spoa::cli {

struct load_result {
    std::uint64_t acks = 0;
    std::chrono::nanoseconds elapsed{0};
    std::vector<std::chrono::nanoseconds> latencies;  ///< one per ACK, sorted
};

/// Runs the load; throws the first connection's cli_error if any failed.
[[nodiscard]] load_result run_load(const connection_options& conn, protocol::bytes_view payload,
                                   std::uint64_t repeat, unsigned concurrency);

/// The `p`-th percentile (0..100, nearest rank) of sorted latencies; 0 when empty.
[[nodiscard]] std::chrono::nanoseconds percentile(std::span<const std::chrono::nanoseconds> sorted,
                                                  double p) noexcept;

/// "N ACKs in S s over C connection(s): R ACK/s" and "latency p50 .. p90 .. p99 .. max .."
/// (microseconds), or one JSON object.
[[nodiscard]] std::string format_load(const load_result& r, unsigned concurrency, bool json);

}  // namespace spoa::cli
