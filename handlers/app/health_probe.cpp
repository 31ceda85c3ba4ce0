#include "health_probe.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace spoa::app {
namespace {

using clock = std::chrono::steady_clock;

/// Closes the socket on every return path.
struct socket_fd {
    int fd;
    ~socket_fd() {
        if (fd >= 0) ::close(fd);
    }
};

int remaining_ms(clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

/// Waits for `events` on fd until the deadline; false on timeout or error.
bool wait_for(int fd, short events, clock::time_point deadline) {
    pollfd p{fd, events, 0};
    int n;
    do
        n = ::poll(&p, 1, remaining_ms(deadline));
    while (n < 0 && errno == EINTR);
    return n > 0 && (p.revents & (events | POLLHUP)) != 0;
}

/// A non-blocking socket connected to the address, or an error text.
probe_result connect_to(const listen_address& admin, socket_fd& s, clock::time_point deadline) {
    sockaddr_storage addr;
    const auto len = static_cast<socklen_t>(admin.to_sockaddr(addr));
    s.fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.fd < 0) return {false, std::string("socket: ") + std::strerror(errno)};
    if (::connect(s.fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 && errno != EINPROGRESS)
        return {false, std::string("connect: ") + std::strerror(errno)};
    if (!wait_for(s.fd, POLLOUT, deadline)) return {false, "connect: timed out"};
    int err = 0;
    socklen_t err_len = sizeof err;
    ::getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &err_len);
    if (err != 0) return {false, std::string("connect: ") + std::strerror(err)};
    return {true, {}};
}

/// Reads until the end of the status line (or the peer closes), at most 255 bytes.
std::string read_status_line(int fd, clock::time_point deadline) {
    std::string got;
    char buf[256];
    while (got.find("\r\n") == std::string::npos && got.size() < sizeof buf - 1) {
        if (!wait_for(fd, POLLIN, deadline)) break;
        const ssize_t n = ::recv(fd, buf, sizeof buf - 1 - got.size(), 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
    }
    return got.substr(0, got.find("\r\n"));
}

}  // namespace

probe_result probe_health(const listen_address& admin, std::chrono::milliseconds timeout) {
    if (admin.type != listen_address::kind::tcp)
        return {false, "the admin endpoint is a TCP address"};
    const auto deadline = clock::now() + timeout;
    socket_fd s{-1};
    if (auto connected = connect_to(admin, s, deadline); !connected.healthy) return connected;
    static constexpr char request[] = "GET /healthz HTTP/1.0\r\n\r\n";
    if (::send(s.fd, request, sizeof request - 1, MSG_NOSIGNAL) != sizeof request - 1)
        return {false, "send: the request did not go out at once"};
    const std::string status = read_status_line(s.fd, deadline);
    if (status.empty()) return {false, "no HTTP status line before the timeout"};
    // "HTTP/1.x 200 ..." and nothing else counts: a draining agent answers 503.
    const bool ok = status.size() >= 12 && status.compare(0, 5, "HTTP/") == 0 &&
                    status.compare(8, 4, " 200") == 0;
    return {ok, status};
}

}  // namespace spoa::app
