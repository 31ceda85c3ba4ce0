#pragma once
/// A warning written at most once per period: a Redis outage fails every command and a stream of
/// bad messages repeats itself, so the log says it once while the metrics count every one.
/// Not synchronised: each one belongs to one thread (the routing service loop).

#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

namespace spoa::handlers::routing {

class throttled_warning {
  public:
    throttled_warning() = default;
    /// `log` may be null (nothing is written); lines read "<topic>: <what>: <detail>".
    throttled_warning(std::shared_ptr<spdlog::logger> log, std::string topic,
                      std::chrono::steady_clock::duration period = std::chrono::seconds(10))
        : log_(std::move(log)), topic_(std::move(topic)), period_(period) {}

    void operator()(std::string_view what, std::string_view detail) {
        const auto now = std::chrono::steady_clock::now();
        if (!log_ || (written_ && now - last_ < period_)) return;
        written_ = true;
        last_ = now;
        log_->warn("{}: {}: {}", topic_, what, detail);
    }

  private:
    std::shared_ptr<spdlog::logger> log_;
    std::string topic_;
    std::chrono::steady_clock::duration period_{};
    std::chrono::steady_clock::time_point last_{};
    bool written_ = false;
};

}  // namespace spoa::handlers::routing
