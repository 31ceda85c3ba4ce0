// The routing service loop: tasks, and what becomes of the tasks it never runs.

#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <vector>

#include "spoa/handlers/service_loop.hpp"

namespace spoa::handlers {

TEST_CASE("service loop: a task posted before stop() still runs; then nothing holds the loop",
          "[service_loop]") {
    // The task holds the loop itself (as a Redis client's command does, through the client).
    auto loop = std::make_shared<service_loop>();
    std::weak_ptr<service_loop> weak = loop;
    std::promise<void> ran;
    std::atomic<bool> late_ran{false};
    loop->post([&, loop](uv_loop_t*) {
        // Queued behind the running batch, then stop(): the last drain still runs it.
        loop->post([&late_ran, keep = loop](uv_loop_t*) { late_ran = true; });
        loop->stop();
        ran.set_value();
    });
    ran.get_future().wait();
    loop->join();
    CHECK(late_ran.load());
    loop.reset();
    CHECK(weak.expired());
}

TEST_CASE("service loop: tasks run in order; after stop they are dropped at once",
          "[service_loop]") {
    service_loop loop;
    std::promise<void> done;
    std::vector<int> order;  // loop thread only until `done`
    for (int i = 1; i <= 100; ++i) {
        loop.post([&, i](uv_loop_t*) {
            order.push_back(i);
            if (i == 100) done.set_value();
        });
    }
    done.get_future().wait();
    std::vector<int> expected(100);
    for (int i = 0; i < 100; ++i)
        expected[static_cast<std::size_t>(i)] = i + 1;
    CHECK(order == expected);
    loop.join();
    auto held = std::make_shared<int>(7);
    loop.post([held](uv_loop_t*) {});
    CHECK(held.use_count() == 1);  // destroyed inside post()
}

}  // namespace spoa::handlers
