#pragma once
/// A libuv loop on its own thread for the handlers' background I/O (control-plane connections,
/// DNS lookups, health probes, wake calls, timers). Handlers never block an agent loop: they post
/// work here and complete their async_reply from here.

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include <uv.h>

namespace spoa::handlers {

/// Ownership of tasks: post() moves the task into the loop's queue; the poster keeps no
/// reference to it. A task runs once, on the loop thread, or, if posted after stop(), is
/// destroyed inside post() on the posting thread (callers may rely on that to fail the work
/// they posted on their own thread). Whatever a task captures by pointer (a router,
/// a resolver) must outlive the loop: owners join the loop before they are destroyed.
class service_loop {
  public:
    service_loop();
    ~service_loop();  ///< stops and joins
    service_loop(const service_loop&) = delete;
    service_loop& operator=(const service_loop&) = delete;

    using task = std::function<void(uv_loop_t*)>;

    /// Runs `fn` on the loop thread (thread-safe). Tasks posted after stop() are dropped.
    void post(task fn);
    /// Stops the loop: pending tasks run, then every handle still open is closed.
    void stop();
    /// stop(), then waits for the loop thread to end (not from the loop thread).
    void join();
    [[nodiscard]] bool on_loop_thread() const noexcept;
    /// Only on the loop thread.
    [[nodiscard]] uv_loop_t* loop() noexcept { return &loop_; }

    /// Registers a closer called on the loop thread at stop(), before the loop ends, so objects
    /// owning handles can close them.
    void at_stop(std::function<void()> fn);

    /// One-shot timer (loop thread only). Returns an id for cancel_timer; ids are never reused.
    std::uint64_t start_timer(std::uint64_t ms, std::function<void()> fn);
    /// Cancels a timer that has not fired (loop thread only); no-op for an unknown id.
    void cancel_timer(std::uint64_t id) noexcept;

  private:
    struct timer_box;
    void drain_tasks();
    void close_timer(timer_box* box) noexcept;

    uv_loop_t loop_{};
    uv_async_t wake_{};
    std::thread thread_;
    std::mutex mutex_;
    std::vector<task> tasks_;
    std::vector<std::function<void()>> closers_;
    bool stopping_ = false;
    bool stopped_ = false;
    std::unordered_map<std::uint64_t, timer_box*> timers_;  ///< loop thread only
    std::uint64_t next_timer_ = 1;
};

}  // namespace spoa::handlers
