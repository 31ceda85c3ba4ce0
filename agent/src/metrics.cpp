#include "spoa/agent/metrics.hpp"

#include <cmath>
#include <cstdio>

namespace spoa {

histogram::histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)),
      counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {}

void histogram::observe(double value) noexcept {
    std::size_t i = 0;
    while (i < bounds_.size() && value > bounds_[i])
        ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    if (value > 0) {
        sum_micros_.fetch_add(static_cast<std::uint64_t>(std::llround(value * 1e6)),
                              std::memory_order_relaxed);
    }
}

std::uint64_t histogram::count() const noexcept {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i <= bounds_.size(); ++i)
        n += bucket(i);
    return n;
}

double histogram::sum() const noexcept {
    return static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6;
}

std::vector<double> latency_buckets_seconds() {
    return {0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
            0.025,   0.05,     0.1,     0.25,   0.5,     1.0,    2.5,   5.0,    10.0};
}

namespace prometheus {

void header(std::string& out, std::string_view name, std::string_view help, std::string_view type) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

namespace {
void name_and_labels(std::string& out, std::string_view name, std::string_view labels) {
    out.append(name);
    if (!labels.empty()) out.append("{").append(labels).append("}");
    out.append(" ");
}
}  // namespace

void sample(std::string& out, std::string_view name, std::string_view labels, double value) {
    name_and_labels(out, name, labels);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", value);
    out.append(buf).append("\n");
}

void sample(std::string& out, std::string_view name, std::string_view labels, std::uint64_t value) {
    name_and_labels(out, name, labels);
    out.append(std::to_string(value)).append("\n");
}

void sample(std::string& out, std::string_view name, std::string_view labels, std::int64_t value) {
    name_and_labels(out, name, labels);
    out.append(std::to_string(value)).append("\n");
}

std::string escape(std::string_view value) {
    std::string s;
    s.reserve(value.size());
    for (const char c : value) {
        if (c == '\\' || c == '"') {
            s.push_back('\\');
            s.push_back(c);
        } else if (c == '\n') {
            s.append("\\n");
        } else {
            s.push_back(c);
        }
    }
    return s;
}

void write_histogram(std::string& out, std::string_view name, std::string_view labels,
                     const histogram& h) {
    const std::string bucket = std::string(name) + "_bucket";
    const std::string sep = labels.empty() ? "" : std::string(labels) + ",";
    std::uint64_t cumulative = 0;
    char le[64];
    for (std::size_t i = 0; i < h.bounds().size(); ++i) {
        cumulative += h.bucket(i);
        std::snprintf(le, sizeof le, "le=\"%.9g\"", h.bounds()[i]);
        sample(out, bucket, sep + le, cumulative);
    }
    cumulative += h.bucket(h.bounds().size());
    sample(out, bucket, sep + "le=\"+Inf\"", cumulative);
    sample(out, std::string(name) + "_sum", labels, h.sum());
    sample(out, std::string(name) + "_count", labels, cumulative);
}

}  // namespace prometheus

template <typename T>
T* metrics_registry::find_(const std::string& name, const std::string& labels) const {
    for (const auto& e : entries_) {
        if (e.name != name || e.labels != labels) continue;
        if constexpr (std::is_same_v<T, counter>) return e.c;
        if constexpr (std::is_same_v<T, gauge>) return e.g;
        if constexpr (std::is_same_v<T, histogram>) return e.h;
    }
    return nullptr;
}

counter& metrics_registry::add_counter(std::string name, std::string help, std::string labels) {
    std::lock_guard lock(mutex_);
    if (counter* c = find_<counter>(name, labels)) return *c;
    counter& c = counters_.emplace_back();
    entries_.push_back(
        {std::move(name), std::move(help), std::move(labels), "counter", &c, nullptr, nullptr});
    return c;
}

gauge& metrics_registry::add_gauge(std::string name, std::string help, std::string labels) {
    std::lock_guard lock(mutex_);
    if (gauge* g = find_<gauge>(name, labels)) return *g;
    gauge& g = gauges_.emplace_back();
    entries_.push_back(
        {std::move(name), std::move(help), std::move(labels), "gauge", nullptr, &g, nullptr});
    return g;
}

histogram& metrics_registry::add_histogram(std::string name, std::string help,
                                           std::vector<double> bounds, std::string labels) {
    std::lock_guard lock(mutex_);
    if (histogram* h = find_<histogram>(name, labels)) return *h;
    histogram& h = *histograms_.emplace_back(std::make_unique<histogram>(std::move(bounds)));
    entries_.push_back(
        {std::move(name), std::move(help), std::move(labels), "histogram", nullptr, nullptr, &h});
    return h;
}

void metrics_registry::add_collector(collector fn) {
    std::lock_guard lock(mutex_);
    collectors_.push_back(std::move(fn));
}

std::string metrics_registry::render() const {
    std::lock_guard lock(mutex_);
    std::string out;
    out.reserve(8192);
    // One HELP/TYPE header per metric name, even when it has several label sets.
    std::vector<bool> done(entries_.size(), false);
    for (std::size_t i = 0; i < entries_.size(); ++i) {
        if (done[i]) continue;
        const entry& first = entries_[i];
        prometheus::header(out, first.name, first.help, first.type);
        for (std::size_t j = i; j < entries_.size(); ++j) {
            const entry& e = entries_[j];
            if (done[j] || e.name != first.name) continue;
            done[j] = true;
            if (e.c) prometheus::sample(out, e.name, e.labels, e.c->value());
            if (e.g) prometheus::sample(out, e.name, e.labels, e.g->value());
            if (e.h) prometheus::write_histogram(out, e.name, e.labels, *e.h);
        }
    }
    for (const auto& fn : collectors_)
        fn(out);
    return out;
}

}  // namespace spoa
