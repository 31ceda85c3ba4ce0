#include "spoa/protocol/session.hpp"

#include "spoa/protocol/disconnect.hpp"

namespace spoa::protocol {

std::size_t session::feed(bytes_view input) {
    std::size_t consumed = 0;
    needed_ = 0;
    while (state_ != state::closing && consumed < input.size()) {
        if (state_ == state::running && host_.paused()) break;
        frame f;
        const auto r = decode_frame(input.subspan(consumed), frame_limit(), f);
        if (r.status == decode_status::need_more) {
            needed_ = r.size;
            break;
        }
        if (r.status == decode_status::error) {
            fail(r.err);
            break;
        }
        consumed += r.size;
        handle(f);
    }
    // Once closing, whatever follows is dropped: the connection's error is sticky.
    if (state_ == state::closing) return input.size();
    return consumed;
}

void session::handle(const frame& f) {
    switch (state_) {
        case state::wait_hello:
            handle_hello(f);
            return;
        case state::running:
            handle_running(f);
            return;
        case state::closing:
            return;
    }
}

void session::handle_hello(const frame& f) {
    if (f.type == frame_type::haproxy_disconnect) {
        handle_peer_disconnect(f);
        return;
    }
    if (f.type != frame_type::haproxy_hello) {
        fail(error::unexpected_frame);
        return;
    }
    // protocol/README.md §2: HELLO is never fragmented; nothing was negotiated yet.
    if (!f.fin()) {
        fail(error::fragmentation_not_supported);
        return;
    }
    haproxy_hello hello;
    if (const error e = parse_haproxy_hello(f.payload, hello); e != error::none) {
        fail(e);
        return;
    }
    negotiated_ = negotiate(hello, settings_.capabilities);
    if (!negotiated_.accepted()) {
        error_ = negotiated_.refusal;
        disconnect(to_status(negotiated_.refusal), to_string(negotiated_.refusal),
                   close_reason::refused);
        return;
    }
    engine_id_.assign(hello.engine_id);
    if (hello.healthcheck && host_.refuse_healthcheck()) {
        // Draining: fail HAProxy's check so that it stops sending new work here.
        disconnect(status_code::normal, "agent is draining", close_reason::local);
        return;
    }
    encode_agent_hello(out_, negotiated_);
    if (hello.healthcheck) {
        // protocol/README.md §6.3: answer the check, then close; no DISCONNECT exchange needed.
        state_ = state::closing;
        reason_ = close_reason::healthcheck;
        return;
    }
    state_ = state::running;
}

void session::handle_running(const frame& f) {
    // protocol/README.md §9: HAProxy sends nothing else on the connection until a fragmented NOTIFY
    // is finished; a DISCONNECT is the one frame that may still come.
    if (assembler_ && assembler_->in_progress() && f.type != frame_type::unset &&
        f.type != frame_type::haproxy_disconnect) {
        fail(error::interlaced_fragments);
        return;
    }
    switch (f.type) {
        case frame_type::notify:
            if (f.fin()) {
                host_.on_notify(f.stream_id, f.frame_id, f.payload);
                return;
            }
            if (!negotiated_.fragmentation) {
                fail(error::fragmentation_not_supported);
                return;
            }
            feed_fragment(f);
            return;
        case frame_type::unset:
            ++unset_frames_;
            if (!assembler_) {
                fail(negotiated_.fragmentation ? error::fragment_without_start
                                               : error::fragmentation_not_supported);
                return;
            }
            feed_fragment(f);
            return;
        case frame_type::haproxy_disconnect:
            handle_peer_disconnect(f);
            return;
        case frame_type::haproxy_hello:
        case frame_type::agent_hello:
        case frame_type::agent_disconnect:
        case frame_type::ack:
            fail(error::unexpected_frame);
            return;
    }
}

void session::feed_fragment(const frame& f) {
    if (!assembler_) {
        assembler_ = std::make_unique<fragment_assembler>(settings_.max_reassembled_size);
    }
    const auto r = assembler_->feed(f);
    switch (r.what) {
        case fragment_assembler::outcome::pending:
            return;
        case fragment_assembler::outcome::complete:
            host_.on_notify(assembler_->stream_id(), assembler_->frame_id(), assembler_->payload());
            return;
        case fragment_assembler::outcome::aborted:
            // protocol/README.md §9: HAProxy cancelled the frame; no ACK is expected.
            ++aborted_fragments_;
            return;
        case fragment_assembler::outcome::failed:
            fail(r.err);
            return;
    }
}

void session::handle_peer_disconnect(const frame& f) {
    disconnect_info info;
    if (parse_disconnect(f.payload, info) == error::none) {
        peer_status_ = info.status;
        peer_message_.assign(info.message);
    } else {
        peer_status_ = static_cast<std::uint32_t>(status_code::unknown);
        peer_message_ = "unparsable HAPROXY-DISCONNECT";
    }
    // protocol/README.md §7.1: answer with AGENT-DISCONNECT, then close.
    disconnect(status_code::normal, {}, close_reason::peer_disconnect);
}

void session::disconnect(status_code status, std::string_view message, close_reason why) {
    if (state_ == state::closing) return;
    encode_disconnect(out_, frame_type::agent_disconnect, status, message);
    sent_status_ = status;
    state_ = state::closing;
    reason_ = why;
}

void session::fail(error e) {
    if (state_ == state::closing) return;
    error_ = e;
    disconnect(to_status(e), to_string(e), close_reason::protocol_error);
}

}  // namespace spoa::protocol
