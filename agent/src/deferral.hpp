#pragma once
// What reply::defer() asks of the loop: turn the frame being answered into a pending one.

#include <cstddef>

#include "spoa/protocol/byte_buffer.hpp"

namespace spoa::detail {

class async_state;

/// Implemented by the worker for the frame it is dispatching.
class deferral {
  public:
    struct target {
        async_state* state;                    ///< for the async_reply the handler gets
        protocol::byte_buffer* frame_actions;  ///< where the deferring reply writes from now on
        std::size_t limit;                     ///< the size frame_actions may not exceed
    };
    /// Loop thread, during a sync handler's call.
    virtual target defer() = 0;

  protected:
    deferral() = default;
    ~deferral() = default;
    deferral(const deferral&) = default;
    deferral& operator=(const deferral&) = default;
};

}  // namespace spoa::detail
