#include "spoa/protocol/status_code.hpp"

namespace spoa::protocol {

std::string_view to_string(status_code code) noexcept {
    // HAProxy's own strings (protocol/README.md §7.2), so both sides log the same words.
    switch (code) {
        case status_code::normal:
            return "normal";
        case status_code::io_error:
            return "I/O error";
        case status_code::timeout:
            return "a timeout occurred";
        case status_code::frame_too_big:
            return "frame is too big";
        case status_code::invalid_frame:
            return "invalid frame received";
        case status_code::version_not_found:
            return "version value not found";
        case status_code::max_frame_size_not_found:
            return "max-frame-size value not found";
        case status_code::capabilities_not_found:
            return "capabilities value not found";
        case status_code::unsupported_version:
            return "unsupported version";
        case status_code::bad_max_frame_size:
            return "max-frame-size too big or too small";
        case status_code::fragmentation_not_supported:
            return "fragmentation not supported";
        case status_code::interlaced_frames:
            return "invalid interlaced frames";
        case status_code::frame_id_not_found:
            return "frame-id not found";
        case status_code::resource_allocation:
            return "resource allocation error";
        case status_code::unknown:
            break;
    }
    return "an unknown error occurred";
}

}  // namespace spoa::protocol
