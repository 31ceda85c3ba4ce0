#include "target.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include "cli_error.hpp"

namespace spoa::cli {
namespace {

std::uint16_t parse_port(std::string_view digits, std::string_view text) {
    unsigned v = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size() || v == 0 ||
        v > 65535) {
        throw std::invalid_argument("bad port in target '" + std::string(text) + "'");
    }
    return static_cast<std::uint16_t>(v);
}

[[noreturn]] void connect_failed(const target& t, int err) {
    throw cli_error(exit_code::connection_failed,
                    "cannot connect to " + t.to_string() + ": " + std::strerror(err));
}

/// Waits for a non-blocking connect to finish; returns its errno (0 on success).
int finish_connect(int fd, const target& t, std::chrono::milliseconds timeout) {
    pollfd p{fd, POLLOUT, 0};
    int rc = 0;
    do {
        rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    } while (rc < 0 && errno == EINTR);
    if (rc == 0) {
        throw cli_error(exit_code::timeout, "connect to " + t.to_string() + " timed out after " +
                                                std::to_string(timeout.count()) + " ms");
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (rc < 0 || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
    return err;
}

int connect_address(const sockaddr* sa, socklen_t len, const target& t,
                    std::chrono::milliseconds timeout) {
    const int fd = ::socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) connect_failed(t, errno);
    int err = ::connect(fd, sa, len) == 0 ? 0 : errno;
    if (err == EINPROGRESS || err == EAGAIN) {
        try {
            err = finish_connect(fd, t, timeout);
        } catch (...) {
            ::close(fd);
            throw;
        }
    }
    if (err != 0) {
        ::close(fd);
        connect_failed(t, err);
    }
    // Back to blocking: every later wait is a poll() with its own deadline.
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    if (t.type == target::kind::tcp) {
        const int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

int connect_unix(const target& t, std::chrono::milliseconds timeout) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (t.path.size() >= sizeof sa.sun_path) {
        throw cli_error(exit_code::usage, "Unix socket path too long: " + t.path);
    }
    std::memcpy(sa.sun_path, t.path.c_str(), t.path.size() + 1);
    return connect_address(reinterpret_cast<const sockaddr*>(&sa), sizeof sa, t, timeout);
}

int connect_tcp(const target& t, std::chrono::milliseconds timeout) {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const std::string port = std::to_string(t.port);
    if (const int rc = ::getaddrinfo(t.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
        throw cli_error(exit_code::connection_failed,
                        "cannot resolve " + t.host + ": " + ::gai_strerror(rc));
    }
    const addrinfo first = *found;
    sockaddr_storage ss{};
    std::memcpy(&ss, first.ai_addr, first.ai_addrlen);
    ::freeaddrinfo(found);
    return connect_address(reinterpret_cast<const sockaddr*>(&ss), first.ai_addrlen, t, timeout);
}

}  // namespace

target target::parse(std::string_view text) {
    target t;
    if (text.starts_with("unix:")) {
        t.type = kind::unix_socket;
        t.path = std::string(text.substr(5));
        if (t.path.empty()) throw std::invalid_argument("empty Unix socket path in 'unix:'");
        return t;
    }
    if (text.starts_with("[")) {
        const std::size_t close = text.find("]:");
        if (close == std::string_view::npos) {
            throw std::invalid_argument("expected [v6]:port in target '" + std::string(text) + "'");
        }
        t.host = std::string(text.substr(1, close - 1));
        t.port = parse_port(text.substr(close + 2), text);
        return t;
    }
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
        throw std::invalid_argument("expected host:port, [v6]:port or unix:/path, not '" +
                                    std::string(text) + "'");
    }
    t.host = std::string(text.substr(0, colon));
    t.port = parse_port(text.substr(colon + 1), text);
    return t;
}

std::string target::to_string() const {
    if (type == kind::unix_socket) return "unix:" + path;
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

int connect_to(const target& t, std::chrono::milliseconds timeout) {
    return t.type == target::kind::unix_socket ? connect_unix(t, timeout) : connect_tcp(t, timeout);
}

}  // namespace spoa::cli
