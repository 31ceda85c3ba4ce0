#pragma once
/// Reassembly of fragmented NOTIFY payloads (protocol/README.md §9): a NOTIFY without FIN
/// opens a fragment, UNSET frames with the same ids continue it, FIN ends it, FIN|ABORT drops it.

#include <cstddef>
#include <cstdint>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/error.hpp"
#include "spoa/protocol/frame.hpp"

namespace spoa::protocol {

class fragment_assembler {
  public:
    /// `max_payload` caps the reassembled payload (the agent default is 1 MiB).
    explicit fragment_assembler(std::size_t max_payload) noexcept : max_payload_(max_payload) {}

    enum class outcome : std::uint8_t {
        pending,   ///< more fragments expected
        complete,  ///< `payload()` holds the whole NOTIFY payload
        aborted,   ///< HAProxy cancelled it: send no ACK
        failed,    ///< see the returned error; the connection is finished
    };

    struct result {
        outcome what = outcome::pending;
        error err = error::none;
    };

    /// True while a fragmented NOTIFY is open: any frame except its continuations (or a
    /// HAPROXY-DISCONNECT) is then an interlaced frame.
    [[nodiscard]] bool in_progress() const noexcept { return open_; }
    [[nodiscard]] std::uint64_t stream_id() const noexcept { return stream_id_; }
    [[nodiscard]] std::uint64_t frame_id() const noexcept { return frame_id_; }

    /// Feeds a NOTIFY without FIN (opens) or an UNSET frame (continues or ends).
    /// Errors: interlaced_fragments (another NOTIFY, or other ids), fragment_without_start,
    /// reassembly_too_big, unexpected_frame (other types).
    [[nodiscard]] result feed(const frame& f);

    /// The reassembled payload after `complete`; valid until the next feed() or reset().
    [[nodiscard]] bytes_view payload() const noexcept { return buffer_.view(); }
    /// Forgets the open fragment (keeps the buffer's capacity).
    void reset() noexcept {
        open_ = false;
        buffer_.clear();
    }

  private:
    byte_buffer buffer_;
    std::size_t max_payload_;
    std::uint64_t stream_id_ = 0;
    std::uint64_t frame_id_ = 0;
    bool open_ = false;
};

}  // namespace spoa::protocol
