#pragma once
/// The recording file of `spoa-agent --record` (read by `spoa-cli replay`): every complete
/// NOTIFY the agent received (after fragment reassembly) and every ACK it sent, as written.
/// Pure encode/decode; the agent's writer is agent/src/frame_recorder.hpp.
///
/// Layout, all integers big-endian:
///
///     file   = magic record*
///     magic  = "SPOAREC" 0x01                          8 bytes, the last one is the version
///     record = kind:u8 flags:u8 reserved:u16 length:u32
///              connection-id:u64 stream-id:u64 frame-id:u64 unix-time-ns:u64
///              payload                                 `length` bytes
///
/// kind 1 is a NOTIFY (payload: its messages, protocol/README.md §5.2), kind 2 an ACK (payload:
/// its actions, §5.3). flags and reserved are written as 0 and ignored when read. The ids are
/// the agent's connection id and the frame's SPOP ids, so an ACK pairs with the NOTIFY that has
/// the same three; the time is when the agent read or wrote the frame.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/frame.hpp"

namespace spoa::protocol {

inline constexpr std::array<std::uint8_t, 8> recording_magic = {'S', 'P', 'O', 'A',
                                                                'R', 'E', 'C', 1};
inline constexpr std::size_t record_header_size = 40;

enum class record_kind : std::uint8_t {
    notify = 1,
    ack = 2,
};

[[nodiscard]] std::string_view to_string(record_kind kind) noexcept;

struct record_header {
    record_kind kind = record_kind::notify;
    std::uint32_t payload_size = 0;
    std::uint64_t connection_id = 0;
    std::uint64_t stream_id = 0;
    std::uint64_t frame_id = 0;
    std::uint64_t unix_time_ns = 0;
};

/// A decoded record; `payload` views the caller's input.
struct record {
    record_header header;
    bytes_view payload;
};

enum class record_error : std::uint8_t {
    none,
    unknown_kind,  ///< kind byte other than 1 or 2
};

[[nodiscard]] std::string_view to_string(record_error e) noexcept;

struct record_decode_result {
    decode_status status = decode_status::need_more;
    /// ok: bytes the record occupies (header and payload).
    std::size_t size = 0;
    record_error err = record_error::none;
};

/// Writes the 40 header bytes of `h` (flags and reserved as 0).
void encode_record_header(const record_header& h,
                          std::span<std::uint8_t, record_header_size> out) noexcept;

/// True when `file_start` begins with recording_magic.
[[nodiscard]] bool has_recording_magic(bytes_view file_start) noexcept;

/// Decodes the first record of `input` (the bytes after the magic, or after earlier records).
/// Never allocates; need_more while the header or payload is incomplete.
[[nodiscard]] record_decode_result decode_record(bytes_view input, record& out) noexcept;

}  // namespace spoa::protocol
