#pragma once
// Where spoa-cli connects: `host:port` (numeric IPv4, or a name resolved with getaddrinfo),
// `[v6]:port`, or `unix:/path`, as spoa-agent's --listen writes them.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace spoa::cli {

struct target {
    enum class kind : std::uint8_t { tcp, unix_socket };
    kind type = kind::tcp;
    std::string host;
    std::uint16_t port = 0;
    std::string path;

    /// Throws std::invalid_argument naming the bad part.
    [[nodiscard]] static target parse(std::string_view text);
    [[nodiscard]] std::string to_string() const;
};

/// A connected, blocking stream socket (TCP_NODELAY for TCP). Throws cli_error
/// (connection_failed, or timeout when the connect itself takes longer than `timeout`).
[[nodiscard]] int connect_to(const target& t, std::chrono::milliseconds timeout);

}  // namespace spoa::cli
