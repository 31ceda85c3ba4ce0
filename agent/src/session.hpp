#pragma once
// One SPOP connection's protocol state, without I/O: bytes in, frames handled, bytes out.
// The connection feeds it what it read and writes what it produced; NOTIFY payloads go to the
// host (the connection), which dispatches them to handlers. Kept I/O-free so that it can be
// tested and fuzzed without sockets.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/error.hpp"
#include "spoa/protocol/fragment_assembler.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/hello.hpp"

namespace spoa::detail {

struct session_settings {
    protocol::agent_capabilities capabilities;
    std::size_t max_reassembled_size = 1024 * 1024;
    /// While set, health-check HELLOs are refused (AGENT-DISCONNECT), so that HAProxy marks the
    /// agent DOWN during a drain's grace period while traffic is still served.
    const std::atomic<bool>* refuse_healthchecks = nullptr;
};

class session_host {
  public:
    /// A complete NOTIFY (reassembled if it was fragmented). `payload` is valid during the call.
    virtual void on_notify(std::uint64_t stream_id, std::uint64_t frame_id,
                           protocol::bytes_view payload) = 0;
    /// When true, feed() stops before the next frame (backpressure).
    [[nodiscard]] virtual bool paused() const noexcept = 0;

  protected:
    ~session_host() = default;
};

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

    session(const session_settings& settings, session_host& host, protocol::byte_buffer& out)
        : settings_(settings), host_(host), out_(out) {}

    /// Handles every complete frame at the start of `input`; returns the bytes consumed. The
    /// caller keeps the rest (a partial frame, or frames left while paused) for the next call.
    std::size_t feed(protocol::bytes_view input);

    /// Bytes the next frame needs in total once its length is known (0 if unknown).
    [[nodiscard]] std::size_t needed() const noexcept { return needed_; }

    /// Writes an AGENT-DISCONNECT with `status` and enters `closing` (no-op if already closing).
    void disconnect(protocol::status_code status, std::string_view message, close_reason why);
    /// Fails with a protocol error: AGENT-DISCONNECT with its mapped status; sticky.
    void fail(protocol::error e);

    [[nodiscard]] state current() const noexcept { return state_; }
    [[nodiscard]] close_reason why_closing() const noexcept { return reason_; }
    [[nodiscard]] protocol::error last_error() const noexcept { return error_; }
    [[nodiscard]] protocol::status_code sent_status() const noexcept { return sent_status_; }
    [[nodiscard]] const protocol::negotiation& negotiated() const noexcept { return negotiated_; }
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
    void handle(const protocol::frame& f);
    void handle_hello(const protocol::frame& f);
    void handle_running(const protocol::frame& f);
    void handle_peer_disconnect(const protocol::frame& f);
    void feed_fragment(const protocol::frame& f);

    const session_settings& settings_;
    session_host& host_;
    protocol::byte_buffer& out_;
    state state_ = state::wait_hello;
    close_reason reason_ = close_reason::none;
    protocol::error error_ = protocol::error::none;
    protocol::status_code sent_status_ = protocol::status_code::normal;
    protocol::negotiation negotiated_;
    std::string engine_id_;
    std::size_t needed_ = 0;
    std::uint32_t peer_status_ = 0;
    std::string peer_message_;
    std::uint64_t aborted_fragments_ = 0;
    std::uint64_t unset_frames_ = 0;
    /// Created on the first fragmented NOTIFY only: most connections never need it.
    std::unique_ptr<protocol::fragment_assembler> assembler_;
};

}  // namespace spoa::detail
