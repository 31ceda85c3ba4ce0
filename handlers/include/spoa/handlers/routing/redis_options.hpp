#pragma once
/// The `redis:` section of the routing file: where the agents of a fleet share their state (see
/// README "Running several agents"). Absent: the agent runs alone, exactly as without Redis.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "spoa/handlers/routing/connect_address.hpp"
#include "spoa/handlers/routing/host_lookup.hpp"

namespace spoa::handlers::routing {

struct redis_options {
    /// `host:port` (a name, an IPv4 address or `[v6]:port`), or `unix:/path`. A name is looked
    /// up again at every connection attempt, off the service loop (hiredis itself would block
    /// it), and its first address is used.
    connect_address address;
    /// How host names are looked up; null = the system's (getaddrinfo on libuv's pool).
    std::shared_ptr<host_lookup> lookup;
    std::uint64_t database = 0;  ///< SELECT on the command connection (pub/sub ignores it)
    std::string user;            ///< ACL user for `AUTH user password`; empty: `AUTH password`
    std::string password;        ///< empty: no AUTH
    std::string key_prefix = "spoa:";  ///< every key and channel starts with it
    /// This agent's name in messages (its own echoes are ignored); empty: a random one at start.
    std::string agent_id;
    std::chrono::milliseconds connect_timeout{1000};  ///< connect plus AUTH/SELECT
    std::chrono::milliseconds command_timeout{250};
    std::chrono::milliseconds reconnect_min{100};
    std::chrono::milliseconds reconnect_max{5000};
    /// Commands sent and not yet answered (timed-out ones included, as Redis still owes their
    /// answer); beyond it a command fails at once (`overloaded`).
    std::size_t max_pending = 10000;
    /// Health checks (redis_client.hpp): a PING on the command connection when it was idle
    /// this long, a heartbeat through the subscription this often; a connection silent for
    /// ping_interval + command_timeout while it owes an answer is made again (a paused server
    /// keeps its socket open).
    std::chrono::milliseconds ping_interval{1000};

    /// One wake per resource across the fleet (README "Running several agents"): the agent
    /// that starts a cold start holds `<prefix>wake:<protocol>:<id>` this long, renewed while it
    /// waits; the others follow its outcome. 0: every agent wakes on its own.
    std::chrono::milliseconds wake_lease{3000};
    /// The second tier of the route cache: misses read `<prefix>cache:<protocol>:<id>` before
    /// resolving and write what they resolved, with its TTL.
    bool shared_cache = true;
    /// Resolver misses coordinated like wakes (`<prefix>resolve:<protocol>:<id>`), so that N
    /// agents call a remote resolver once per id; worth it only for a remote resolver.
    bool coordinate_resolves = false;
    std::chrono::milliseconds resolve_lease{1000};
    /// Activity (requests, last seen) written to Redis this often, pipelined; 0: not written.
    std::chrono::milliseconds activity_interval{1000};
};

}  // namespace spoa::handlers::routing
