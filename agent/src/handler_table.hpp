#pragma once
// The registry of message handlers, built before start() and read-only afterwards, so every
// loop thread reads it without locking.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "spoa/agent/handler.hpp"

namespace spoa::detail {

struct handler_entry {
    std::string name;  ///< empty for the catch-all
    sync_handler sync;
    async_handler async;
    [[nodiscard]] bool is_async() const noexcept { return static_cast<bool>(async); }
};

class handler_table {
  public:
    void add(std::string name, sync_handler h);
    void add(std::string name, async_handler h);
    void set_fallback(sync_handler h);
    void set_fallback(async_handler h);

    /// Index of the handler for `name`: a registered name, else the catch-all, else `npos`.
    /// Few handlers are registered in practice, so a linear scan over contiguous names beats
    /// hashing the name of every message.
    [[nodiscard]] std::size_t find(std::string_view name) const noexcept {
        for (std::size_t i = 0; i < named_; ++i) {
            if (entries_[i].name == name) return i;
        }
        return has_fallback_ ? named_ : npos;
    }
    [[nodiscard]] const handler_entry& at(std::size_t i) const noexcept { return entries_[i]; }
    /// Named handlers; index `size()` is reserved for "no handler" in per-name statistics.
    [[nodiscard]] std::size_t named() const noexcept { return named_; }
    [[nodiscard]] std::size_t size() const noexcept { return entries_.size(); }
    [[nodiscard]] bool has_fallback() const noexcept { return has_fallback_; }

    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  private:
    void insert_named(handler_entry e);
    void put_fallback(handler_entry e);

    // Named entries first, the catch-all (if any) last.
    std::vector<handler_entry> entries_;
    std::size_t named_ = 0;
    bool has_fallback_ = false;
};

}  // namespace spoa::detail
