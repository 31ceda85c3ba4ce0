#pragma once
/// Drives a hiredis asynchronous context from a libuv loop: its socket is watched with a
/// uv_poll_t and readiness is handed to redisAsyncHandleRead/Write.
///
/// Why not hiredis's own libuv adapter: libuv reports a socket error (POLLERR, e.g. a connection
/// the server reset because it died with commands unread) as a status and stops the watch, and
/// that adapter ignores the status. The context then stays open and silent until something else
/// notices. Here an error is handed to hiredis as a read, which meets the error and disconnects
/// the context at once (its disconnect callback runs).
///
/// Ownership / threads: everything on the loop's thread. The watch belongs to the context:
/// hiredis calls its cleanup hook when it frees the context, which closes the poll handle and
/// frees the watch once libuv has released it.

#include <hiredis/async.h>
#include <uv.h>

namespace spoa::handlers::routing {

/// REDIS_OK, or REDIS_ERR if the context is already watched or the socket cannot be polled.
int watch_on_loop(redisAsyncContext* ac, uv_loop_t* loop);

}  // namespace spoa::handlers::routing
