#include "spoa/protocol/recording.hpp"

#include <algorithm>

#include "spoa/protocol/byte_reader.hpp"

namespace spoa::protocol {
namespace {

std::uint8_t* put_be(std::uint8_t* p, std::uint64_t v, std::size_t bytes) noexcept {
    for (std::size_t i = 0; i < bytes; ++i)
        p[i] = static_cast<std::uint8_t>(v >> (8 * (bytes - 1 - i)));
    return p + bytes;
}

error read_u64be(byte_reader& in, std::uint64_t& out) noexcept {
    std::uint32_t high = 0;
    std::uint32_t low = 0;
    if (const error e = in.read_u32be(high); e != error::none) return e;
    if (const error e = in.read_u32be(low); e != error::none) return e;
    out = (std::uint64_t{high} << 32) | low;
    return error::none;
}

}  // namespace

std::string_view to_string(record_kind kind) noexcept {
    switch (kind) {
        case record_kind::notify:
            return "NOTIFY";
        case record_kind::ack:
            return "ACK";
    }
    return "?";
}

std::string_view to_string(record_error e) noexcept {
    switch (e) {
        case record_error::none:
            return "none";
        case record_error::unknown_kind:
            return "unknown record kind";
    }
    return "?";
}

void encode_record_header(const record_header& h,
                          std::span<std::uint8_t, record_header_size> out) noexcept {
    std::uint8_t* p = out.data();
    p = put_be(p, static_cast<std::uint8_t>(h.kind), 1);
    p = put_be(p, 0, 1);  // flags
    p = put_be(p, 0, 2);  // reserved
    p = put_be(p, h.payload_size, 4);
    p = put_be(p, h.connection_id, 8);
    p = put_be(p, h.stream_id, 8);
    p = put_be(p, h.frame_id, 8);
    (void)put_be(p, h.unix_time_ns, 8);
}

bool has_recording_magic(bytes_view file_start) noexcept {
    return file_start.size() >= recording_magic.size() &&
           std::equal(recording_magic.begin(), recording_magic.end(), file_start.begin());
}

record_decode_result decode_record(bytes_view input, record& out) noexcept {
    if (input.size() < record_header_size) return {decode_status::need_more, 0};
    byte_reader in(input);
    std::uint8_t kind = 0;
    std::uint8_t flags = 0;
    bytes_view reserved;
    std::uint32_t length = 0;
    record_header h;
    // The size check above covers every header field: these reads cannot fail.
    (void)in.read_u8(kind);
    (void)in.read_u8(flags);
    (void)in.read_bytes(2, reserved);
    (void)in.read_u32be(length);
    (void)read_u64be(in, h.connection_id);
    (void)read_u64be(in, h.stream_id);
    (void)read_u64be(in, h.frame_id);
    (void)read_u64be(in, h.unix_time_ns);
    if (kind != static_cast<std::uint8_t>(record_kind::notify) &&
        kind != static_cast<std::uint8_t>(record_kind::ack)) {
        return {decode_status::error, 0, record_error::unknown_kind};
    }
    bytes_view payload;
    if (in.read_bytes(length, payload) != error::none) {
        return {decode_status::need_more, record_header_size + std::size_t{length}};
    }
    h.kind = static_cast<record_kind>(kind);
    h.payload_size = length;
    out = {h, payload};
    return {decode_status::ok, record_header_size + std::size_t{length}};
}

}  // namespace spoa::protocol
