#include "worker.hpp"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include "spoa/agent/message.hpp"
#include "spoa/agent/reply.hpp"
#include "spoa/protocol/action.hpp"

namespace spoa::detail {
namespace {

constexpr std::size_t read_buffer_size = 64 * 1024;
/// ACK header upper bound (type, flags, two 10-byte varints): what an async reply may not use.
constexpr std::size_t ack_header_reserve = 1 + 4 + 2 * protocol::max_varint_size;
/// protocol/README.md §10: HAProxy 3.1.0-3.2-dev6 never wakes on an ACK without action, so every
/// ACK carries at least this harmless unset-var.
constexpr std::string_view noop_var = "spoa_noop";
/// Pending frames kept for reuse; beyond that they are freed.
constexpr std::size_t pending_pool_cap = 4096;

thread_local worker* tls_worker = nullptr;

/// Close callback of a listening handle. It was allocated as a uv_tcp_t or a uv_pipe_t, so it
/// must be freed as one: deleting it as a uv_handle_t is undefined (ASan:
/// new-delete-type-mismatch).
void delete_listener(uv_handle_t* h) noexcept {
    if (h->type == UV_TCP) {
        delete reinterpret_cast<uv_tcp_t*>(h);
    } else {
        delete reinterpret_cast<uv_pipe_t*>(h);
    }
}

}  // namespace

worker::worker(shared_context& ctx, unsigned index)
    : ctx_(ctx),
      index_(index),
      stats_(ctx.handlers->size() + 1),
      mailbox_(std::make_shared<mailbox>()),
      read_buffer_(std::make_unique_for_overwrite<std::uint8_t[]>(read_buffer_size)),
      log_limiter_(ctx.config->error_log_rate) {
    // The agent constructs its workers one after another before any loop thread runs, so the
    // first one opens the recording for all; nothing else is open yet if that throws.
    if (!ctx.recorder && !ctx.config->record_file.empty()) {
        ctx.recorder =
            frame_recorder::open(ctx.config->record_file, ctx.config->record_max_bytes, *ctx.log);
    }
    handler_of_.reserve(16);
    if (uv_loop_init(&loop_) != 0) throw std::runtime_error("uv_loop_init failed");
    loop_.data = this;
    uv_async_init(&loop_, &wake_,
                  [](uv_async_t* h) noexcept { static_cast<worker*>(h->loop->data)->on_wake(); });
    mailbox_->attach(&wake_);
    uv_timer_init(&loop_, &deadline_timer_);
    uv_timer_init(&loop_, &sweep_timer_);
    uv_timer_init(&loop_, &drain_timer_);
    uv_check_init(&loop_, &flush_check_);
}

worker::~worker() {
    join();
    if (!ran_) {
        // Never started (the agent's start failed after making its workers): the handles the
        // constructor opened are closed here, as run() would have closed them on its way out.
        stop_now();
        uv_run(&loop_, UV_RUN_DEFAULT);
    }
    // The loop has no handle left once run() returned.
    uv_loop_close(&loop_);
    for (const auto& l : listener_fds_) {
        if (l.fd >= 0) ::close(l.fd);  // never handed to a handle (start() failed)
    }
    for (async_state* s : state_pool_)
        delete s;
}

void worker::start(std::vector<listener_socket> listeners, std::function<void()> on_exit) {
    listener_fds_ = std::move(listeners);
    on_exit_ = std::move(on_exit);
    open_listeners();
    thread_ = std::thread([this] { run(); });
    ran_ = true;
}

void worker::open_listeners() {
    for (auto& l : listener_fds_) {
        uv_handle_t* h = nullptr;
        int rc = 0;
        if (l.type == connection::transport::tcp) {
            auto* tcp = new uv_tcp_t;
            uv_tcp_init(&loop_, tcp);
            rc = uv_tcp_open(tcp, l.fd);
            h = reinterpret_cast<uv_handle_t*>(tcp);
        } else {
            auto* pipe = new uv_pipe_t;
            uv_pipe_init(&loop_, pipe, 0);
            rc = uv_pipe_open(pipe, l.fd);
            h = reinterpret_cast<uv_handle_t*>(pipe);
        }
        h->data = this;
        listeners_.push_back(h);
        if (rc != 0) throw std::runtime_error(std::string("uv open listener: ") + uv_strerror(rc));
        l.fd = -1;  // the handle owns it now
        const auto cb = l.type == connection::transport::tcp
                            ? +[](uv_stream_t* s, int status) noexcept {
                                  if (status == 0) {
                                      static_cast<worker*>(s->data)->on_connection(
                                          s, connection::transport::tcp);
                                  }
                              }
                            : +[](uv_stream_t* s, int status) noexcept {
                                  if (status == 0) {
                                      static_cast<worker*>(s->data)->on_connection(
                                          s, connection::transport::unix_socket);
                                  }
                              };
        rc = uv_listen(reinterpret_cast<uv_stream_t*>(h), 4096, cb);
        if (rc != 0) throw std::runtime_error(std::string("uv_listen: ") + uv_strerror(rc));
    }
}

void worker::run() noexcept {
    tls_worker = this;
    const auto& cfg = *ctx_.config;
    std::uint64_t sweep = 1000;
    for (const auto ms :
         {cfg.hello_timeout.count(), cfg.idle_timeout.count(), cfg.close_linger.count()}) {
        if (ms > 0 && static_cast<std::uint64_t>(ms) / 4 < sweep)
            sweep = static_cast<std::uint64_t>(ms) / 4;
    }
    if (sweep < 10) sweep = 10;
    uv_timer_start(
        &sweep_timer_,
        [](uv_timer_t* t) noexcept { static_cast<worker*>(t->loop->data)->on_sweep(); }, sweep,
        sweep);
    uv_check_start(&flush_check_, [](uv_check_t* c) noexcept {
        static_cast<worker*>(c->loop->data)->flush_dirty();
    });
    // A stop may have been requested before the loop ran.
    on_wake();
    uv_run(&loop_, UV_RUN_DEFAULT);
    tls_worker = nullptr;
    if (on_exit_) on_exit_();
}

void worker::request_stop(bool drain) noexcept {
    int expected = 0;
    const int want = drain ? 1 : 2;
    // Escalate drain -> now, never the other way.
    while (expected < want && !stop_request_.compare_exchange_weak(expected, want)) {
    }
    mailbox_->wake();
}

void worker::join() {
    if (thread_.joinable()) thread_.join();
}

uv_buf_t worker::read_buffer() noexcept {
    return uv_buf_init(reinterpret_cast<char*>(read_buffer_.get()),
                       static_cast<unsigned>(read_buffer_size));
}

void worker::on_connection(uv_stream_t* server, connection::transport t) noexcept {
    const std::uint64_t id = ctx_.next_connection_id.fetch_add(1, std::memory_order_relaxed);
    auto* c = new (std::nothrow) connection(*this, t, id);
    if (!c) return;
    if (!c->accept(server)) return;
    connections_.push_back(*c);
    stats_.accepted.inc();
    stats_.active.inc();
    const std::size_t total = ctx_.connections.fetch_add(1, std::memory_order_relaxed) + 1;
    if (stopping_ || draining_) {
        c->close_now();
        return;
    }
    if (total > ctx_.config->max_connections) {
        // Say why instead of closing silently: HAProxy 2.6 reconnects in a tight loop when a
        // connection closes without an answer (haproxy-notes, errors and failure behaviour).
        stats_.limits[static_cast<std::size_t>(limit_kind::max_connections)].inc();
        if (may_log()) {
            ctx_.log->warn("conn={} peer={} refused: max-connections {} reached", id, c->peer(),
                           ctx_.config->max_connections);
        }
        c->disconnect(protocol::status_code::resource_allocation, "too many connections");
        return;
    }
    if (ctx_.log->should_log(spdlog::level::debug)) {
        ctx_.log->debug("conn={} peer={} accepted by thread {}", id, c->peer(), index_);
    }
}

void worker::connection_closed(connection& c) noexcept {
    c.in_worker.unlink();
    stats_.active.dec();
    stats_.closed.inc();
    ctx_.connections.fetch_sub(1, std::memory_order_relaxed);
    if (stopping_ || draining_) maybe_exit();
}

void worker::mark_dirty(connection& c) noexcept {
    c.dirty = true;
    dirty_.push_back(&c);
}

void worker::flush_dirty() noexcept {
    // Every ACK produced during this loop iteration leaves in one write per connection.
    for (std::size_t i = 0; i < dirty_.size(); ++i)
        dirty_[i]->flush();
    dirty_.clear();
}

bool worker::may_log() noexcept {
    std::uint64_t dropped = 0;
    if (!log_limiter_.allow(uv_now(&loop_), dropped)) {
        ++suppressed_;
        return false;
    }
    if (dropped != 0) ctx_.log->warn("{} log lines suppressed by the rate limit", dropped);
    return true;
}

std::size_t worker::message_slot(std::size_t handler) const noexcept {
    return handler == handler_table::npos ? ctx_.handlers->size() : handler;
}

void worker::handler_failed(std::string_view message, const char* what) noexcept {
    stats_.handler_exceptions.inc();
    if (may_log()) {
        ctx_.log->error("handler for message '{}' threw: {} (frame answered without variables)",
                        message, what);
    }
}

// ---- dispatch ---------------------------------------------------------------------------

void worker::dispatch(connection& c, std::uint64_t stream_id, std::uint64_t frame_id,
                      protocol::bytes_view payload) {
    // Frames of one read are dispatched back to back: the clock read that ended the previous
    // frame's handler latency also starts this one, so a frame costs one clock read, not two.
    const std::uint64_t started = batch_clock_ns_ != 0 ? batch_clock_ns_ : uv_hrtime();
    batch_clock_ns_ = 0;
    stats_.frames_in[static_cast<std::size_t>(frame_kind::notify)].inc();
    if (const protocol::error e = decoder_.decode(payload); e != protocol::error::none) {
        c.sess().fail(e);
        return;
    }
    if (frame_recorder* r = ctx_.recorder.get()) [[unlikely]] {
        r->record(protocol::record_kind::notify, c.id(), stream_id, frame_id, payload);
    }
    const auto messages = decoder_.messages();
    const handler_table& table = *ctx_.handlers;
    handler_of_.clear();
    bool any_async = false;
    for (const auto& m : messages) {
        const std::size_t h = table.find(m.name);
        handler_of_.push_back(h);
        stats_.messages[message_slot(h)].inc();
        if (h != handler_table::npos && table.at(h).is_async()) any_async = true;
    }
    const message_origin origin{c.id(), c.sess().engine_id(), stream_id, frame_id, started};
    const std::uint32_t frame_limit = c.sess().frame_limit();
    protocol::byte_buffer& out = c.out();
    current_ = {&c, stream_id, frame_id, started, out.size(), 0, frame_limit};

