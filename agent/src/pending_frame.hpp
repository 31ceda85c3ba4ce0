#pragma once
// A NOTIFY waiting for async handlers. Lives on its worker's loop; pooled per worker.

#include <cstdint>

#include "async_state.hpp"
#include "intrusive_list.hpp"
#include "spoa/protocol/byte_buffer.hpp"

namespace spoa::detail {

class connection;

struct pending_frame {
    connection* conn = nullptr;  ///< null once the connection has closed
    std::uint64_t stream_id = 0;
    std::uint64_t frame_id = 0;
    std::uint64_t started_ns = 0;   ///< uv_hrtime() at dispatch
    std::uint64_t deadline_ms = 0;  ///< uv_now() value at which it is answered regardless
    unsigned outstanding = 0;       ///< async handlers not yet back
    bool answered = false;
    bool failed = false;            ///< a handler threw: answer with no variable
    protocol::byte_buffer actions;  ///< encoded actions gathered so far
    async_state* states = nullptr;  ///< outstanding states (singly linked via next_in_frame)
    list_hook by_deadline;          ///< worker's deadline order
    list_hook by_connection;        ///< connection's pending frames
};

}  // namespace spoa::detail
