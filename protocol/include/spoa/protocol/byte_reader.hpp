#pragma once
/// The one place that indexes raw input. Every read checks bounds, returns an error and moves the
/// cursor only on success, so a failed read leaves the reader where it was.

#include <cstdint>
#include <string_view>

#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/error.hpp"
#include "spoa/protocol/varint.hpp"

namespace spoa::protocol {

class byte_reader {
  public:
    byte_reader() noexcept = default;
    explicit byte_reader(bytes_view bytes) noexcept
        : p_(bytes.data()), end_(bytes.data() + bytes.size()) {}

    [[nodiscard]] std::size_t remaining() const noexcept {
        return static_cast<std::size_t>(end_ - p_);
    }
    [[nodiscard]] bool empty() const noexcept { return p_ == end_; }
    [[nodiscard]] bytes_view rest() const noexcept { return {p_, remaining()}; }
    [[nodiscard]] const std::uint8_t* position() const noexcept { return p_; }

    [[nodiscard]] error read_u8(std::uint8_t& out) noexcept {
        if (p_ == end_) return error::truncated;
        out = *p_++;
        return error::none;
    }

    [[nodiscard]] error read_u32be(std::uint32_t& out) noexcept {
        if (remaining() < 4) return error::truncated;
        out = (std::uint32_t{p_[0]} << 24) | (std::uint32_t{p_[1]} << 16) |
              (std::uint32_t{p_[2]} << 8) | std::uint32_t{p_[3]};
        p_ += 4;
        return error::none;
    }

    [[nodiscard]] error read_varint(std::uint64_t& out) noexcept {
        std::size_t size = 0;
        const error e = decode_varint(p_, end_, out, size);
        if (e == error::none) p_ += size;
        return e;
    }

    [[nodiscard]] error read_bytes(std::size_t n, bytes_view& out) noexcept {
        if (remaining() < n) return error::truncated;
        out = {p_, n};
        p_ += n;
        return error::none;
    }

    /// Varint length followed by that many bytes (SPOP strings, names and keys).
    [[nodiscard]] error read_length_prefixed(bytes_view& out) noexcept {
        const std::uint8_t* const start = p_;
        std::uint64_t n = 0;
        if (const error e = read_varint(n); e != error::none) return e;
        // Compare in 64 bits before narrowing: a huge length must not wrap into a small one.
        if (n > remaining()) {
            p_ = start;
            return error::truncated;
        }
        out = {p_, static_cast<std::size_t>(n)};
        p_ += n;
        return error::none;
    }

    [[nodiscard]] error read_string(std::string_view& out) noexcept {
        bytes_view bytes;
        const error e = read_length_prefixed(bytes);
        if (e == error::none) out = as_string_view(bytes);
        return e;
    }

  private:
    const std::uint8_t* p_ = nullptr;
    const std::uint8_t* end_ = nullptr;
};

}  // namespace spoa::protocol
