#include "sockets.hpp"

#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

namespace spoa::detail {
namespace {

[[noreturn]] void fail(const std::string& what, const listen_address& addr, int err) {
    throw std::runtime_error(what + " " + addr.to_string() + ": " + std::strerror(err));
}

std::optional<unsigned> parse_id(const std::string& s) {
    unsigned v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

}  // namespace

int open_tcp_listener(const listen_address& addr, bool reuse_port) {
    sockaddr_storage ss;
    const auto len = static_cast<socklen_t>(addr.to_sockaddr(ss));
    const int family = ss.ss_family;
    const int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket", addr, errno);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
        const int err = errno;
        ::close(fd);
        fail("SO_REUSEPORT on", addr, err);
    }
    if (family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        const int err = errno;
        ::close(fd);
        fail("cannot bind", addr, err);
    }
    if (::listen(fd, 4096) != 0) {
        const int err = errno;
        ::close(fd);
        fail("cannot listen on", addr, err);
    }
    return fd;
}

int open_unix_listener(const listen_address& addr, const unix_socket_options& opts) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, addr.path.c_str(), addr.path.size() + 1);
    struct stat st {};
    if (::lstat(addr.path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            throw std::runtime_error("cannot bind " + addr.to_string() +
                                     ": exists and is not a socket");
        }
        // A socket file nobody accepts on is left over from a previous run: replace it. One
        // that answers belongs to a live process: refuse rather than steal it.
        const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const bool live =
            probe >= 0 && ::connect(probe, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
        if (probe >= 0) ::close(probe);
        if (live)
            throw std::runtime_error("cannot bind " + addr.to_string() +
                                     ": in use by another process");
        ::unlink(addr.path.c_str());
    }
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket", addr, errno);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        const int err = errno;
        ::close(fd);
        fail("cannot bind", addr, err);
    }
    auto cleanup = [&](const std::string& what, int err) {
        ::close(fd);
        ::unlink(addr.path.c_str());
        fail(what, addr, err);
    };
    if (opts.mode && ::chmod(addr.path.c_str(), static_cast<mode_t>(*opts.mode)) != 0) {
        cleanup("chmod", errno);
    }
    if (!opts.owner.empty() || !opts.group.empty()) {
        uid_t uid = static_cast<uid_t>(-1);
        gid_t gid = static_cast<gid_t>(-1);
        if (!opts.owner.empty()) {
            if (auto id = parse_id(opts.owner)) {
                uid = *id;
            } else if (const passwd* pw = ::getpwnam(opts.owner.c_str())) {
                uid = pw->pw_uid;
            } else {
                cleanup("unknown user '" + opts.owner + "' for", ENOENT);
            }
        }
        if (!opts.group.empty()) {
            if (auto id = parse_id(opts.group)) {
                gid = *id;
            } else if (const group* gr = ::getgrnam(opts.group.c_str())) {
                gid = gr->gr_gid;
            } else {
                cleanup("unknown group '" + opts.group + "' for", ENOENT);
            }
        }
        if (::chown(addr.path.c_str(), uid, gid) != 0) cleanup("chown", errno);
    }
    if (::listen(fd, 4096) != 0) cleanup("cannot listen on", errno);
    return fd;
}

std::uint16_t bound_port(int fd) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
    if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    return 0;
}

}  // namespace spoa::detail
