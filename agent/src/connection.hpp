#pragma once
// One accepted SPOP connection: libuv I/O around a protocol::session.
//
// Lifetime (uvw style): a connection is created by its worker on accept, never copied or moved,
// and deletes itself in libuv's close callback. Reading decodes in place from the worker's
// shared read buffer; only a frame that straddles two reads is copied (into `partial_`).

#include <cstdint>
#include <string>

#include <uv.h>

#include "intrusive_list.hpp"
#include "pending_frame.hpp"
#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/session.hpp"

namespace spoa::detail {

class worker;

class connection final : public protocol::session_host {
  public:
    enum class transport : std::uint8_t { tcp, unix_socket };

    connection(worker& w, transport t, std::uint64_t id);
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    /// Accepts the pending connection of `server` and starts reading; on failure the object
    /// closes (and deletes) itself. Returns false then.
    bool accept(uv_stream_t* server);

    // session_host
    void on_notify(std::uint64_t stream_id, std::uint64_t frame_id,
                   protocol::bytes_view payload) override;
    [[nodiscard]] bool paused() const noexcept override;
    /// While the agent drains (shared_context::draining), health checks are refused.
    [[nodiscard]] bool refuse_healthcheck() const noexcept override;

    [[nodiscard]] std::uint64_t id() const noexcept { return id_; }
    [[nodiscard]] const std::string& peer() const noexcept { return peer_; }
    [[nodiscard]] protocol::session& sess() noexcept { return session_; }
    [[nodiscard]] protocol::byte_buffer& out() noexcept { return out_; }
    [[nodiscard]] std::size_t inflight() const noexcept { return inflight_; }
    [[nodiscard]] bool closed() const noexcept { return closed_; }

    /// A pending frame now waits on this connection.
    void track(pending_frame& p) noexcept;
    /// A frame of this connection was answered (ACK written to out()).
    void frame_answered(bool was_tracked) noexcept;

    /// Output was produced: flush at the end of this loop iteration.
    void mark_dirty() noexcept;
    /// Writes what `out()` holds (called once per loop iteration for dirty connections).
    void flush() noexcept;

    /// Sends AGENT-DISCONNECT and closes once it is written (no-op if already closing).
    void disconnect(protocol::status_code status, std::string_view message);
    /// Drain: disconnect now if nothing is in flight, else as soon as the last frame is answered.
    void drain() noexcept;
    /// Closes at once (no DISCONNECT).
    void close_now() noexcept;
    /// Periodic check of the HELLO/idle/linger timeouts; `now_ms` is uv_now().
    void check_timeouts(std::uint64_t now_ms) noexcept;

    list_hook in_worker;
    bool dirty = false;

  private:
    static void on_alloc(uv_handle_t* h, std::size_t suggested, uv_buf_t* buf) noexcept;
    static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept;
    static void on_write(uv_write_t* req, int status) noexcept;
    static void on_shutdown(uv_shutdown_t* req, int status) noexcept;
    static void on_close(uv_handle_t* h) noexcept;

    void process(protocol::bytes_view data);
    /// Feeds `partial_` until its first frame is complete or the data runs out.
    protocol::bytes_view complete_partial(protocol::bytes_view data);
    void after_session_step() noexcept;
    void update_reading() noexcept;
    void write_done() noexcept;
    [[nodiscard]] std::size_t queued_bytes() const noexcept;
    [[nodiscard]] uv_stream_t* stream() noexcept {
        return reinterpret_cast<uv_stream_t*>(&handle_);
    }
    [[nodiscard]] uv_handle_t* handle() noexcept {
        return reinterpret_cast<uv_handle_t*>(&handle_);
    }

    worker& worker_;
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } handle_;
    uv_write_t write_req_;
    uv_shutdown_t shutdown_req_;
    transport transport_;
    std::uint64_t id_;
    std::string peer_;
    protocol::session session_;
    protocol::byte_buffer out_;      ///< frames produced since the last flush
    protocol::byte_buffer writing_;  ///< frames handed to uv_write
    protocol::byte_buffer partial_;  ///< an incomplete frame carried over to the next read
    intrusive_list<pending_frame, &pending_frame::by_connection> pending_;
    std::size_t inflight_ = 0;
    std::uint64_t accepted_ms_ = 0;
    std::uint64_t last_activity_ms_ = 0;
    std::uint64_t closing_since_ms_ = 0;
    bool reading_ = false;
    bool write_in_flight_ = false;
    bool closing_noted_ = false;  ///< the session's closing state has been acted upon
    bool shutdown_sent_ = false;
    bool draining_ = false;
    bool closed_ = false;
    bool hello_noted_ = false;
    std::uint64_t unset_counted_ = 0;  ///< session_.unset_frames() already in the statistics
};

}  // namespace spoa::detail
