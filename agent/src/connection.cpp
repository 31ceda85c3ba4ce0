#include "connection.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include <spdlog/spdlog.h>

#include "worker.hpp"

namespace spoa::detail {

using protocol::session;

namespace {

std::string describe_peer(uv_tcp_t* tcp) {
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
    char host[INET6_ADDRSTRLEN] = {};
    if (ss.ss_family == AF_INET) {
        const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
        uv_ip4_name(a, host, sizeof host);
        return std::string(host) + ":" + std::to_string(ntohs(a->sin_port));
    }
    if (ss.ss_family == AF_INET6) {
        const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
        uv_ip6_name(a, host, sizeof host);
        return "[" + std::string(host) + "]:" + std::to_string(ntohs(a->sin6_port));
    }
    return "?";
}

}  // namespace

connection::connection(worker& w, transport t, std::uint64_t id)
    : worker_(w), transport_(t), id_(id), session_(w.ctx().session, *this, out_) {
    std::memset(&handle_, 0, sizeof handle_);
    handle_.tcp.data = this;
    write_req_.data = this;
    shutdown_req_.data = this;
}

bool connection::accept(uv_stream_t* server) {
    int rc = transport_ == transport::tcp ? uv_tcp_init(worker_.loop(), &handle_.tcp)
                                          : uv_pipe_init(worker_.loop(), &handle_.pipe, 0);
    if (rc != 0) {
        delete this;
        return false;
    }
    handle()->data = this;
    rc = uv_accept(server, stream());
    if (rc != 0) {
        closed_ = true;
        uv_close(handle(), on_close);
        return false;
    }
    if (transport_ == transport::tcp) {
        uv_tcp_nodelay(&handle_.tcp, 1);
        peer_ = describe_peer(&handle_.tcp);
    } else {
        peer_ = "unix";
    }
    accepted_ms_ = last_activity_ms_ = uv_now(worker_.loop());
    reading_ = uv_read_start(stream(), on_alloc, on_read) == 0;
    if (!reading_) {
        close_now();
        return false;
    }
    return true;
}

void connection::on_notify(std::uint64_t stream_id, std::uint64_t frame_id,
                           protocol::bytes_view payload) {
    worker_.dispatch(*this, stream_id, frame_id, payload);
}

bool connection::paused() const noexcept {
    const auto& cfg = *worker_.ctx().config;
    return inflight_ >= cfg.max_inflight_per_connection || queued_bytes() >= cfg.write_high_water;
}

bool connection::refuse_healthcheck() const noexcept {
    return worker_.ctx().draining.load(std::memory_order_relaxed);
}

std::size_t connection::queued_bytes() const noexcept {
    return out_.size() + writing_.size();
}

void connection::track(pending_frame& p) noexcept {
    pending_.push_back(p);
    ++inflight_;
    worker_.stats().inflight.inc();
    if (inflight_ == worker_.ctx().config->max_inflight_per_connection) {
        worker_.stats().limits[static_cast<std::size_t>(limit_kind::inflight)].inc();
    }
}

void connection::frame_answered(bool was_tracked) noexcept {
    mark_dirty();
    if (!was_tracked) return;
    --inflight_;
    worker_.stats().inflight.dec();
    if (draining_ && inflight_ == 0) {
        disconnect(protocol::status_code::normal, "agent is shutting down");
        return;
    }
    // Backpressure may have stopped reading: frames left in `partial_` come first.
    if (!reading_ && !paused() && !closed_) process({});
}

void connection::mark_dirty() noexcept {
    if (!dirty && !closed_) worker_.mark_dirty(*this);
}

void connection::on_alloc(uv_handle_t* h, std::size_t, uv_buf_t* buf) noexcept {
    auto* self = static_cast<connection*>(h->data);
    *buf = self->worker_.read_buffer();
}

void connection::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) noexcept {
    auto* self = static_cast<connection*>(s->data);
    if (nread > 0) {
        self->process(
            {reinterpret_cast<const std::uint8_t*>(buf->base), static_cast<std::size_t>(nread)});
        return;
    }
    if (nread == 0) return;
    // EOF or reset: HAProxy 3.x closes idle agent connections with a plain RST, so both are a
    // normal end of the connection (haproxy-notes: 2.6 versus 3.x).
    if (self->worker_.log().should_log(spdlog::level::debug)) {
        self->worker_.log().debug("conn={} peer={} closed by peer ({}) inflight={}", self->id_,
                                  self->peer_, uv_err_name(static_cast<int>(nread)),
                                  self->inflight_);
    }
    self->close_now();
}

