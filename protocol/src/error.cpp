#include "spoa/protocol/error.hpp"

namespace spoa::protocol {

status_code to_status(error e) noexcept {
    switch (e) {
        case error::none:
            return status_code::normal;
        case error::frame_too_big:
        case error::reassembly_too_big:
            return status_code::frame_too_big;
        case error::missing_version:
            return status_code::version_not_found;
        case error::missing_max_frame_size:
            return status_code::max_frame_size_not_found;
        case error::missing_capabilities:
            return status_code::capabilities_not_found;
        case error::unsupported_version:
            return status_code::unsupported_version;
        case error::bad_max_frame_size:
            return status_code::bad_max_frame_size;
        case error::fragmentation_not_supported:
            return status_code::fragmentation_not_supported;
        case error::interlaced_fragments:
            return status_code::interlaced_frames;
        case error::fragment_without_start:
            return status_code::frame_id_not_found;
        case error::truncated:
        case error::varint_too_long:
        case error::varint_overflow:
        case error::frame_too_short:
        case error::unknown_frame_type:
        case error::bad_flags:
        case error::nonzero_ids:
        case error::unexpected_frame:
        case error::reserved_data_type:
        case error::empty_key:
        case error::bad_action:
        case error::bad_scope:
        case error::bad_status_code:
        case error::message_too_long:
            return status_code::invalid_frame;
    }
    return status_code::unknown;
}

std::string_view to_string(error e) noexcept {
    switch (e) {
        case error::none:
            return "no error";
        case error::truncated:
            return "field runs past the end of the frame";
        case error::varint_too_long:
            return "varint longer than 10 bytes";
        case error::varint_overflow:
            return "varint above 2^64-1";
        case error::frame_too_short:
            return "frame length below 7";
        case error::frame_too_big:
            return "frame length above max-frame-size";
        case error::unknown_frame_type:
            return "unknown frame type";
        case error::bad_flags:
            return "ABORT flag without FIN";
        case error::nonzero_ids:
            return "HELLO/DISCONNECT with non-zero stream-id or frame-id";
        case error::unexpected_frame:
            return "frame type not expected in this state";
        case error::reserved_data_type:
            return "reserved data type";
        case error::empty_key:
            return "empty key in KV-LIST";
        case error::bad_action:
            return "unknown action type or wrong argument count";
        case error::bad_scope:
            return "unknown variable scope";
        case error::missing_version:
            return "supported-versions missing";
        case error::missing_max_frame_size:
            return "max-frame-size missing";
        case error::missing_capabilities:
            return "capabilities missing";
        case error::unsupported_version:
            return "no supported version (2.0 wanted)";
        case error::bad_max_frame_size:
            return "max-frame-size invalid or below 256";
        case error::fragmentation_not_supported:
            return "fragmented frame but fragmentation not negotiated";
        case error::interlaced_fragments:
            return "frame interlaced with a fragmented NOTIFY";
        case error::fragment_without_start:
            return "continuation frame without a fragmented NOTIFY";
        case error::reassembly_too_big:
            return "reassembled payload above the limit";
        case error::bad_status_code:
            return "status-code missing or not an integer";
        case error::message_too_long:
            return "DISCONNECT message longer than 255 bytes";
    }
    return "unknown error";
}

}  // namespace spoa::protocol
