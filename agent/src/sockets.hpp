#pragma once
// Listening sockets, created before the loops start so that bind errors reach the caller.

#include <string>
#include <vector>

#include "spoa/agent/config.hpp"

namespace spoa::detail {

/// Creates, binds and listens on a TCP socket with SO_REUSEPORT (one per loop thread on the
/// same port; Debian's libuv 1.44 has no UV_TCP_REUSEPORT). IPv6 addresses are v6-only so that
/// an IPv4 and an IPv6 listener can share a port. Throws std::runtime_error naming the address.
[[nodiscard]] int open_tcp_listener(const listen_address& addr, bool reuse_port);

/// Creates, binds and listens on a Unix socket, replacing a stale socket file (one nobody
/// listens on), then applies mode and owner. Throws std::runtime_error.
[[nodiscard]] int open_unix_listener(const listen_address& addr, const unix_socket_options& opts);

/// The port a socket is bound to.
[[nodiscard]] std::uint16_t bound_port(int fd);

}  // namespace spoa::detail
