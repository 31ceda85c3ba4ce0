#pragma once
// One loop thread: its listeners (SO_REUSEPORT TCP sockets, or a dup of a shared Unix socket),
// its connections, the async completions posted to it, the handler deadline queue, and the
// per-iteration flush of every connection that produced output.

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <thread>
#include <vector>

#include <uv.h>

#include "async_state.hpp"
#include "connection.hpp"
#include "deferral.hpp"
#include "frame_recorder.hpp"
#include "handler_table.hpp"
#include "intrusive_list.hpp"
#include "log_limiter.hpp"
#include "pending_frame.hpp"
#include "spoa/agent/config.hpp"
#include "spoa/agent/message.hpp"
#include "spoa/protocol/action.hpp"
#include "spoa/protocol/notify.hpp"
#include "spoa/protocol/session.hpp"
#include "worker_stats.hpp"

namespace spdlog {
class logger;
}

namespace spoa::detail {

struct listener_socket {
    int fd = -1;
    connection::transport type = connection::transport::tcp;
};

/// What every worker shares (read-only after start, except the atomics).
struct shared_context {
    const agent_config* config = nullptr;
    const handler_table* handlers = nullptr;
    protocol::session_settings session;
    spdlog::logger* log = nullptr;
    std::atomic<std::size_t> connections{0};
    std::atomic<std::uint64_t> next_connection_id{1};
    /// Set when a drain starts: health checks are refused from then on.
    std::atomic<bool> draining{false};
    /// --record: null when off. Opened by the first worker constructed (frame_recorder.hpp).
    std::unique_ptr<frame_recorder> recorder;
};

/// A handler's reply::defer() reaches the worker dispatching its frame.
class worker final : private deferral {
  public:
    worker(shared_context& ctx, unsigned index);
    ~worker();
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

    /// Starts the thread; takes ownership of the listening fds.
    void start(std::vector<listener_socket> listeners, std::function<void()> on_exit);
    /// Thread-safe.
    void request_stop(bool drain) noexcept;
    void join();

    [[nodiscard]] const worker_stats& stats() const noexcept { return stats_; }
    [[nodiscard]] unsigned index() const noexcept { return index_; }

    // ---- loop-thread API (connections) ----
    [[nodiscard]] uv_loop_t* loop() noexcept { return &loop_; }
    [[nodiscard]] shared_context& ctx() noexcept { return ctx_; }
    [[nodiscard]] worker_stats& stats() noexcept { return stats_; }
    [[nodiscard]] spdlog::logger& log() noexcept { return *ctx_.log; }
    [[nodiscard]] bool draining() const noexcept { return draining_; }
    uv_buf_t read_buffer() noexcept;
    void dispatch(connection& c, std::uint64_t stream_id, std::uint64_t frame_id,
                  protocol::bytes_view payload);
    /// A connection starts decoding a read: its first frame reads the clock afresh.
    void begin_batch() noexcept { batch_clock_ns_ = 0; }
    void mark_dirty(connection& c) noexcept;
    /// The connection is closing: forget its pending frames.
    void detach(pending_frame& p) noexcept;
    void connection_closed(connection& c) noexcept;
    /// Rate-limited warning/info lines.
    bool may_log() noexcept;
    [[nodiscard]] std::uint64_t suppressed_logs() const noexcept { return suppressed_; }

    // ---- async completion (async_state) ----
    void complete(async_state* s) noexcept;
    [[nodiscard]] bool owns(const mailbox* m) const noexcept { return m == mailbox_.get(); }

  private:
    void run() noexcept;
    void open_listeners();
    void on_connection(uv_stream_t* server, connection::transport t) noexcept;
    void on_wake() noexcept;
    void on_deadline() noexcept;
    void on_sweep() noexcept;
    void flush_dirty() noexcept;
    void begin_drain() noexcept;
    void stop_now() noexcept;
    void maybe_exit() noexcept;
    void arm_deadline() noexcept;

