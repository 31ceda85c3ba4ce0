#pragma once
// Per-worker counters. Each is written by its worker's loop thread only (a relaxed load+store,
// no locked instruction) and read by the admin thread at scrape time.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "spoa/agent/metrics.hpp"

namespace spoa::detail {

class local_counter {
  public:
    void inc(std::uint64_t n = 1) noexcept {
        v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    }
    void dec() noexcept {
        v_.store(v_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
    }
    [[nodiscard]] std::uint64_t value() const noexcept {
        return v_.load(std::memory_order_relaxed);
    }

  private:
    std::atomic<std::uint64_t> v_{0};
};

/// Frame types we count, in this order.
enum class frame_kind : std::uint8_t { unset, hello, disconnect, notify, count };
enum class sent_kind : std::uint8_t { hello, disconnect, ack, count };
/// Limits and timeouts that were hit.
enum class limit_kind : std::uint8_t {
    max_connections,
    inflight,
    write_high_water,
    idle_timeout,
    hello_timeout,
    handler_deadline,
    drain_timeout,
    count
};

struct worker_stats {
    explicit worker_stats(std::size_t handler_slots)
        : messages(std::make_unique<local_counter[]>(handler_slots)),
          handler_latency(latency_buckets_seconds()) {}

    local_counter accepted;
    local_counter closed;
    local_counter active;
    local_counter inflight;
    std::array<local_counter, static_cast<std::size_t>(frame_kind::count)> frames_in;
    std::array<local_counter, static_cast<std::size_t>(sent_kind::count)> frames_out;
    std::array<local_counter, static_cast<std::size_t>(limit_kind::count)> limits;
    /// AGENT-DISCONNECT statuses we sent (index = status, 99 for anything above).
    std::array<local_counter, 100> sent_status;
    /// HAPROXY-DISCONNECT statuses received.
    std::array<local_counter, 100> peer_status;
    std::unique_ptr<local_counter[]> messages;  ///< per handler slot, see worker::message_slot
    local_counter handler_exceptions;
    local_counter actions_refused;
    local_counter fragments_aborted;
    local_counter async_late;  ///< completions that arrived after their frame was answered
    histogram handler_latency;
};

}  // namespace spoa::detail
