#include "spoa/testing/fake_haproxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/byte_reader.hpp"
#include "spoa/protocol/kv_list.hpp"

namespace spoa::testing {
namespace {

using clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error(what);
}

[[noreturn]] void fail_errno(const std::string& what) {
    throw std::runtime_error(what + ": " + std::strerror(errno));
}

std::uint32_t read_be32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
           std::uint32_t{p[3]};
}

std::vector<std::uint8_t> to_vector(const protocol::byte_buffer& b) {
    return {b.data(), b.data() + b.size()};
}

void set_timeouts(int fd) {
    // Writes never block a test for long even if the agent stops reading.
    timeval tv{};
    tv.tv_sec = 5;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

}  // namespace

// ---- received frames ------------------------------------------------------------------------

std::vector<std::pair<std::string, owned_value>> received_frame::kv() const {
    std::vector<std::pair<std::string, owned_value>> out;
    protocol::kv_reader r({payload.data(), payload.size()});
    while (!r.done()) {
        std::string_view key;
        protocol::typed_value value;
        if (const auto e = r.next(key, value); e != protocol::error::none) {
            fail("malformed KV-LIST in " + describe() + ": " + std::string(protocol::to_string(e)));
        }
        out.emplace_back(std::string(key), owned_value::from(value));
    }
    return out;
}

std::optional<owned_value> received_frame::kv_get(std::string_view key) const {
    for (auto& [k, v] : kv()) {
        if (k == key) return v;
    }
    return std::nullopt;
}

std::string received_frame::kv_string(std::string_view key) const {
    const auto v = kv_get(key);
    if (!v || v->type != protocol::data_type::string) {
        fail("no STRING '" + std::string(key) + "' in " + describe());
    }
    return v->bytes;
}

std::uint64_t received_frame::kv_uint(std::string_view key) const {
    const auto v = kv_get(key);
    if (!v || v->type < protocol::data_type::int32 || v->type > protocol::data_type::uint64) {
        fail("no integer '" + std::string(key) + "' in " + describe());
    }
    return v->integer;
}

std::uint32_t received_frame::status() const {
    if (type != protocol::frame_type::agent_disconnect &&
        type != protocol::frame_type::haproxy_disconnect) {
        fail("expected a DISCONNECT, got " + describe());
    }
    return static_cast<std::uint32_t>(kv_uint("status-code"));
}

std::vector<owned_action> received_frame::actions() const {
    if (type != protocol::frame_type::ack) fail("expected an ACK, got " + describe());
    std::vector<owned_action> out;
    if (const auto e = protocol::decode_owned_actions({payload.data(), payload.size()}, out);
        e != protocol::error::none) {
        fail("malformed ACK payload in " + describe() + ": " + std::string(protocol::to_string(e)));
    }
    return out;
}

std::string received_frame::describe() const {
    std::string s(protocol::to_string(type));
    s += " sid=" + std::to_string(stream_id) + " fid=" + std::to_string(frame_id) +
         " flags=" + std::to_string(flags) + " len=" + std::to_string(raw.size()) + " [" +
         hex({raw.data(), raw.size() < 64 ? raw.size() : 64}) + (raw.size() > 64 ? " ...]" : "]");
    return s;
}

// ---- encoders -------------------------------------------------------------------------------

std::vector<std::uint8_t> hello_payload(const hello_options& opts) {
    protocol::byte_buffer b;
    protocol::encode_haproxy_hello_payload(b, opts);
    return to_vector(b);
}

std::vector<std::uint8_t> notify_payload(std::span<const message_spec> messages) {
    protocol::byte_buffer b;
    for (const auto& m : messages)
        protocol::encode_message(b, m.name, m.args);
    return to_vector(b);
}

std::vector<std::uint8_t> notify_payload(const message_spec& message) {
    return notify_payload(std::span<const message_spec>(&message, 1));
}

std::vector<std::uint8_t> encode_frame(std::uint8_t type, std::uint32_t flags,
                                       std::uint64_t stream_id, std::uint64_t frame_id,
                                       std::span<const std::uint8_t> payload) {
    protocol::byte_buffer b;
    b.put_u32be(0);
    b.put_u8(type);
    b.put_u32be(flags);
    b.put_varint(stream_id);
    b.put_varint(frame_id);
    b.append(payload.data(), payload.size());
    b.patch_u32be(0, static_cast<std::uint32_t>(b.size() - protocol::length_prefix_size));
    return to_vector(b);
}

std::string hex(std::span<const std::uint8_t> bytes) {
    return protocol::to_hex(bytes);
}

