#pragma once
/// The routing configuration file (YAML), see haproxy/routing.example.yaml and the README.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "spoa/agent/config.hpp"
#include "spoa/handlers/routing/connect_address.hpp"
#include "spoa/handlers/routing/host_lookup.hpp"
#include "spoa/handlers/routing/redis_options.hpp"
#include "spoa/handlers/routing/router.hpp"
#include "spoa/handlers/routing/ssrf.hpp"

namespace spoa::handlers::routing {

struct remote_resolver_options {
    /// The control plane's addresses, tried in this order (remote_resolver.hpp, "Addresses");
    /// never empty.
    std::vector<connect_address> addresses;
    /// How host names in `addresses` are looked up; null = the system's (getaddrinfo).
    std::shared_ptr<host_lookup> lookup;
    std::chrono::milliseconds call_timeout{250};
    std::chrono::milliseconds reconnect_min{50};
    std::chrono::milliseconds reconnect_max{5000};
    std::size_t max_pending = 10000;  ///< calls waiting for an answer; beyond: unavailable
};

struct routing_config {
    std::string path;  ///< the file it came from
    enum class resolver_kind : std::uint8_t { static_routes, remote, chain, redis };
    resolver_kind resolver = resolver_kind::static_routes;
    /// What a chain is made of: each asked in this order, the next only after a `not_found`.
    enum class chain_link : std::uint8_t { static_routes, redis, remote };
    /// `resolver.chain` (at least two, each once); used only when `resolver` is `chain`.
    std::vector<chain_link> chain{chain_link::static_routes, chain_link::remote};
    std::optional<remote_resolver_options> remote;
    router_options router;
    ssrf_policy ssrf;
    /// UDP address receiving HAProxy's log lines (passive health signals), if any.
    std::optional<listen_address> feedback_listen;
    /// The fleet's shared Redis (README "Running several agents"); absent: a lone agent.
    std::optional<redis_options> redis;
};

/// Reads the file. Throws std::runtime_error("<file>:<line>: <problem>") on any error.
[[nodiscard]] routing_config load_routing_config(const std::string& path);
/// Same from YAML text (tests, embedded defaults); `origin` names it in errors.
[[nodiscard]] routing_config parse_routing_config(const std::string& yaml,
                                                  const std::string& origin);

}  // namespace spoa::handlers::routing
