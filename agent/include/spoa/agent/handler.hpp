#pragma once
/// Handler signatures.

#include <functional>

#include "spoa/agent/message.hpp"
#include "spoa/agent/reply.hpp"

namespace spoa {

/// Runs on the connection's loop thread and must not block; sets variables before returning.
using sync_handler = std::function<void(const message&, reply&)>;

/// Runs on the loop thread, may hand the async_reply to any thread and return at once. The
/// message is only valid during the call: copy what the later work needs.
using async_handler = std::function<void(const message&, async_reply)>;

}  // namespace spoa
