#pragma once
/// The message contract between HAProxy's configuration (haproxy/*/spoe-routing*.conf) and the
/// routing handlers: message names, argument names and variable names, defined once here.
/// tests/handlers/contract_test checks every shipped HAProxy configuration against it.

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace spoa::handlers::routing::contract {

/// `option var-prefix` of every routing engine: variables are txn.route.<name>.
inline constexpr std::string_view var_prefix = "route";

namespace message {
inline constexpr std::string_view http = "route-http";    ///< HTTP: route on Host (+ path)
inline constexpr std::string_view postgres = "route-pg";  ///< PostgreSQL: startup packet
inline constexpr std::string_view tcp = "route-tcp";      ///< server-speaks-first protocols
inline constexpr std::string_view tls = "route-tls";      ///< TLS passthrough: SNI
}  // namespace message

namespace arg {
inline constexpr std::string_view host = "host";            ///< req.hdr(host)
inline constexpr std::string_view path = "path";            ///< path
inline constexpr std::string_view src = "src";              ///< src
inline constexpr std::string_view startup = "startup";      ///< req.payload(0,0) (PostgreSQL)
inline constexpr std::string_view sni = "sni";              ///< req.ssl_sni
inline constexpr std::string_view alpn = "alpn";            ///< req.ssl_alpn
inline constexpr std::string_view dst = "dst";              ///< dst
inline constexpr std::string_view dst_port = "dst_port";    ///< dst_port
inline constexpr std::string_view authority = "authority";  ///< fc_pp_authority (PROXY v2)
inline constexpr std::string_view service = "service";      ///< str(<name>): which frontend
}  // namespace arg

namespace var {
inline constexpr std::string_view ip = "ip";              ///< checked backend address (IPV4/IPV6)
inline constexpr std::string_view port = "port";          ///< backend port (int)
inline constexpr std::string_view status = "status";      ///< HTTP status of a refusal (int)
inline constexpr std::string_view reason = "reason";      ///< why (string)
inline constexpr std::string_view resource = "resource";  ///< normalised resource id
inline constexpr std::string_view cache = "cache";        ///< hit, miss, coalesced, negative
inline constexpr std::string_view decision_us = "decision_us";  ///< agent-side decision time
inline constexpr std::string_view kind = "kind";                ///< warm, cached, cold
inline constexpr std::string_view wait_ms = "wait_ms";          ///< cold start wait
/// PostgreSQL: the SQLSTATE of a refusal, for the ErrorResponse haproxy/spoa-postgres.lua sends.
inline constexpr std::string_view sqlstate = "sqlstate";
/// PostgreSQL: how to answer an SSLRequest or GSSENCRequest (a negotiation_answer).
inline constexpr std::string_view negotiation = "negotiation";
}  // namespace var

/// Values of var::cache: how the decision was found (`none`: a request refused before any
/// lookup, e.g. without a resource id).
enum class cache_label : std::uint8_t { hit, miss, coalesced, negative, none };
inline constexpr std::size_t cache_label_count = 5;
[[nodiscard]] constexpr std::string_view to_string(cache_label l) noexcept {
    constexpr std::array<std::string_view, cache_label_count> names{"hit", "miss", "coalesced",
                                                                    "negative", "none"};
    return names[static_cast<std::size_t>(l)];
}

/// Values of var::kind: `cached` (answered from the cache), `warm` (resolved, backend up),
/// `cold` (the backend had to be woken).
enum class decision_kind : std::uint8_t { cached, warm, cold };
inline constexpr std::size_t decision_kind_count = 3;
[[nodiscard]] constexpr std::string_view to_string(decision_kind k) noexcept {
    constexpr std::array<std::string_view, decision_kind_count> names{"cached", "warm", "cold"};
    return names[static_cast<std::size_t>(k)];
}

/// Values of var::negotiation. `plaintext`: answer 'N' (no encryption on this connection) and
/// send the client's next packet to the agent again.
enum class negotiation_answer : std::uint8_t { plaintext };
[[nodiscard]] constexpr std::string_view to_string(negotiation_answer a) noexcept {
    switch (a) {
        case negotiation_answer::plaintext:
            return "plaintext";
    }
    return "plaintext";
}

/// Arguments each message carries, in the order the shipped configurations send them.
inline constexpr std::array http_args{arg::host, arg::path, arg::src};
inline constexpr std::array postgres_args{arg::startup, arg::sni, arg::src};
inline constexpr std::array tcp_args{arg::service, arg::dst, arg::dst_port, arg::src,
                                     arg::authority};
inline constexpr std::array tls_args{arg::service, arg::sni, arg::alpn, arg::dst_port, arg::src};

/// Every variable the agent may set (for register-var-names).
inline constexpr std::array variables{var::ip,       var::port,     var::status,      var::reason,
                                      var::resource, var::cache,    var::decision_us, var::kind,
                                      var::wait_ms,  var::sqlstate, var::negotiation};

}  // namespace spoa::handlers::routing::contract
