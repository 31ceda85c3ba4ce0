#pragma once
/// SPOP frames (protocol/README.md §2): [LEN:u32 BE][TYPE:u8][FLAGS:u32
/// BE][STREAM-ID][FRAME-ID][PAYLOAD].

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/error.hpp"

namespace spoa::protocol {

enum class frame_type : std::uint8_t {
    unset = 0,  ///< fragment continuation (HAProxy 2.6/3.0)
    haproxy_hello = 1,
    haproxy_disconnect = 2,
    notify = 3,
    agent_hello = 101,
    agent_disconnect = 102,
    ack = 103,
};

[[nodiscard]] std::string_view to_string(frame_type type) noexcept;
[[nodiscard]] bool is_known_frame_type(std::uint8_t type) noexcept;

namespace frame_flags {
inline constexpr std::uint32_t fin = 0x00000001;
inline constexpr std::uint32_t abort = 0x00000002;
}  // namespace frame_flags

/// Smallest LEN: type + flags + one-byte stream-id + one-byte frame-id.
inline constexpr std::uint32_t min_frame_size = 7;
/// Smallest max-frame-size either side may announce.
inline constexpr std::uint32_t min_max_frame_size = 256;
/// HAProxy's default and largest max-frame-size (tune.bufsize 16384 - 4).
inline constexpr std::uint32_t haproxy_default_max_frame_size = 16380;
/// Bytes of the length prefix.
inline constexpr std::size_t length_prefix_size = 4;

/// A decoded frame. `payload` views the caller's input.
struct frame {
    frame_type type = frame_type::unset;
    std::uint32_t flags = 0;
    std::uint64_t stream_id = 0;
    std::uint64_t frame_id = 0;
    bytes_view payload;

    [[nodiscard]] bool fin() const noexcept { return (flags & frame_flags::fin) != 0; }
    [[nodiscard]] bool aborted() const noexcept { return (flags & frame_flags::abort) != 0; }
};

enum class decode_status : std::uint8_t { ok, need_more, error };

struct frame_decode_result {
    decode_status status = decode_status::need_more;
    /// ok: bytes this frame occupies (prefix included). need_more: total bytes needed for the
    /// frame once the length is known, else 0.
    std::size_t size = 0;
    error err = error::none;
};

/// Decodes the first frame of `input`. LEN is checked against [min_frame_size, max_frame_size]
/// before anything else so a caller can refuse a huge length before buffering it.
/// Never allocates; `out.payload` points into `input`.
[[nodiscard]] frame_decode_result decode_frame(bytes_view input, std::uint32_t max_frame_size,
                                               frame& out) noexcept;

/// Writes frames into a reusable buffer: begin() reserves the length prefix and writes the
/// header, the caller appends the payload, finish() patches the length.
class frame_writer {
  public:
    explicit frame_writer(byte_buffer& out) noexcept : out_(out) {}

    void begin(frame_type type, std::uint32_t flags, std::uint64_t stream_id,
               std::uint64_t frame_id);
    /// Size of the frame so far, without the length prefix (what LEN will be).
    [[nodiscard]] std::size_t frame_size() const noexcept {
        return out_.size() - start_ - length_prefix_size;
    }
    /// Patches LEN. Returns false and removes the whole frame if LEN exceeds `max_frame_size`.
    [[nodiscard]] bool finish(std::uint32_t max_frame_size) noexcept;
    /// Removes the frame being written.
    void cancel() noexcept { out_.truncate(start_); }

    [[nodiscard]] byte_buffer& buffer() noexcept { return out_; }
    [[nodiscard]] const byte_buffer& buffer() const noexcept { return out_; }
    [[nodiscard]] std::size_t start() const noexcept { return start_; }

  private:
    byte_buffer& out_;
    std::size_t start_ = 0;
};

}  // namespace spoa::protocol
