#include "redis_loop_watch.hpp"

#include <hiredis/hiredis.h>

namespace spoa::handlers::routing {
namespace {

struct loop_watch {
    redisAsyncContext* ac = nullptr;  ///< null once hiredis let go of the context
    uv_poll_t poll{};
    int events = 0;  ///< UV_READABLE / UV_WRITABLE hiredis asked for
};

void on_poll(uv_poll_t* handle, int status, int events) {
    auto* w = static_cast<loop_watch*>(handle->data);
    // libuv has stopped the watch on an error: hiredis's read meets the error and disconnects.
    // Either call may free the context (w->ac becomes null through cleanup()).
    if (w->ac != nullptr && (status < 0 || (events & UV_READABLE) != 0))
        redisAsyncHandleRead(w->ac);
    if (w->ac != nullptr && status == 0 && (events & UV_WRITABLE) != 0)
        redisAsyncHandleWrite(w->ac);
    // An error the read did not end the context on (none pending any more): watch again.
    if (w->ac != nullptr && status < 0 && w->events != 0)
        uv_poll_start(&w->poll, w->events, on_poll);
}

/// hiredis's add/del read/write hooks: the events it wants gain `gained` and lose `lost`.
template <int gained, int lost>
void change_events(void* data) {
    auto* w = static_cast<loop_watch*>(data);
    w->events = (w->events | gained) & ~lost;
    if (w->events != 0) {
        uv_poll_start(&w->poll, w->events, on_poll);
    } else {
        uv_poll_stop(&w->poll);
    }
}

void cleanup(void* data) {
    auto* w = static_cast<loop_watch*>(data);
    w->ac = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll),
             [](uv_handle_t* h) { delete static_cast<loop_watch*>(h->data); });
}

}  // namespace

int watch_on_loop(redisAsyncContext* ac, uv_loop_t* loop) {
    if (ac->ev.data != nullptr) return REDIS_ERR;
    auto* w = new loop_watch;
    if (uv_poll_init_socket(loop, &w->poll, ac->c.fd) != 0) {
        delete w;
        return REDIS_ERR;
    }
    w->ac = ac;
    w->poll.data = w;
    ac->ev.data = w;
    ac->ev.addRead = change_events<UV_READABLE, 0>;
    ac->ev.delRead = change_events<0, UV_READABLE>;
    ac->ev.addWrite = change_events<UV_WRITABLE, 0>;
    ac->ev.delWrite = change_events<0, UV_WRITABLE>;
    ac->ev.cleanup = cleanup;
    return REDIS_OK;
}

}  // namespace spoa::handlers::routing
