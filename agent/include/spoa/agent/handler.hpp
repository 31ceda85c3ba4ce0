#pragma once
/// Handler signatures.

#include <functional>

#include "spoa/agent/message.hpp"
#include "spoa/agent/reply.hpp"

namespace spoa {

/// One rule for a handler that throws, whatever kind the frame's other handlers are: its frame
/// fails. The handlers of the messages after it in the same NOTIFY are not called; the ACK
/// carries no variable at all (only the harmless noop unset-var), neither what the failing
/// handler set nor what the frame's other handlers set before it or complete later; it goes out
/// when the frame's async handlers already started are back (or at the deadline), as for any
/// frame. The exception is counted (spoa_handler_exceptions_total) and logged, rate limited.
/// The connection and its other frames are not affected.

/// Runs on the connection's loop thread and must not block; sets variables before returning.
using sync_handler = std::function<void(const message&, reply&)>;

/// Runs on the loop thread, may hand the async_reply to any thread and return at once. The
/// message is only valid during the call: copy what the later work needs.
using async_handler = std::function<void(const message&, async_reply)>;

}  // namespace spoa