protocol::bytes_view connection::complete_partial(protocol::bytes_view data) {
    while (!partial_.empty()) {
        // Append only what completes the first frame, then go back to decoding in place.
        std::size_t want = 0;
        if (partial_.size() < protocol::length_prefix_size) {
            want = protocol::length_prefix_size - partial_.size();
        } else {
            const std::uint8_t* p = partial_.data();
            const std::uint32_t len = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                                      (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
            // An invalid length is reported by the session; never reserve room for it.
            if (len >= protocol::min_frame_size && len <= session_.frame_limit()) {
                const std::size_t total = protocol::length_prefix_size + len;
                if (partial_.size() < total) want = total - partial_.size();
            }
        }
        const std::size_t take = want < data.size() ? want : data.size();
        partial_.append(data.data(), take);
        data = data.subspan(take);
        const std::size_t consumed = session_.feed(partial_.view());
        partial_.consume_front(consumed);
        after_session_step();
        if (consumed == 0 && (take == 0 || data.empty())) break;
    }
    return data;
}

void connection::process(protocol::bytes_view data) {
    if (closed_) return;
    worker_.begin_batch();
    last_activity_ms_ = uv_now(worker_.loop());
    if (session_.current() == session::state::closing) return;  // draining input until EOF
    data = complete_partial(data);
    if (partial_.empty() && !data.empty() && session_.current() != session::state::closing) {
        const std::size_t consumed = session_.feed(data);
        data = data.subspan(consumed);
        after_session_step();
    }
    if (closed_) return;
    if (session_.current() == session::state::closing) {
        partial_ = protocol::byte_buffer();
    } else if (!data.empty()) {
        // A partial frame, or whole frames held back by backpressure.
        partial_.append(data);
    } else if (partial_.empty() && partial_.capacity() > 65536) {
        partial_ = protocol::byte_buffer();  // a big frame passed: give the memory back
    }
    update_reading();
}

void connection::update_reading() noexcept {
    if (closed_) return;
    const bool want = !paused() || session_.current() == session::state::closing;
    if (want && !reading_) {
        reading_ = uv_read_start(stream(), on_alloc, on_read) == 0;
    } else if (!want && reading_) {
        uv_read_stop(stream());
        reading_ = false;
        const bool by_writes = queued_bytes() >= worker_.ctx().config->write_high_water;
        worker_.stats()
            .limits[static_cast<std::size_t>(by_writes ? limit_kind::write_high_water
                                                       : limit_kind::inflight)]
            .inc();
    }
}

void connection::after_session_step() noexcept {
    auto& stats = worker_.stats();
    // UNSET frames never reach on_notify: count them here (spoa_frames_received_total).
    if (session_.unset_frames() != unset_counted_) {
        stats.frames_in[static_cast<std::size_t>(frame_kind::unset)].inc(session_.unset_frames() -
                                                                         unset_counted_);
        unset_counted_ = session_.unset_frames();
    }
    if (!hello_noted_ && session_.current() != session::state::wait_hello) {
        hello_noted_ = true;
        if (session_.why_closing() == session::close_reason::none ||
            session_.why_closing() == session::close_reason::healthcheck) {
            stats.frames_in[static_cast<std::size_t>(frame_kind::hello)].inc();
            stats.frames_out[static_cast<std::size_t>(sent_kind::hello)].inc();
        }
        if (worker_.log().should_log(spdlog::level::debug) &&
            session_.current() == session::state::running) {
            const auto& n = session_.negotiated();
            worker_.log().debug(
                "conn={} peer={} engine-id={} hello: max-frame-size={} pipelining={} "
                "fragmentation={}",
                id_, peer_, session_.engine_id(), n.max_frame_size, n.pipelining, n.fragmentation);
        }
    }
    if (session_.current() != session::state::closing || closing_noted_) {
        if (!out_.empty()) mark_dirty();
        return;
    }
    closing_noted_ = true;
    closing_since_ms_ = uv_now(worker_.loop());
    const auto why = session_.why_closing();
    if (why == session::close_reason::peer_disconnect) {
        stats.frames_in[static_cast<std::size_t>(frame_kind::disconnect)].inc();
        const std::uint32_t st = session_.peer_status();
        stats.peer_status[st < 100 ? st : 99].inc();
        worker_.log().debug("conn={} peer={} HAPROXY-DISCONNECT status={} message='{}'", id_, peer_,
                            st, session_.peer_message());
    }
    if (why != session::close_reason::healthcheck) {
        const auto st = static_cast<std::uint32_t>(session_.sent_status());
        stats.sent_status[st < 100 ? st : 99].inc();
        stats.frames_out[static_cast<std::size_t>(sent_kind::disconnect)].inc();
    }
    if ((why == session::close_reason::protocol_error || why == session::close_reason::refused) &&
        worker_.may_log()) {
        worker_.log().warn(
            "conn={} peer={} engine-id={} {}: {} (sent status {}, '{}')", id_, peer_,
            session_.engine_id(),
            why == session::close_reason::refused ? "handshake refused" : "protocol error",
            protocol::to_string(session_.last_error()),
            static_cast<std::uint32_t>(session_.sent_status()),
            protocol::to_string(session_.sent_status()));
    }
    // Frames still waiting for handlers will never be answered on this connection.
    while (pending_frame* p = pending_.front()) {
        p->by_connection.unlink();
        --inflight_;
        stats.inflight.dec();
        worker_.detach(*p);
    }
    partial_ = protocol::byte_buffer();
    mark_dirty();
    update_reading();
}

void connection::flush() noexcept {
    dirty = false;
    if (closed_ || write_in_flight_) return;
    if (out_.empty()) {
        write_done();
        return;
    }
    uv_buf_t b =
        uv_buf_init(reinterpret_cast<char*>(out_.data()), static_cast<unsigned>(out_.size()));
    const int n = uv_try_write(stream(), &b, 1);
    if (n == static_cast<int>(out_.size())) {
        out_.clear();
        write_done();
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        worker_.log().debug("conn={} write failed: {}", id_, uv_err_name(n));
        close_now();
        return;
    }
    // The socket is full: hand the rest to uv_write and keep collecting into out_.
    const std::size_t written = n > 0 ? static_cast<std::size_t>(n) : 0;
    out_.consume_front(written);
    out_.swap(writing_);
    b = uv_buf_init(reinterpret_cast<char*>(writing_.data()),
                    static_cast<unsigned>(writing_.size()));
    if (uv_write(&write_req_, stream(), &b, 1, on_write) != 0) {
        close_now();
        return;
    }
    write_in_flight_ = true;
    update_reading();
}

void connection::on_write(uv_write_t* req, int status) noexcept {
    auto* self = static_cast<connection*>(req->data);
    self->write_in_flight_ = false;
    self->writing_.clear();
    if (status < 0) {
        if (!self->closed_) self->close_now();
        return;
    }
    if (self->closed_) return;
    if (!self->out_.empty()) {
        self->flush();
        return;
    }
    self->write_done();
}

void connection::write_done() noexcept {
    if (closed_) return;
    if (writing_.capacity() > 65536) writing_ = protocol::byte_buffer();
    if (session_.current() == session::state::closing && !shutdown_sent_ && out_.empty() &&
        !write_in_flight_) {
        // Our last frame is out: half-close and wait for the peer to close (bounded by the
        // linger timeout), rather than resetting a connection whose last bytes may be unread.
        shutdown_sent_ = true;
        if (uv_shutdown(&shutdown_req_, stream(), on_shutdown) != 0) close_now();
        return;
    }
    // The write queue may be what paused reading (write_high_water): frames already read and
    // kept in `partial_` must be handled now, as no more bytes may ever come to trigger a read.
    if (!reading_ && !partial_.empty() && !paused()) {
        process({});
        return;
    }
    update_reading();
}

void connection::on_shutdown(uv_shutdown_t* req, int status) noexcept {
    auto* self = static_cast<connection*>(req->data);
    if (status < 0 && status != UV_ECANCELED && !self->closed_) self->close_now();
}

void connection::disconnect(protocol::status_code status, std::string_view message) {
    if (closed_) return;
    session_.disconnect(status, message, session::close_reason::local);
    after_session_step();
}

void connection::drain() noexcept {
    draining_ = true;
    if (session_.current() == session::state::wait_hello) {
        close_now();
        return;
    }
    if (inflight_ == 0) disconnect(protocol::status_code::normal, "agent is shutting down");
}

void connection::check_timeouts(std::uint64_t now_ms) noexcept {
    const auto& cfg = *worker_.ctx().config;
    switch (session_.current()) {
        case session::state::closing:
            if (now_ms - closing_since_ms_ >=
                static_cast<std::uint64_t>(cfg.close_linger.count())) {
                close_now();
            }
            return;
        case session::state::wait_hello:
            if (now_ms - accepted_ms_ >= static_cast<std::uint64_t>(cfg.hello_timeout.count())) {
                worker_.stats().limits[static_cast<std::size_t>(limit_kind::hello_timeout)].inc();
                disconnect(protocol::status_code::timeout, "no HAPROXY-HELLO in time");
            }
            return;
        case session::state::running:
            if (cfg.idle_timeout.count() > 0 && inflight_ == 0 &&
                now_ms - last_activity_ms_ >=
                    static_cast<std::uint64_t>(cfg.idle_timeout.count())) {
                worker_.stats().limits[static_cast<std::size_t>(limit_kind::idle_timeout)].inc();
                disconnect(protocol::status_code::timeout, "idle timeout");
            }
            return;
    }
}

void connection::close_now() noexcept {
    if (closed_) return;
    closed_ = true;
    while (pending_frame* p = pending_.front()) {
        p->by_connection.unlink();
        --inflight_;
        worker_.stats().inflight.dec();
        worker_.detach(*p);
    }
    worker_.connection_closed(*this);
    uv_close(handle(), on_close);
}

void connection::on_close(uv_handle_t* h) noexcept {
    delete static_cast<connection*>(h->data);
}

}  // namespace spoa::detail
