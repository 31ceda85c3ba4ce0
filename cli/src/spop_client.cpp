#include "spop_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cli_error.hpp"
#include "spoa/protocol/disconnect.hpp"

namespace spoa::cli {
namespace {

using clock = std::chrono::steady_clock;
using protocol::frame_type;

/// Frames larger than this are refused before buffering them: the agent's cap is 2^24.
constexpr std::uint32_t largest_frame = 1u << 24;

std::string describe(const protocol::frame& f) {
    return std::string(protocol::to_string(f.type)) + " stream-id " + std::to_string(f.stream_id) +
           " frame-id " + std::to_string(f.frame_id);
}

}  // namespace

spop_client::spop_client(const target& t, std::chrono::milliseconds timeout)
    : target_(t), timeout_(timeout), fd_(connect_to(t, timeout)) {}

spop_client::~spop_client() {
    if (fd_ >= 0) ::close(fd_);
}

announced_hello spop_client::handshake(const protocol::haproxy_hello_options& hello) {
    tx_.clear();
    protocol::frame_writer w(tx_);
    w.begin(frame_type::haproxy_hello, protocol::frame_flags::fin, 0, 0);
    protocol::encode_haproxy_hello_payload(tx_, hello);
    (void)w.finish(largest_frame);
    send_all(tx_.view());
    const protocol::frame f = read_frame();
    if (f.type != frame_type::agent_hello) {
        throw cli_error(exit_code::protocol_error, "expected AGENT-HELLO, got " + describe(f));
    }
    protocol::agent_hello parsed;
    if (const auto e = protocol::parse_agent_hello(f.payload, parsed); e != protocol::error::none) {
        throw cli_error(exit_code::protocol_error,
                        "malformed AGENT-HELLO: " + std::string(protocol::to_string(e)));
    }
    max_frame_size_ = parsed.max_frame_size;
    return {std::string(parsed.version), parsed.max_frame_size, std::string(parsed.capabilities)};
}

protocol::bytes_view spop_client::notify(protocol::bytes_view payload) {
    const std::uint64_t stream_id = next_stream_id_;
    next_stream_id_ += 2;
    tx_.clear();
    protocol::frame_writer w(tx_);
    w.begin(frame_type::notify, protocol::frame_flags::fin, stream_id, 1);
    tx_.append(payload);
    // Not checked against the agent's max-frame-size on purpose: an operator who sends a frame
    // that is too big sees the agent's own refusal (AGENT-DISCONNECT status 3).
    (void)w.finish(0xFFFFFFFFu);
    send_all(tx_.view());
    const protocol::frame f = read_frame();
    if (f.type != frame_type::ack || f.stream_id != stream_id || f.frame_id != 1) {
        throw cli_error(exit_code::protocol_error, "expected ACK stream-id " +
                                                       std::to_string(stream_id) +
                                                       " frame-id 1, got " + describe(f));
    }
    return f.payload;
}

void spop_client::disconnect() noexcept {
    try {
        tx_.clear();
        protocol::encode_disconnect(tx_, frame_type::haproxy_disconnect,
                                    protocol::status_code::normal, "normal");
        (void)::send(fd_, tx_.data(), tx_.size(), MSG_NOSIGNAL);
    } catch (...) {  // NOLINT(bugprone-empty-catch): nothing is left to report it to
    }
}

void spop_client::send_all(protocol::bytes_view bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
        const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw cli_error(exit_code::connection_failed,
                            "send to " + target_.to_string() + ": " + std::strerror(errno));
        }
        off += static_cast<std::size_t>(n);
    }
}

protocol::frame spop_client::read_frame() {
    // Frames already returned are dropped only now: their payload views stayed valid until here.
    rx_.erase(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(consumed_));
    consumed_ = 0;
    const auto deadline = clock::now() + timeout_;
    while (true) {
        protocol::frame f;
        const auto r = protocol::decode_frame({rx_.data(), rx_.size()}, largest_frame, f);
        if (r.status == protocol::decode_status::ok) {
            consumed_ = r.size;
            if (f.type == frame_type::agent_disconnect) agent_disconnected(f);
            return f;
        }
        if (r.status == protocol::decode_status::error) {
            throw cli_error(exit_code::protocol_error, "undecodable frame from the agent: " +
                                                           std::string(protocol::to_string(r.err)));
        }
        fill(deadline);
    }
}

void spop_client::agent_disconnected(const protocol::frame& f) const {
    protocol::disconnect_info info;
    if (protocol::parse_disconnect(f.payload, info) != protocol::error::none) {
        throw cli_error(exit_code::agent_disconnect, "AGENT-DISCONNECT (unparsable payload)");
    }
    throw cli_error(exit_code::agent_disconnect, "AGENT-DISCONNECT status " +
                                                     std::to_string(info.status) + ": " +
                                                     std::string(info.message));
}

void spop_client::fill(clock::time_point deadline) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() <= 0) {
        throw cli_error(exit_code::timeout, "no answer from " + target_.to_string() + " within " +
                                                std::to_string(timeout_.count()) + " ms");
    }
    pollfd p{fd_, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) return;
    if (rc == 0) return;  // the deadline check above reports it
    std::uint8_t buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
        rx_.insert(rx_.end(), buf, buf + n);
        return;
    }
    if (n < 0 && errno == EINTR) return;
    throw cli_error(exit_code::connection_failed,
                    std::string("connection to ") + target_.to_string() + " " +
                        (n == 0 ? "closed by the agent" : std::strerror(errno)) +
                        " while waiting for a frame");
}

}  // namespace spoa::cli
