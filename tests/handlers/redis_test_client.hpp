#pragma once
/// What the Redis client's tests share: options for a client of a private redis-server
/// (redis_server.hpp), and a command answered synchronously.

#include <catch2/catch.hpp>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "redis_server.hpp"
#include "spoa/handlers/routing/redis_client.hpp"

namespace spoa::handlers::routing::test {

/// Quick reconnects, a 200 ms command timeout, and no health check unless a test asks (a paused
/// server must keep its connection).
inline redis_options client_options(const redis_server& server) {
    redis_options o;
    o.address = connect_address::parse(server.address());
    o.command_timeout = std::chrono::milliseconds(200);
    o.reconnect_min = std::chrono::milliseconds(10);
    o.reconnect_max = std::chrono::milliseconds(50);
    o.ping_interval = std::chrono::hours(1);
    return o;
}

/// Sends one command and waits (at most 5 s) for its answer.
inline redis_result call(redis_client& c, std::vector<std::string> args) {
    auto done = std::make_shared<std::promise<redis_result>>();
    auto answer = done->get_future();
    c.command(std::move(args), [done](redis_result r) { done->set_value(std::move(r)); });
    REQUIRE(answer.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    return answer.get();
}

}  // namespace spoa::handlers::routing::test
