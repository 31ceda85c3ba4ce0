#pragma once
/// The SPOP handshake as pure functions (protocol/README.md §6): parse HAPROXY-HELLO, decide the
/// AGENT-HELLO or the refusal status, encode the reply.

#include <cstdint>
#include <string_view>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/error.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/status_code.hpp"

namespace spoa::protocol {

/// What HAProxy offered. Strings view the frame payload.
struct haproxy_hello {
    std::string_view supported_versions;
    std::uint32_t max_frame_size = 0;
    std::string_view capabilities;
    std::string_view engine_id;  ///< empty in health checks
    bool healthcheck = false;
    bool offers_pipelining = false;
    bool offers_async = false;
    bool offers_fragmentation = false;
};

/// Parses a HAPROXY-HELLO payload. Unknown keys are skipped; keys may come in any order.
/// Errors: missing_version, missing_max_frame_size, missing_capabilities, bad_max_frame_size
/// (not an integer or above 2^32-1), plus KV decoding errors. Version and size range checks are
/// left to `negotiate` so that they map to their own status codes.
[[nodiscard]] error parse_haproxy_hello(bytes_view payload, haproxy_hello& out) noexcept;

/// True when `list` (comma-separated "Major.Minor" entries, spaces ignored) announces a 2.x
/// version: a major version covers its lower minors, and we speak 2.0.
[[nodiscard]] bool supports_version_2_0(std::string_view list) noexcept;

/// True when the comma-separated capability `list` contains `word` (spaces ignored).
[[nodiscard]] bool has_capability(std::string_view list, std::string_view word) noexcept;

/// What this agent is willing to do.
struct agent_capabilities {
    std::uint32_t max_frame_size = haproxy_default_max_frame_size;
    bool pipelining = true;
    bool async = false;
    bool fragmentation = true;
};

/// The outcome of a handshake: either the refusal status or the settings of the connection.
struct negotiation {
    error refusal = error::none;  ///< none when accepted
    std::uint32_t max_frame_size = 0;
    bool pipelining = false;
    bool async = false;
    bool fragmentation = false;  ///< we accept fragmented NOTIFYs on this connection
    bool healthcheck = false;

    [[nodiscard]] bool accepted() const noexcept { return refusal == error::none; }
};

/// Decides the reply: version 2.0; max-frame-size = min(ours, theirs), refused (status 9) when
/// theirs is below 256; pipelining/async only when both sides want them; fragmentation whenever
/// we accept it (it is asymmetric, protocol/README.md §9).
[[nodiscard]] negotiation negotiate(const haproxy_hello& hello,
                                    const agent_capabilities& ours) noexcept;

/// Appends a whole AGENT-HELLO frame for an accepted negotiation.
void encode_agent_hello(byte_buffer& out, const negotiation& result);

}  // namespace spoa::protocol
