#include "spoa/handlers/service_loop.hpp"

#include <stdexcept>

namespace spoa::handlers {

service_loop::service_loop() {
    if (uv_loop_init(&loop_) != 0) throw std::runtime_error("uv_loop_init failed");
    loop_.data = this;
    uv_async_init(&loop_, &wake_, [](uv_async_t* h) noexcept {
        static_cast<service_loop*>(h->loop->data)->drain_tasks();
    });
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
}

service_loop::~service_loop() {
    join();
    uv_loop_close(&loop_);
}

void service_loop::join() {
    stop();
    if (thread_.joinable()) thread_.join();
}

bool service_loop::on_loop_thread() const noexcept {
    return std::this_thread::get_id() == thread_.get_id();
}

void service_loop::post(task fn) {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    tasks_.push_back(std::move(fn));
    uv_async_send(&wake_);
}

void service_loop::at_stop(std::function<void()> fn) {
    std::lock_guard lock(mutex_);
    closers_.push_back(std::move(fn));
}

void service_loop::drain_tasks() {
    std::vector<task> batch;
    bool stop_now = false;
    {
        std::lock_guard lock(mutex_);
        batch.swap(tasks_);
        stop_now = stopping_ && !stopped_;
    }
    for (auto& t : batch) {
        try {
            t(&loop_);
        } catch (...) {
            // A task must not take the loop down; tasks report their own errors.
        }
    }
    if (!stop_now) return;
    std::vector<std::function<void()>> closers;
    {
        std::lock_guard lock(mutex_);
        stopped_ = true;
        closers.swap(closers_);
    }
    for (auto& c : closers)
        c();
    while (!timers_.empty())
        close_timer(timers_.begin()->second);
    uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
}

void service_loop::stop() {
    {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
        stopping_ = true;
        uv_async_send(&wake_);
    }
}

struct service_loop::timer_box {
    uv_timer_t handle;
    std::uint64_t id;
    std::function<void()> fn;
};

std::uint64_t service_loop::start_timer(std::uint64_t ms, std::function<void()> fn) {
    auto* box = new timer_box{{}, next_timer_++, std::move(fn)};
    uv_timer_init(&loop_, &box->handle);
    box->handle.data = box;
    timers_.emplace(box->id, box);
    uv_timer_start(
        &box->handle,
        [](uv_timer_t* t) noexcept {
            auto* b = static_cast<timer_box*>(t->data);
            auto* self = static_cast<service_loop*>(t->loop->data);
            auto callback = std::move(b->fn);
            self->close_timer(b);
            if (callback) {
                try {
                    callback();
                } catch (...) {
                }
            }
        },
        ms, 0);
    return box->id;
}

void service_loop::cancel_timer(std::uint64_t id) noexcept {
    const auto it = timers_.find(id);
    if (it != timers_.end()) close_timer(it->second);
}

void service_loop::close_timer(timer_box* box) noexcept {
    timers_.erase(box->id);
    uv_timer_stop(&box->handle);
    uv_close(reinterpret_cast<uv_handle_t*>(&box->handle),
             [](uv_handle_t* h) noexcept { delete static_cast<timer_box*>(h->data); });
}

}  // namespace spoa::handlers
