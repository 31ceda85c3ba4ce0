#include "load_run.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>

#include "cli_error.hpp"
#include "spop_client.hpp"

namespace spoa::cli {
namespace {

using clock = std::chrono::steady_clock;
using std::chrono::nanoseconds;

/// One connection's share of the load, on its own thread; the latencies are its own vector, so
/// the threads share nothing but the first error.
struct load_worker {
    std::uint64_t count = 0;
    std::vector<nanoseconds> latencies;
    std::exception_ptr error;

    void run(const connection_options& conn, protocol::bytes_view payload) noexcept {
        try {
            latencies.reserve(count);
            spop_client client(conn.where, conn.timeout);
            (void)client.handshake(conn.hello);
            for (std::uint64_t i = 0; i < count; ++i) {
                const auto start = clock::now();
                (void)client.notify(payload);
                latencies.push_back(clock::now() - start);
            }
            client.disconnect();
        } catch (...) {
            error = std::current_exception();
        }
    }
};

double micros(nanoseconds d) noexcept {
    return static_cast<double>(d.count()) / 1000.0;
}

}  // namespace

load_result run_load(const connection_options& conn, protocol::bytes_view payload,
                     std::uint64_t repeat, unsigned concurrency) {
    std::vector<load_worker> workers(concurrency);
    for (unsigned i = 0; i < concurrency; ++i)
        workers[i].count = repeat / concurrency + (i < repeat % concurrency ? 1 : 0);
    const auto start = clock::now();
    {
        std::vector<std::jthread> threads;
        for (auto& w : workers)
            threads.emplace_back([&w, &conn, payload] { w.run(conn, payload); });
    }
    load_result r;
    r.elapsed = clock::now() - start;
    for (auto& w : workers) {
        if (w.error) std::rethrow_exception(w.error);
        r.latencies.insert(r.latencies.end(), w.latencies.begin(), w.latencies.end());
    }
    r.acks = r.latencies.size();
    std::sort(r.latencies.begin(), r.latencies.end());
    return r;
}

nanoseconds percentile(std::span<const nanoseconds> sorted, double p) noexcept {
    if (sorted.empty()) return nanoseconds{0};
    const auto rank =
        static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
    return sorted[rank == 0 ? 0 : std::min(rank, sorted.size()) - 1];
}

std::string format_load(const load_result& r, unsigned concurrency, bool json) {
    const double seconds = static_cast<double>(r.elapsed.count()) / 1e9;
    const double rate = seconds > 0 ? static_cast<double>(r.acks) / seconds : 0.0;
    const double p50 = micros(percentile(r.latencies, 50));
    const double p90 = micros(percentile(r.latencies, 90));
    const double p99 = micros(percentile(r.latencies, 99));
    const double max = micros(r.latencies.empty() ? nanoseconds{0} : r.latencies.back());
    char text[512];
    if (json) {
        std::snprintf(text, sizeof text,
                      "{\"acks\":%llu,\"seconds\":%.3f,\"concurrency\":%u,\"acks_per_second\":%.1f,"
                      "\"latency_us\":{\"p50\":%.1f,\"p90\":%.1f,\"p99\":%.1f,\"max\":%.1f}}\n",
                      static_cast<unsigned long long>(r.acks), seconds, concurrency, rate, p50, p90,
                      p99, max);
    } else {
        std::snprintf(text, sizeof text,
                      "%llu ACKs in %.3f s over %u connection(s): %.1f ACK/s\n"
                      "latency us: p50 %.1f  p90 %.1f  p99 %.1f  max %.1f\n",
                      static_cast<unsigned long long>(r.acks), seconds, concurrency, rate, p50, p90,
                      p99, max);
    }
    return text;
}

}  // namespace spoa::cli