std::vector<std::uint8_t> from_hex(std::string_view text) {
    std::vector<std::uint8_t> out;
    int high = -1;
    for (const char c : text) {
        int v = -1;
        if (c >= '0' && c <= '9') v = c - '0';
        if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
        if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
        if (v < 0) {
            if (c == ' ' || c == '\n' || c == '\t') continue;
            fail("bad hex character in '" + std::string(text) + "'");
        }
        if (high < 0) {
            high = v;
        } else {
            out.push_back(static_cast<std::uint8_t>(high * 16 + v));
            high = -1;
        }
    }
    if (high >= 0) fail("odd number of hex digits in '" + std::string(text) + "'");
    return out;
}

std::string_view to_string(close_kind k) noexcept {
    switch (k) {
        case close_kind::eof:
            return "eof";
        case close_kind::reset:
            return "reset";
        case close_kind::timeout:
            return "timeout";
        case close_kind::data:
            return "data";
    }
    return "?";
}

// ---- the client -----------------------------------------------------------------------------

fake_haproxy fake_haproxy::connect_tcp(const std::string& host, std::uint16_t port) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (::inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) fail("not an IPv4 address: " + host);
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail_errno("socket");
    fake_haproxy c(fd);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        fail_errno("connect to " + host + ":" + std::to_string(port));
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_timeouts(fd);
    return c;
}

fake_haproxy fake_haproxy::connect_unix(const std::string& path) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path) fail("Unix socket path too long: " + path);
    std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail_errno("socket");
    fake_haproxy c(fd);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        fail_errno("connect to unix:" + path);
    }
    set_timeouts(fd);
    return c;
}

