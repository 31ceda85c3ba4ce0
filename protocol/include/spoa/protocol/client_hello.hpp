#pragma once
/// The HAProxy side of the handshake (protocol/README.md §6): the HAPROXY-HELLO a client sends
/// and the AGENT-HELLO it reads back. Used by spoa-cli and the tests' fake HAProxy; the agent
/// side is in hello.hpp.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/error.hpp"
#include "spoa/protocol/frame.hpp"

namespace spoa::protocol {

/// What a HAPROXY-HELLO announces. Keys whose value is nullopt are left out, so tests can send
/// HELLOs that miss a key.
struct haproxy_hello_options {
    std::optional<std::string> supported_versions = "2.0";
    std::optional<std::uint32_t> max_frame_size = haproxy_default_max_frame_size;
    std::optional<std::string> capabilities = "pipelining";
    std::optional<std::string> engine_id = "8e6a5d2c-1f3b-4c7d-9a0e-2b4f6d8c0a1e";
    bool healthcheck = false;

    /// HAProxy 2.6 defaults (example V2, protocol/README.md §11): "pipelining,async".
    [[nodiscard]] static haproxy_hello_options v2_6();
    /// HAProxy 3.1+ defaults (example V3, protocol/README.md §11): "pipelining".
    [[nodiscard]] static haproxy_hello_options v3();
    /// The health-check HELLO (example V1 of protocol/README.md §11, bytes exactly).
    [[nodiscard]] static haproxy_hello_options healthcheck_hello();
};

/// Appends the KV-list payload of a HAPROXY-HELLO (no frame header).
void encode_haproxy_hello_payload(byte_buffer& out, const haproxy_hello_options& opts);

/// What an AGENT-HELLO announced. `version` and `capabilities` view the payload.
struct agent_hello {
    std::string_view version;
    std::uint32_t max_frame_size = 0;
    std::string_view capabilities;
};

/// Parses an AGENT-HELLO payload; unknown keys are skipped. Errors: missing_version,
/// bad_max_frame_size (missing, not an integer or above 2^32-1), missing_capabilities (present
/// but not a STRING; a missing one reads as empty, as HAProxy tolerates), plus KV errors.
[[nodiscard]] error parse_agent_hello(bytes_view payload, agent_hello& out) noexcept;

}  // namespace spoa::protocol