    /// Calls the handlers of the frame's messages in order (the rule of handler.hpp): false,
    /// and the later handlers are not called, once one throws.
    bool call_handlers(std::span<const protocol::message_view> messages,
                       const message_origin& origin);
    /// The one place a handler is called: a sync one with a reply into the frame's answer, an
    /// async one with an async_reply of the frame's pending frame. False if it threw (counted and
    /// logged).
    bool call_handler(const handler_entry& h, const protocol::message_view& m,
                      const message_origin& origin) noexcept;
    /// reply::defer() from a handler of the frame being dispatched.
    target defer() override;
    /// A pending frame for the frame being dispatched (current_), with its deadline.
    pending_frame* start_pending();
    /// End of a dispatch that made a pending frame: answer it now if every handler is back,
    /// else wait for them or the deadline.
    void finish_dispatch(pending_frame* p);
    /// Answers the frames completed while an ACK was being written (writing_ack_).
    void answer_postponed() noexcept;
    pending_frame* acquire_pending();
    /// A state for one more outstanding handler of `p` (linked into it and counted). Pooled
    /// too: no allocation per async call once warm.
    async_state* acquire_state(pending_frame* p, std::size_t budget);
    void release_state(async_state* s) noexcept;
    void release_pending(pending_frame* p) noexcept;
    /// Writes the ACK of `p` and forgets it (or parks it until its late completions return).
    void answer(pending_frame* p, bool expired) noexcept;
    /// Returns the clock reading that ended the frame (the next frame of the batch starts there).
    std::uint64_t write_ack(connection& c, std::uint64_t sid, std::uint64_t fid,
                            protocol::bytes_view actions, bool failed,
                            std::uint64_t started_ns) noexcept;
    /// The one place an ACK is completed: a failed frame's actions are dropped, the payload is
    /// never empty (noop unset-var), the ACK is counted, timed and recorded (--record). Returns
    /// the clock reading.
    std::uint64_t complete_ack(const connection& c, std::uint64_t sid, std::uint64_t fid,
                               protocol::ack_writer& ack, bool failed,
                               std::uint64_t started_ns) noexcept;
    void handler_failed(std::string_view message, const char* what) noexcept;
    [[nodiscard]] std::size_t message_slot(std::size_t handler) const noexcept;

    shared_context& ctx_;
    unsigned index_;
    worker_stats stats_;
    uv_loop_t loop_{};
    uv_async_t wake_{};
    uv_timer_t deadline_timer_{};
    uv_timer_t sweep_timer_{};
    uv_timer_t drain_timer_{};
    uv_check_t flush_check_{};
    std::vector<listener_socket> listener_fds_;
    std::vector<uv_handle_t*> listeners_;
    bool ran_ = false;  ///< its thread was started (set by start(), read by the destructor)
    std::thread thread_;
    std::function<void()> on_exit_;
    std::shared_ptr<mailbox> mailbox_;
    std::atomic<int> stop_request_{0};  ///< 1 drain, 2 now

    intrusive_list<connection, &connection::in_worker> connections_;
    intrusive_list<pending_frame, &pending_frame::by_deadline> deadlines_;
    std::vector<connection*> dirty_;
    std::vector<async_state*> completions_;
    std::vector<std::unique_ptr<pending_frame>> pending_owned_;
    std::vector<pending_frame*> pending_free_;
    std::vector<async_state*> state_pool_;

    // Dispatch scratch, reused for every frame.
    protocol::notify_decoder decoder_;
    std::vector<std::size_t> handler_of_;
    /// The frame being dispatched, for defer(): where its ACK is being written.
    struct dispatch_frame {
        connection* conn = nullptr;
        std::uint64_t stream_id = 0;
        std::uint64_t frame_id = 0;
        std::uint64_t started_ns = 0;
        std::size_t frame_start = 0;    ///< its ACK's first byte in conn->out()
        std::size_t actions_start = 0;  ///< its ACK's first action in conn->out()
        std::uint32_t frame_limit = 0;
    } current_;
    /// The pending frame of the frame being dispatched, if it has one (async handler or defer).
    pending_frame* dispatching_ = nullptr;
    /// True while sync handlers write an ACK straight into a connection's output buffer: a
    /// frame completed meanwhile on this thread (a handler finishing an earlier frame's reply)
    /// is answered once that ACK is whole, not in the middle of it.
    bool writing_ack_ = false;
    std::vector<pending_frame*> postponed_;
    /// uv_hrtime() taken when the previous synchronous ACK of the current batch was written,
    /// 0 when none (see dispatch).
    std::uint64_t batch_clock_ns_ = 0;
    std::unique_ptr<std::uint8_t[]> read_buffer_;

    log_limiter log_limiter_;
    std::uint64_t suppressed_ = 0;
    bool draining_ = false;
    bool grace_started_ = false;
    bool stopping_ = false;
    bool handles_closed_ = false;
};

}  // namespace spoa::detail
