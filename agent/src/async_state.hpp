#pragma once
// Cross-thread completion of async handlers.
//
// An async_state is created by the loop for each async handler call and owned by the handler's
// async_reply until done(); done() posts it to the worker's mailbox, and only the loop deletes
// it afterwards. If the worker has stopped (mailbox closed), done() deletes it itself. The
// loop never dereferences a state it has not received back, except to flag it abandoned while
// the mailbox is still open (which guarantees the state is alive).

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include <uv.h>

#include "spoa/protocol/byte_buffer.hpp"

namespace spoa::detail {

struct pending_frame;
class async_state;

class mailbox {
  public:
    /// Called by any thread. Returns false when the mailbox is closed (the caller then owns
    /// the state and must delete it).
    bool post(async_state* s) noexcept;
    /// Loop thread: takes everything queued.
    void take(std::vector<async_state*>& out);
    /// Loop thread, at shutdown: refuses further posts and returns what was queued.
    void close(std::vector<async_state*>& out);
    /// Wakes the loop (for stop requests); false once closed.
    bool wake() noexcept;

    void attach(uv_async_t* handle) noexcept { handle_ = handle; }

  private:
    std::mutex mutex_;
    std::vector<async_state*> queue_;
    uv_async_t* handle_ = nullptr;
    bool closed_ = false;
};

class async_state {
  public:
    async_state(std::shared_ptr<mailbox> box, pending_frame* frame, std::size_t budget)
        : box_(std::move(box)), frame_(frame), budget_(budget) {}

    /// Loop thread: prepares a pooled state for another handler call (the mailbox stays the
    /// worker's, so no reference count is touched).
    void reuse(pending_frame* frame, std::size_t budget) noexcept {
        frame_ = frame;
        budget_ = budget;
        actions.clear();
        refused = 0;
        next_in_frame = nullptr;
        abandoned_.store(false, std::memory_order_relaxed);
    }

    protocol::byte_buffer actions;  ///< written by the handler's thread until done()
    /// Actions the handler's async_reply refused (too big, bad name); handed over by done() so
    /// that the loop counts them like a sync handler's (spoa_actions_refused_total).
    std::size_t refused = 0;
    std::size_t budget() const noexcept { return budget_; }

    /// Any thread, once.
    void complete() noexcept;
    [[nodiscard]] bool abandoned() const noexcept {
        return abandoned_.load(std::memory_order_acquire);
    }
    void abandon() noexcept { abandoned_.store(true, std::memory_order_release); }

    // Loop-only fields.
    pending_frame* frame() const noexcept { return frame_; }
    async_state* next_in_frame = nullptr;

  private:
    std::shared_ptr<mailbox> box_;
    pending_frame* frame_;
    std::size_t budget_;
    std::atomic<bool> abandoned_{false};
};

}  // namespace spoa::detail
