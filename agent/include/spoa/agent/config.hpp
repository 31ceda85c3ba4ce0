#pragma once
/// Agent configuration.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace spdlog {
class logger;
}

struct sockaddr_storage;

namespace spoa {

/// Where to listen: `host:port`, `[v6]:port`, `:port` (all IPv4 addresses) or `unix:/path`.
struct listen_address {
    enum class kind : std::uint8_t { tcp, unix_socket };
    kind type = kind::tcp;
    std::string host;  ///< numeric address (tcp)
    std::uint16_t port = 0;
    std::string path;  ///< socket path (unix)

    /// Throws std::invalid_argument with a message naming the bad part.
    [[nodiscard]] static listen_address parse(std::string_view text);
    [[nodiscard]] std::string to_string() const;
    /// The TCP address as a socket address (family, address, port) in `out`; returns its
    /// length. Throws std::invalid_argument for a Unix socket or a non-numeric host.
    std::size_t to_sockaddr(sockaddr_storage& out) const;
    /// True for 127.0.0.0/8 and ::1 (and Unix sockets, which no other host reaches); false for
    /// every other address, the wildcard (`:port`) included.
    [[nodiscard]] bool is_local() const noexcept;
};

/// Ownership and permissions of Unix listening sockets. Debian's HAProxy runs as user haproxy
/// without supplementary groups, so a group-only permission is not enough: set the owner or a
/// mode it can use.
struct unix_socket_options {
    std::optional<unsigned> mode;  ///< e.g. 0660
    std::string owner;             ///< user name or numeric uid; empty = unchanged
    std::string group;             ///< group name or numeric gid; empty = unchanged
};

struct agent_config {
    std::vector<listen_address> listeners;
    /// Loop threads; 0 = number of cores.
    unsigned threads = 0;

    // Protocol (protocol/README.md §6, §8, §9).
    std::uint32_t max_frame_size = 16380;  ///< our cap, also before HELLO; [256, 2^24]
    bool pipelining = true;
    bool fragmentation = true;                       ///< announce and reassemble fragmented NOTIFYs
    std::size_t max_reassembled_size = 1024 * 1024;  ///< cap on a reassembled NOTIFY payload

    // Limits.
    std::size_t max_connections = 100000;
    std::size_t max_inflight_per_connection = 256;   ///< unanswered NOTIFYs; reading pauses beyond
    std::size_t write_high_water = 1024 * 1024;      ///< queued output bytes; reading pauses beyond
    std::chrono::milliseconds idle_timeout{600000};  ///< 0 = never close idle connections
    std::chrono::milliseconds hello_timeout{5000};
    /// A frame not answered by its handlers within this time is answered anyway (with the
    /// actions that are ready), so HAProxy never waits its whole `timeout processing` on us.
    std::chrono::milliseconds handler_deadline{1000};
    /// How long a drain may take before connections are closed regardless (after the grace).
    std::chrono::milliseconds drain_timeout{10000};
    /// Before draining, keep accepting and serving this long while health checks are refused,
    /// so HAProxy marks the agent DOWN first; set it to (fall x inter) of `option spop-check`
    /// for restarts without a single failed request. 0 = drain at once.
    std::chrono::milliseconds drain_grace{0};
    /// After our DISCONNECT, how long to wait for the peer to close.
    std::chrono::milliseconds close_linger{1000};

    unix_socket_options unix_socket;
    /// Admin HTTP endpoint (`host:port`), off when empty.
    std::optional<listen_address> admin;
    /// Bearer token every admin route but /healthz and /readyz requires; empty: none.
    std::string admin_token;
    /// The admin endpoint can invalidate routes: on an address other than loopback it needs a
    /// token, unless this says serving it openly there is intended.
    bool admin_public = false;

    std::shared_ptr<spdlog::logger> logger;  ///< null = a logger that drops everything
    /// run() installs SIGTERM/SIGINT handlers (first signal drains, second stops at once) and a
    /// SIGHUP handler that calls the reload hooks (agent::on_reload).
    bool handle_signals = true;
    /// Log handler exceptions at most this often per thread (per second).
    unsigned error_log_rate = 10;

    /// Every complete NOTIFY received (after reassembly) and every ACK sent is appended to this
    /// file (format: spoa/protocol/recording.hpp; writer: agent/src/frame_recorder.hpp), for
    /// `spoa-cli replay`. Empty = off, which costs the hot path one pointer test.
    std::string record_file;
    /// Recording stops, with one log line, before the file would grow past this size.
    std::uint64_t record_max_bytes = 64ull * 1024 * 1024;
};

}  // namespace spoa
