#pragma once
/// One SPOP connection's protocol state, without I/O (like nghttp2's session object): bytes in,
/// frames and decisions out. The caller feeds what it read and writes what the session appended
/// to its output buffer; complete NOTIFY payloads (reassembled when fragmented) go to the host,
/// which answers them (ACKs are written by the host into the same buffer). The outcome of the
/// handshake and of the connection (closing, why, the status sent or received) is read back
/// from the session. Pure like the rest of spoa::protocol, so it is tested and fuzzed on bytes
/// in memory: protocol/README.md §6 (handshake), §7 (DISCONNECT), §9 (fragmentation).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/error.hpp"
#include "spoa/protocol/fragment_assembler.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/hello.hpp"
#include "spoa/protocol/status_code.hpp"

namespace spoa::protocol {

/// What the agent offers; plain data, shared (by reference) by every session of an agent.
struct session_settings {
    agent_capabilities capabilities;
    /// Cap on a reassembled fragmented NOTIFY (fragment_assembler).
    std::size_t max_reassembled_size = 1024 * 1024;
};

/// The session's caller: receives NOTIFYs and answers the session's questions.
class session_host {
  public:
    /// A complete NOTIFY (reassembled if it was fragmented). `payload` is valid during the call.
    virtual void on_notify(std::uint64_t stream_id, std::uint64_t frame_id, bytes_view payload) = 0;
    /// When true, feed() stops before the next frame (backpressure).
    [[nodiscard]] virtual bool paused() const noexcept = 0;
    /// Asked when a health-check HELLO would be accepted. True refuses it instead: AGENT-DISCONNECT
    /// with status 0 and "agent is draining" (close_reason::local), so that HAProxy marks the
    /// agent DOWN while it still serves traffic (a drain's grace period). Default: never.
    [[nodiscard]] virtual bool refuse_healthcheck() const noexcept { return false; }

  protected:
    ~session_host() = default;
};

/// The state machine of one connection. `settings`, `host` and `out` are kept by reference and
/// must outlive it; frames it produces (AGENT-HELLO, AGENT-DISCONNECT) are appended to `out`.
class session {
  public:
    enum class state : std::uint8_t {
        wait_hello,  ///< nothing but HAPROXY-HELLO is valid
        running,
        closing,  ///< a DISCONNECT or the health-check reply was produced; input is ignored
    };

    /// Why the session entered `closing`.
    enum class close_reason : std::uint8_t {
        none,
        healthcheck,      ///< answered a health-check HELLO
        peer_disconnect,  ///< HAPROXY-DISCONNECT received and answered
        refused,          ///< handshake refused (version, frame size ...)
        protocol_error,   ///< malformed or unexpected input
        local,            ///< we decided to close (drain, idle, limits)
    };

    session(const session_settings& settings, session_host& host, byte_buffer& out)
        : settings_(settings), host_(host), out_(out) {}

    /// Handles every complete frame at the start of `input`; returns the bytes consumed. The
    /// caller keeps the rest (a partial frame, or frames left while paused) for the next call.
    std::size_t feed(bytes_view input);

    /// Bytes the next frame needs in total once its length is known (0 if unknown).
    [[nodiscard]] std::size_t needed() const noexcept { return needed_; }

    /// Writes an AGENT-DISCONNECT with `status` and enters `closing` (no-op if already closing).
    void disconnect(status_code status, std::string_view message, close_reason why);
    /// Fails with a protocol error: AGENT-DISCONNECT with its mapped status; sticky.
    void fail(error e);

    [[nodiscard]] state current() const noexcept { return state_; }
    [[nodiscard]] close_reason why_closing() const noexcept { return reason_; }
    [[nodiscard]] error last_error() const noexcept { return error_; }
    [[nodiscard]] status_code sent_status() const noexcept { return sent_status_; }
    [[nodiscard]] const negotiation& negotiated() const noexcept { return negotiated_; }
    [[nodiscard]] const std::string& engine_id() const noexcept { return engine_id_; }
    /// Frame size limit for frames in either direction (ours before HELLO, negotiated after).
    [[nodiscard]] std::uint32_t frame_limit() const noexcept {
        return state_ == state::wait_hello ? settings_.capabilities.max_frame_size
                                           : negotiated_.max_frame_size;
    }
    /// The peer's DISCONNECT status and message (valid after peer_disconnect).
    [[nodiscard]] std::uint32_t peer_status() const noexcept { return peer_status_; }
    [[nodiscard]] const std::string& peer_message() const noexcept { return peer_message_; }
    [[nodiscard]] std::uint64_t aborted_fragments() const noexcept { return aborted_fragments_; }
    /// UNSET frames (fragment continuations) received; they never reach the host.
    [[nodiscard]] std::uint64_t unset_frames() const noexcept { return unset_frames_; }

  private:
    void handle(const frame& f);
    void handle_hello(const frame& f);
    void handle_running(const frame& f);
    void handle_peer_disconnect(const frame& f);
    void feed_fragment(const frame& f);

    const session_settings& settings_;
    session_host& host_;
    byte_buffer& out_;
    state state_ = state::wait_hello;
    close_reason reason_ = close_reason::none;
    error error_ = error::none;
    status_code sent_status_ = status_code::normal;
    negotiation negotiated_;
    std::string engine_id_;
    std::size_t needed_ = 0;
    std::uint32_t peer_status_ = 0;
    std::string peer_message_;
    std::uint64_t aborted_fragments_ = 0;
    std::uint64_t unset_frames_ = 0;
    /// Created on the first fragmented NOTIFY only: most connections never need it.
    std::unique_ptr<fragment_assembler> assembler_;
};

}  // namespace spoa::protocol
