#pragma once
/// Turns a host name into the addresses it stands for, asynchronously, on a libuv loop. The
/// remote resolver asks again at every reconnect (nothing is cached here: the system resolver
/// and its TTLs decide), so a control plane whose address changes is followed.
///
/// Threads: lookup() is called on the thread that runs `loop`, and `done` runs there, exactly
/// once, possibly before lookup() returns. An implementation changed from other threads (a test
/// that redirects a name) guards its own state. Shared by its users (std::shared_ptr): it must
/// outlive the lookups it started, which the callers ensure by holding it in `done`'s captures.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

#include "spoa/agent/ip_address.hpp"

namespace spoa::handlers::routing {

struct host_lookup_result {
    std::vector<ip_address> addresses;  ///< in the order the system returned them
    std::string error;                  ///< why there is none; empty on success
};

class host_lookup {
  public:
    using done_fn = std::function<void(host_lookup_result)>;
    virtual ~host_lookup() = default;
    /// Looks `host` up (IPv4 and IPv6). A name with no address is an error, never an empty
    /// success.
    virtual void lookup(uv_loop_t* loop, const std::string& host, done_fn done) = 0;
};

/// uv_getaddrinfo on libuv's thread pool: the loop is never blocked, but a lookup the system
/// resolver is stuck on holds a pool thread (and keeps the loop from ending) until the resolver
/// gives up (resolv.conf `timeout` and `attempts`).
[[nodiscard]] std::shared_ptr<host_lookup> system_host_lookup();

}  // namespace spoa::handlers::routing