    if (any_async) {
        // Async handlers complete into a pending frame, answered once they are all back.
        pending_frame* p = start_pending();
        if (!call_handlers(messages, origin)) p->failed = true;
        finish_dispatch(p);
        return;
    }
    // Fast path: every handler is synchronous, so the ACK is encoded straight into the
    // connection's output buffer, unless a handler defers (then defer() moves it into a pending
    // frame and the handlers after it write there).
    protocol::ack_writer ack(out, stream_id, frame_id, frame_limit);
    current_.actions_start = out.size();
    writing_ack_ = true;
    const bool ok = call_handlers(messages, origin);
    writing_ack_ = false;
    if (dispatching_) {
        if (!ok) dispatching_->failed = true;
        finish_dispatch(dispatching_);
    } else {
        batch_clock_ns_ = complete_ack(c, stream_id, frame_id, ack, !ok, started);
        c.frame_answered(false);
    }
    if (!postponed_.empty()) answer_postponed();
}

bool worker::call_handlers(std::span<const protocol::message_view> messages,
                           const message_origin& origin) {
    const handler_table& table = *ctx_.handlers;
    for (std::size_t i = 0; i < messages.size(); ++i) {
        if (handler_of_[i] == handler_table::npos) continue;
        if (!call_handler(table.at(handler_of_[i]), messages[i], origin)) return false;
    }
    return true;
}

bool worker::call_handler(const handler_entry& h, const protocol::message_view& m,
                          const message_origin& origin) noexcept {
    const std::size_t budget = current_.frame_limit - ack_header_reserve;
    try {
        if (h.is_async()) {
            h.async(message(m, origin), async_reply(acquire_state(dispatching_, budget)));
            return true;
        }
        // Until a handler of the frame defers, sync answers go straight into the ACK being
        // written in the output buffer, whose limit is the frame's end.
        protocol::byte_buffer& into = dispatching_ ? dispatching_->actions : current_.conn->out();
        const std::size_t limit =
            dispatching_
                ? budget
                : current_.frame_start + protocol::length_prefix_size + current_.frame_limit;
        reply r(into, limit, this);
        h.sync(message(m, origin), r);
        if (r.refused() != 0) stats_.actions_refused.inc(r.refused());
        return true;
    } catch (const std::exception& e) {
        handler_failed(m.name, e.what());
    } catch (...) {
        handler_failed(m.name, "unknown exception");
    }
    return false;
}

pending_frame* worker::start_pending() {
    pending_frame* p = acquire_pending();
    p->conn = current_.conn;
    p->stream_id = current_.stream_id;
    p->frame_id = current_.frame_id;
    p->started_ns = current_.started_ns;
    p->deadline_ms =
        uv_now(&loop_) + static_cast<std::uint64_t>(ctx_.config->handler_deadline.count());
    dispatching_ = p;
    return p;
}

deferral::target worker::defer() {
    const std::size_t budget = current_.frame_limit - ack_header_reserve;
    pending_frame* p = dispatching_;
    if (!p) {
        // The ACK was being written into the output buffer: its actions move to the pending
        // frame, and the ACK is written again once the deferred answer is back.
        p = start_pending();
        protocol::byte_buffer& out = current_.conn->out();
        p->actions.append(out.view().subspan(current_.actions_start));
        out.truncate(current_.frame_start);
    }
    return {acquire_state(p, budget), &p->actions, budget};
}

void worker::finish_dispatch(pending_frame* p) {
    dispatching_ = nullptr;
    connection& c = *p->conn;
    if (p->outstanding == 0) {
        // Every async handler completed during the call (e.g. a cache hit): answer now.
        p->answered = true;
        batch_clock_ns_ =
            write_ack(c, p->stream_id, p->frame_id, p->actions.view(), p->failed, p->started_ns);
        c.frame_answered(false);
        release_pending(p);
        return;
    }
    c.track(*p);
    const bool was_empty = deadlines_.empty();
    deadlines_.push_back(*p);
    if (was_empty) arm_deadline();
}

std::uint64_t worker::write_ack(connection& c, std::uint64_t sid, std::uint64_t fid,
                                protocol::bytes_view actions, bool failed,
                                std::uint64_t started_ns) noexcept {
    protocol::ack_writer ack(c.out(), sid, fid, c.sess().frame_limit());
    if (!failed && !actions.empty() && !ack.append_encoded(actions)) {
        stats_.actions_refused.inc();
    }
    return complete_ack(c, sid, fid, ack, failed, started_ns);
}

std::uint64_t worker::complete_ack(const connection& c, std::uint64_t sid, std::uint64_t fid,
                                   protocol::ack_writer& ack, bool failed,
                                   std::uint64_t started_ns) noexcept {
    if (failed) ack.reset_actions();
    if (ack.payload_size() == 0) (void)ack.unset_var(protocol::var_scope::txn, noop_var);
    ack.finish();
    if (frame_recorder* r = ctx_.recorder.get()) [[unlikely]] {
        r->record(protocol::record_kind::ack, c.id(), sid, fid, ack.payload());
    }
    stats_.frames_out[static_cast<std::size_t>(sent_kind::ack)].inc();
    const std::uint64_t done = uv_hrtime();
    stats_.handler_latency.observe(static_cast<double>(done - started_ns) * 1e-9);
    return done;
}

async_state* worker::acquire_state(pending_frame* p, std::size_t budget) {
    async_state* s = nullptr;
    if (state_pool_.empty()) {
        s = new async_state(mailbox_, p, budget);
    } else {
        s = state_pool_.back();
        state_pool_.pop_back();
        s->reuse(p, budget);
    }
    s->next_in_frame = p->states;
    p->states = s;
    ++p->outstanding;
    return s;
}

void worker::release_state(async_state* s) noexcept {
    // A state only comes back here after its handler called done(): nobody else holds it.
    if (s->actions.capacity() > 65536 || state_pool_.size() >= pending_pool_cap) {
        delete s;
        return;
    }
    state_pool_.push_back(s);
}

void worker::complete(async_state* s) noexcept {
    pending_frame* p = s->frame();
    // Unlink the state from its frame's list of outstanding states.
    for (async_state** link = &p->states; *link; link = &(*link)->next_in_frame) {
        if (*link == s) {
            *link = s->next_in_frame;
            break;
        }
    }
    --p->outstanding;
    if (p->answered) {
        stats_.async_late.inc();
    } else if (!p->failed && !s->actions.empty()) {
        if (p->actions.empty() && s->actions.size() <= s->budget()) {
            // The usual case (one async message per frame): take the buffer, copy nothing.
            p->actions.swap(s->actions);
        } else if (p->actions.size() + s->actions.size() <= s->budget()) {
            p->actions.append(s->actions.view());
        } else {
            stats_.actions_refused.inc();
        }
    }
    // Refusals inside an async reply count like a sync handler's (they were not counted).
    if (s->refused != 0) stats_.actions_refused.inc(s->refused);
    release_state(s);
    if (p == dispatching_) return;  // dispatch() answers once every handler has been called
    if (p->answered) {
        if (p->outstanding == 0) release_pending(p);
        return;
    }
    if (p->outstanding == 0) {
        if (writing_ack_) {
            postponed_.push_back(p);
            return;
        }
        answer(p, false);
    }
}

void worker::answer_postponed() noexcept {
    // Handlers cannot close a connection, so nothing detached these frames meanwhile (detach
    // would have released them).
    for (pending_frame* p : postponed_)
        answer(p, false);
    postponed_.clear();
}

void worker::answer(pending_frame* p, bool expired) noexcept {
    p->answered = true;
    p->by_deadline.unlink();
    p->by_connection.unlink();
    connection* c = p->conn;
    p->conn = nullptr;
    if (expired) {
        stats_.limits[static_cast<std::size_t>(limit_kind::handler_deadline)].inc();
        for (async_state* s = p->states; s; s = s->next_in_frame)
            s->abandon();
    }
    if (c) {
        write_ack(*c, p->stream_id, p->frame_id, p->actions.view(), p->failed, p->started_ns);
        c->frame_answered(true);
    }
    if (p->outstanding == 0) release_pending(p);
}

void worker::detach(pending_frame& p) noexcept {
    p.conn = nullptr;
    p.answered = true;
    p.by_deadline.unlink();
    for (async_state* s = p.states; s; s = s->next_in_frame)
        s->abandon();
    if (p.outstanding == 0 && &p != dispatching_) release_pending(&p);
}

pending_frame* worker::acquire_pending() {
    pending_frame* p = nullptr;
    if (!pending_free_.empty()) {
        p = pending_free_.back();
        pending_free_.pop_back();
    } else {
        pending_owned_.push_back(std::make_unique<pending_frame>());
        p = pending_owned_.back().get();
    }
    p->conn = nullptr;
    p->outstanding = 0;
    p->answered = false;
    p->failed = false;
    p->states = nullptr;
    p->actions.clear();
    return p;
}

void worker::release_pending(pending_frame* p) noexcept {
    p->states = nullptr;
    if (p->actions.capacity() > 65536) p->actions = protocol::byte_buffer();
    if (pending_free_.size() < pending_pool_cap) {
        pending_free_.push_back(p);
        return;
    }
    for (auto it = pending_owned_.begin(); it != pending_owned_.end(); ++it) {
        if (it->get() == p) {
            *it = std::move(pending_owned_.back());
            pending_owned_.pop_back();
            return;
        }
    }
}

void worker::arm_deadline() noexcept {
    pending_frame* front = deadlines_.front();
    if (!front) {
        uv_timer_stop(&deadline_timer_);
        return;
    }
    const std::uint64_t now = uv_now(&loop_);
    const std::uint64_t delay = front->deadline_ms > now ? front->deadline_ms - now : 0;
    uv_timer_start(
        &deadline_timer_,
        [](uv_timer_t* t) noexcept { static_cast<worker*>(t->loop->data)->on_deadline(); }, delay,
        0);
}

void worker::on_deadline() noexcept {
    const std::uint64_t now = uv_now(&loop_);
    // Every frame gets the same deadline offset, so the queue is in deadline order.
    while (pending_frame* p = deadlines_.front()) {
        if (p->deadline_ms > now) break;
        if (may_log()) {
            ctx_.log->warn(
                "conn={} stream-id={} frame-id={}: handler deadline of {} ms passed, "
                "answering with what is ready",
                p->conn ? p->conn->id() : 0, p->stream_id, p->frame_id,
                ctx_.config->handler_deadline.count());
        }
        answer(p, true);
    }
    arm_deadline();
}

// ---- wake-ups, timers, shutdown -----------------------------------------------------------

void worker::on_wake() noexcept {
    completions_.clear();
    mailbox_->take(completions_);
    for (async_state* s : completions_)
        complete(s);
    completions_.clear();
    const int req = stop_request_.load();
    if (req == 2 && !stopping_) {
        stop_now();
    } else if (req == 1 && !draining_ && !stopping_ && !grace_started_) {
        begin_drain();
    }
}

void worker::on_sweep() noexcept {
    const std::uint64_t now = uv_now(&loop_);
    for (connection* c = connections_.front(); c;) {
        connection* next = connections_.next(*c);
        c->check_timeouts(now);
        c = next;
    }
}

void worker::begin_drain() noexcept {
    const auto grace = static_cast<std::uint64_t>(ctx_.config->drain_grace.count());
    if (grace > 0 && !grace_started_) {
        // Grace period: keep accepting and serving while health checks fail, until HAProxy has
        // marked the agent DOWN and stopped opening connections to it; closing the listeners
        // at once would leave HAProxy's new connections refused and their requests waiting
        // for `timeout processing`.
        grace_started_ = true;
        uv_timer_start(
            &drain_timer_,
            [](uv_timer_t* t) noexcept { static_cast<worker*>(t->loop->data)->begin_drain(); },
            grace, 0);
        return;
    }
    draining_ = true;
    for (uv_handle_t* h : listeners_) {
        if (!uv_is_closing(h)) uv_close(h, delete_listener);
    }
    listeners_.clear();
    uv_timer_start(
        &drain_timer_,
        [](uv_timer_t* t) noexcept {
            auto* self = static_cast<worker*>(t->loop->data);
            self->stats_.limits[static_cast<std::size_t>(limit_kind::drain_timeout)].inc();
            self->stop_now();
        },
        static_cast<std::uint64_t>(ctx_.config->drain_timeout.count()), 0);
    for (connection* c = connections_.front(); c;) {
        connection* next = connections_.next(*c);
        c->drain();
        c = next;
    }
    maybe_exit();
}

void worker::stop_now() noexcept {
    stopping_ = true;
    draining_ = true;
    for (uv_handle_t* h : listeners_) {
        if (!uv_is_closing(h)) uv_close(h, delete_listener);
    }
    listeners_.clear();
    for (connection* c = connections_.front(); c;) {
        connection* next = connections_.next(*c);
        c->close_now();
        c = next;
    }
    maybe_exit();
}

void worker::maybe_exit() noexcept {
    if (handles_closed_ || !connections_.empty()) return;
    handles_closed_ = true;
    // Frames still waiting for async handlers: their states must learn they are abandoned
    // before the mailbox closes (after that a late done() deletes its own state).
    for (auto& p : pending_owned_) {
        for (async_state* s = p->states; s; s = s->next_in_frame)
            s->abandon();
    }
    std::vector<async_state*> queued;
    mailbox_->close(queued);
    for (async_state* s : queued)
        delete s;
    const auto close_cb = [](uv_handle_t*) noexcept {};
    uv_close(reinterpret_cast<uv_handle_t*>(&wake_), close_cb);
    uv_close(reinterpret_cast<uv_handle_t*>(&deadline_timer_), close_cb);
    uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer_), close_cb);
    uv_close(reinterpret_cast<uv_handle_t*>(&drain_timer_), close_cb);
    uv_close(reinterpret_cast<uv_handle_t*>(&flush_check_), close_cb);
}

// ---- mailbox / async_state ------------------------------------------------------------------

bool mailbox::post(async_state* s) noexcept {
    std::lock_guard lock(mutex_);
    if (closed_) return false;
    queue_.push_back(s);
    // Sent under the lock so that close() cannot close the handle in between.
    uv_async_send(handle_);
    return true;
}

bool mailbox::wake() noexcept {
    std::lock_guard lock(mutex_);
    if (closed_) return false;
    uv_async_send(handle_);
    return true;
}

void mailbox::take(std::vector<async_state*>& out) {
    std::lock_guard lock(mutex_);
    out.swap(queue_);
}

void mailbox::close(std::vector<async_state*>& out) {
    std::lock_guard lock(mutex_);
    closed_ = true;
    out.swap(queue_);
}

void async_state::complete() noexcept {
    // On the owning loop's thread (e.g. a handler that answers from a cache during the call),
    // complete directly: no lock, no wake-up, and the frame can be answered in the same pass.
    if (tls_worker != nullptr && tls_worker->owns(box_.get())) {
        tls_worker->complete(this);
        return;
    }
    if (!box_->post(this)) delete this;
}

}  // namespace spoa::detail
