#pragma once
/// SPOP wire status codes carried by HAPROXY-DISCONNECT / AGENT-DISCONNECT
/// (protocol/README.md §7.2).

#include <cstdint>
#include <string_view>

namespace spoa::protocol {

enum class status_code : std::uint32_t {
    normal = 0,
    io_error = 1,
    timeout = 2,
    frame_too_big = 3,
    invalid_frame = 4,
    version_not_found = 5,
    max_frame_size_not_found = 6,
    capabilities_not_found = 7,
    unsupported_version = 8,
    bad_max_frame_size = 9,
    fragmentation_not_supported = 10,
    interlaced_frames = 11,
    frame_id_not_found = 12,
    resource_allocation = 13,
    unknown = 99,
};

/// The message HAProxy itself uses for each code; "an unknown error occurred" for anything else.
[[nodiscard]] std::string_view to_string(status_code code) noexcept;

}  // namespace spoa::protocol
