#include "spoa/protocol/fragment_assembler.hpp"

namespace spoa::protocol {

fragment_assembler::result fragment_assembler::feed(const frame& f) {
    if (f.type == frame_type::notify) {
        // A new NOTIFY while one is open: HAProxy sends nothing else until the fragmented one
        // is finished (protocol/README.md §9), so this is an interlaced frame.
        if (open_) return {outcome::failed, error::interlaced_fragments};
        if (f.payload.size() > max_payload_) return {outcome::failed, error::reassembly_too_big};
        buffer_.clear();
        buffer_.append(f.payload);
        stream_id_ = f.stream_id;
        frame_id_ = f.frame_id;
        open_ = true;
        if (f.fin()) {
            open_ = false;
            return {outcome::complete, error::none};
        }
        return {outcome::pending, error::none};
    }
    if (f.type != frame_type::unset) return {outcome::failed, error::unexpected_frame};
    if (!open_) return {outcome::failed, error::fragment_without_start};
    if (f.stream_id != stream_id_ || f.frame_id != frame_id_) {
        return {outcome::failed, error::interlaced_fragments};
    }
    if (f.aborted()) {
        reset();
        return {outcome::aborted, error::none};
    }
    if (f.payload.size() > max_payload_ - buffer_.size()) {
        reset();
        return {outcome::failed, error::reassembly_too_big};
    }
    buffer_.append(f.payload);
    if (f.fin()) {
        open_ = false;
        return {outcome::complete, error::none};
    }
    return {outcome::pending, error::none};
}

}  // namespace spoa::protocol
