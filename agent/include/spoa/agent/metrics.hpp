#pragma once
/// A small Prometheus registry: counters, gauges and histograms that any thread may update
/// (relaxed atomics), plus collectors that append their own text at scrape time.

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace spoa {

class counter {
  public:
    void inc(std::uint64_t n = 1) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
    [[nodiscard]] std::uint64_t value() const noexcept {
        return value_.load(std::memory_order_relaxed);
    }

  private:
    std::atomic<std::uint64_t> value_{0};
};

class gauge {
  public:
    void set(std::int64_t v) noexcept { value_.store(v, std::memory_order_relaxed); }
    void add(std::int64_t d) noexcept { value_.fetch_add(d, std::memory_order_relaxed); }
    [[nodiscard]] std::int64_t value() const noexcept {
        return value_.load(std::memory_order_relaxed);
    }

  private:
    std::atomic<std::int64_t> value_{0};
};

/// Cumulative histogram over fixed upper bounds (in the unit the caller observes, e.g. seconds).
class histogram {
  public:
    explicit histogram(std::vector<double> upper_bounds);
    void observe(double value) noexcept;
    [[nodiscard]] const std::vector<double>& bounds() const noexcept { return bounds_; }
    /// Non-cumulative count of bucket i (i == bounds().size() is +Inf).
    [[nodiscard]] std::uint64_t bucket(std::size_t i) const noexcept {
        return counts_[i].load(std::memory_order_relaxed);
    }
    [[nodiscard]] std::uint64_t count() const noexcept;
    [[nodiscard]] double sum() const noexcept;

  private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
    std::atomic<std::uint64_t> sum_micros_{0};  ///< sum * 1e6, so it can be an integer atomic
};

/// Latency buckets in seconds, from 10 µs to 10 s.
[[nodiscard]] std::vector<double> latency_buckets_seconds();

/// Helpers to write the Prometheus text format.
namespace prometheus {
void header(std::string& out, std::string_view name, std::string_view help, std::string_view type);
void sample(std::string& out, std::string_view name, std::string_view labels, double value);
void sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value);
void sample(std::string& out, std::string_view name, std::string_view labels, std::int64_t value);
/// Escapes a label value (backslash, quote, newline).
[[nodiscard]] std::string escape(std::string_view value);
/// Writes the _bucket/_sum/_count lines of a histogram (no header).
void write_histogram(std::string& out, std::string_view name, std::string_view labels,
                     const histogram& h);
}  // namespace prometheus

class metrics_registry {
  public:
    using collector = std::function<void(std::string& out)>;

    /// Registers (or returns the existing) metric with this name and label set. `labels` is the
    /// inside of the braces, e.g. `reason="busy"`. References stay valid for the registry's life.
    counter& add_counter(std::string name, std::string help, std::string labels = {});
    gauge& add_gauge(std::string name, std::string help, std::string labels = {});
    histogram& add_histogram(std::string name, std::string help, std::vector<double> bounds,
                             std::string labels = {});
    /// Called at every scrape, after the registered metrics.
    void add_collector(collector fn);

    /// The whole exposition text.
    [[nodiscard]] std::string render() const;

  private:
    struct entry {
        std::string name;
        std::string help;
        std::string labels;
        std::string type;
        counter* c = nullptr;
        gauge* g = nullptr;
        histogram* h = nullptr;
    };
    template <typename T>
    T* find_(const std::string& name, const std::string& labels) const;

    mutable std::mutex mutex_;
    std::deque<counter> counters_;
    std::deque<gauge> gauges_;
    std::deque<std::unique_ptr<histogram>> histograms_;
    std::vector<entry> entries_;
    std::vector<collector> collectors_;
};

}  // namespace spoa
