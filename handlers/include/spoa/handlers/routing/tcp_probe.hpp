#pragma once
/// A TCP connect with a timeout on a libuv loop: the readiness and health probe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include <uv.h>

#include "spoa/agent/ip_address.hpp"

namespace spoa::handlers::routing {

/// Loop thread only. `done(true, "")` once connected (then closed), `done(false, reason)` on
/// refusal, error or timeout. Exactly once.
void probe_tcp(uv_loop_t* loop, const ip_address& ip, std::uint16_t port,
               std::chrono::milliseconds timeout, std::function<void(bool, std::string)> done);

}  // namespace spoa::handlers::routing