fake_haproxy::fake_haproxy(fake_haproxy&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      rx_(std::move(other.rx_)),
      closed_(other.closed_),
      reset_(other.reset_) {}

fake_haproxy& fake_haproxy::operator=(fake_haproxy&& other) noexcept {
    if (this != &other) {
        close();
        fd_ = std::exchange(other.fd_, -1);
        rx_ = std::move(other.rx_);
        closed_ = other.closed_;
        reset_ = other.reset_;
    }
    return *this;
}

fake_haproxy::~fake_haproxy() {
    close();
}

void fake_haproxy::close() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

void fake_haproxy::reset_close() noexcept {
    if (fd_ < 0) return;
    linger l{};
    l.l_onoff = 1;
    l.l_linger = 0;
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close();
}

void fake_haproxy::shutdown_write() noexcept {
    if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

void fake_haproxy::send_raw(std::span<const std::uint8_t> bytes) {
    if (fd_ < 0) fail("send on a closed client");
    std::size_t off = 0;
    while (off < bytes.size()) {
        const ssize_t n = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail_errno("send");
        }
        off += static_cast<std::size_t>(n);
    }
}

void fake_haproxy::send_frame(protocol::frame_type type, std::uint32_t flags,
                              std::uint64_t stream_id, std::uint64_t frame_id,
                              std::span<const std::uint8_t> payload) {
    send_raw(encode_frame(static_cast<std::uint8_t>(type), flags, stream_id, frame_id, payload));
}

void fake_haproxy::send_hello(const hello_options& opts) {
    send_frame(protocol::frame_type::haproxy_hello, protocol::frame_flags::fin, 0, 0,
               hello_payload(opts));
}

void fake_haproxy::send_notify(std::uint64_t stream_id, std::uint64_t frame_id,
                               std::span<const std::uint8_t> payload, std::uint32_t flags) {
    send_frame(protocol::frame_type::notify, flags, stream_id, frame_id, payload);
}

void fake_haproxy::send_notify(std::uint64_t stream_id, std::uint64_t frame_id,
                               const message_spec& message) {
    send_notify(stream_id, frame_id, notify_payload(message));
}

void fake_haproxy::send_fragmented_notify(std::uint64_t stream_id, std::uint64_t frame_id,
                                          std::span<const std::uint8_t> payload,
                                          std::span<const std::size_t> chunks) {
    std::size_t off = 0;
    bool first = true;
    for (const std::size_t n : chunks) {
        if (off + n > payload.size()) fail("fragment sizes exceed the payload");
        const auto part = payload.subspan(off, n);
        if (first) {
            send_notify(stream_id, frame_id, part, 0);
        } else {
            send_unset(stream_id, frame_id, part, 0);
        }
        first = false;
        off += n;
    }
    if (first) fail("a fragmented NOTIFY needs at least one chunk before the last fragment");
    send_unset(stream_id, frame_id, payload.subspan(off), protocol::frame_flags::fin);
}

void fake_haproxy::send_unset(std::uint64_t stream_id, std::uint64_t frame_id,
                              std::span<const std::uint8_t> payload, std::uint32_t flags) {
    send_frame(protocol::frame_type::unset, flags, stream_id, frame_id, payload);
}

void fake_haproxy::send_abort(std::uint64_t stream_id, std::uint64_t frame_id) {
    send_unset(stream_id, frame_id, {}, protocol::frame_flags::fin | protocol::frame_flags::abort);
}

void fake_haproxy::send_disconnect(std::uint32_t status, std::string_view message) {
    protocol::byte_buffer b;
    protocol::encode_kv(b, "status-code", protocol::typed_value::uint32(status));
    protocol::encode_kv(b, "message", protocol::typed_value::string(message));
    send_frame(protocol::frame_type::haproxy_disconnect, protocol::frame_flags::fin, 0, 0,
               {b.data(), b.size()});
}

bool fake_haproxy::fill(milliseconds timeout) {
    if (closed_ || fd_ < 0) return false;
    pollfd p{fd_, POLLIN, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (rc < 0) {
        if (errno == EINTR) return true;  // the caller re-checks its own deadline
        fail_errno("poll");
    }
    if (rc == 0) return false;
    std::uint8_t buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) {
        rx_.insert(rx_.end(), buf, buf + n);
        return true;
    }
    if (n == 0) {
        closed_ = true;
        return true;
    }
    if (errno == EAGAIN || errno == EINTR) return true;
    if (errno == ECONNRESET) {
        closed_ = true;
        reset_ = true;
        return true;
    }
    fail_errno("recv");
}

std::optional<received_frame> fake_haproxy::try_read_frame(milliseconds timeout) {
    const auto deadline = clock::now() + timeout;
    while (true) {
        if (rx_.size() >= protocol::length_prefix_size) {
            const std::uint32_t len = read_be32(rx_.data());
            const std::size_t total = protocol::length_prefix_size + len;
            if (rx_.size() >= total) {
                received_frame f;
                f.raw.assign(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(total));
                rx_.erase(rx_.begin(), rx_.begin() + static_cast<std::ptrdiff_t>(total));
                protocol::frame decoded;
                const auto r =
                    protocol::decode_frame({f.raw.data(), f.raw.size()}, 0xFFFFFFFFu, decoded);
                if (r.status != protocol::decode_status::ok) {
                    fail("the agent sent an undecodable frame (" +
                         std::string(protocol::to_string(r.err)) + "): " + hex(f.raw));
                }
                f.type = decoded.type;
                f.flags = decoded.flags;
                f.stream_id = decoded.stream_id;
                f.frame_id = decoded.frame_id;
                f.payload.assign(decoded.payload.begin(), decoded.payload.end());
                return f;
            }
        }
        if (closed_) return std::nullopt;
        const auto now = clock::now();
        if (now >= deadline) return std::nullopt;
        const auto left = std::chrono::duration_cast<milliseconds>(deadline - now) + 1ms;
        if (!fill(left) && clock::now() >= deadline) return std::nullopt;
    }
}

received_frame fake_haproxy::read_frame(milliseconds timeout) {
    auto f = try_read_frame(timeout);
    if (!f) {
        if (closed_) {
            fail(std::string("connection ") + (reset_ ? "reset" : "closed") +
                 " while waiting for a frame (" + std::to_string(rx_.size()) +
                 " bytes buffered: " + hex(rx_) + ")");
        }
        fail("no frame within " + std::to_string(timeout.count()) + " ms (" +
             std::to_string(rx_.size()) + " bytes buffered)");
    }
    return std::move(*f);
}

received_frame fake_haproxy::expect(protocol::frame_type type, milliseconds timeout) {
    auto f = read_frame(timeout);
    if (f.type != type) {
        std::string what =
            "expected " + std::string(protocol::to_string(type)) + ", got " + f.describe();
        if (f.type == protocol::frame_type::agent_disconnect) {
            what += " (status " + std::to_string(f.status()) + ": " + f.kv_string("message") + ")";
        }
        fail(what);
    }
    return f;
}

std::uint32_t fake_haproxy::expect_disconnect(milliseconds timeout) {
    return expect(protocol::frame_type::agent_disconnect, timeout).status();
}

close_kind fake_haproxy::wait_closed(milliseconds timeout) {
    const auto deadline = clock::now() + timeout;
    while (true) {
        if (!rx_.empty()) return close_kind::data;
        if (closed_) return reset_ ? close_kind::reset : close_kind::eof;
        const auto now = clock::now();
        if (now >= deadline) return close_kind::timeout;
        (void)fill(std::chrono::duration_cast<milliseconds>(deadline - now) + 1ms);
    }
}

bool fake_haproxy::silent_for(milliseconds period) {
    const auto deadline = clock::now() + period;
    while (rx_.empty() && !closed_) {
        const auto now = clock::now();
        if (now >= deadline) return true;
        (void)fill(std::chrono::duration_cast<milliseconds>(deadline - now) + 1ms);
    }
    return false;
}

received_frame fake_haproxy::handshake(const hello_options& opts) {
    send_hello(opts);
    return expect(protocol::frame_type::agent_hello);
}

}  // namespace spoa::testing
