#pragma once
// Bounds how often a loop logs the same kind of error (a hostile or broken peer must not be
// able to flood the log): at most `per_second` lines, then one summary of what was dropped.

#include <cstdint>

namespace spoa::detail {

class log_limiter {
  public:
    explicit log_limiter(unsigned per_second) noexcept : per_second_(per_second) {}

    /// True when a line may be written at `now_ms`; `suppressed` receives how many lines were
    /// dropped since the last allowed one.
    bool allow(std::uint64_t now_ms, std::uint64_t& suppressed) noexcept {
        if (now_ms - window_start_ >= 1000) {
            window_start_ = now_ms;
            used_ = 0;
        }
        if (used_ >= per_second_) {
            ++dropped_;
            return false;
        }
        ++used_;
        suppressed = dropped_;
        dropped_ = 0;
        return true;
    }

  private:
    unsigned per_second_;
    unsigned used_ = 0;
    std::uint64_t window_start_ = 0;
    std::uint64_t dropped_ = 0;
};

}  // namespace spoa::detail
