#include "spoa/protocol/frame.hpp"

#include "spoa/protocol/byte_reader.hpp"

namespace spoa::protocol {

std::string_view to_string(frame_type type) noexcept {
    switch (type) {
        case frame_type::unset:
            return "UNSET";
        case frame_type::haproxy_hello:
            return "HAPROXY-HELLO";
        case frame_type::haproxy_disconnect:
            return "HAPROXY-DISCONNECT";
        case frame_type::notify:
            return "NOTIFY";
        case frame_type::agent_hello:
            return "AGENT-HELLO";
        case frame_type::agent_disconnect:
            return "AGENT-DISCONNECT";
        case frame_type::ack:
            return "ACK";
    }
    return "UNKNOWN";
}

bool is_known_frame_type(std::uint8_t type) noexcept {
    return type <= 3 || (type >= 101 && type <= 103);
}

frame_decode_result decode_frame(bytes_view input, std::uint32_t max_frame_size,
                                 frame& out) noexcept {
    byte_reader prefix(input);
    std::uint32_t len = 0;
    if (prefix.read_u32be(len) != error::none) return {decode_status::need_more, 0, error::none};
    // protocol/README.md §2 step 2: judge LEN before waiting for (or reserving room for) the body.
    if (len < min_frame_size) return {decode_status::error, 0, error::frame_too_short};
    if (len > max_frame_size) return {decode_status::error, 0, error::frame_too_big};
    const std::size_t total = length_prefix_size + len;
    if (input.size() < total) return {decode_status::need_more, total, error::none};

    byte_reader in(input.subspan(length_prefix_size, len));
    std::uint8_t type = 0;
    std::uint32_t flags = 0;
    // LEN >= 7 guarantees the type and the flags are there.
    (void)in.read_u8(type);
    (void)in.read_u32be(flags);
    if (!is_known_frame_type(type)) return {decode_status::error, 0, error::unknown_frame_type};
    std::uint64_t stream_id = 0;
    std::uint64_t frame_id = 0;
    if (const error e = in.read_varint(stream_id); e != error::none) {
        return {decode_status::error, 0, e};
    }
    if (const error e = in.read_varint(frame_id); e != error::none) {
        return {decode_status::error, 0, e};
    }
    // protocol/README.md §2: when ABORT is set FIN must be set too.
    if ((flags & frame_flags::abort) != 0 && (flags & frame_flags::fin) == 0) {
        return {decode_status::error, 0, error::bad_flags};
    }
    const auto ftype = static_cast<frame_type>(type);
    // protocol/README.md §2: HELLO and DISCONNECT carry ids 0 in both directions.
    const bool control = ftype == frame_type::haproxy_hello || ftype == frame_type::agent_hello ||
                         ftype == frame_type::haproxy_disconnect ||
                         ftype == frame_type::agent_disconnect;
    if (control && (stream_id != 0 || frame_id != 0)) {
        return {decode_status::error, 0, error::nonzero_ids};
    }
    out.type = ftype;
    out.flags = flags;
    out.stream_id = stream_id;
    out.frame_id = frame_id;
    out.payload = in.rest();
    return {decode_status::ok, total, error::none};
}

void frame_writer::begin(frame_type type, std::uint32_t flags, std::uint64_t stream_id,
                         std::uint64_t frame_id) {
    start_ = out_.size();
    std::uint8_t* p = out_.prepare(length_prefix_size + 5 + 2 * max_varint_size);
    std::size_t n = length_prefix_size;  // patched by finish()
    p[n++] = static_cast<std::uint8_t>(type);
    p[n++] = static_cast<std::uint8_t>(flags >> 24);
    p[n++] = static_cast<std::uint8_t>(flags >> 16);
    p[n++] = static_cast<std::uint8_t>(flags >> 8);
    p[n++] = static_cast<std::uint8_t>(flags);
    n += encode_varint(stream_id, p + n);
    n += encode_varint(frame_id, p + n);
    out_.commit(n);
}

bool frame_writer::finish(std::uint32_t max_frame_size) noexcept {
    const std::size_t len = frame_size();
    if (len > max_frame_size) {
        cancel();
        return false;
    }
    out_.patch_u32be(start_, static_cast<std::uint32_t>(len));
    return true;
}

}  // namespace spoa::protocol
