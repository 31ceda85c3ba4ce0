#pragma once
/// A growable output buffer that encoders append to and callers reuse: `clear()` keeps the
/// capacity, so a connection that reuses one buffer stops allocating once it has warmed up.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/varint.hpp"

namespace spoa::protocol {

class byte_buffer {
  public:
    byte_buffer() noexcept = default;
    explicit byte_buffer(std::size_t capacity) { reserve(capacity); }
    byte_buffer(const byte_buffer&) = delete;
    byte_buffer& operator=(const byte_buffer&) = delete;
    byte_buffer(byte_buffer&& other) noexcept { swap(other); }
    byte_buffer& operator=(byte_buffer&& other) noexcept {
        byte_buffer tmp(std::move(other));
        swap(tmp);
        return *this;
    }

    [[nodiscard]] std::uint8_t* data() noexcept { return data_.get(); }
    [[nodiscard]] const std::uint8_t* data() const noexcept { return data_.get(); }
    [[nodiscard]] std::size_t size() const noexcept { return size_; }
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
    [[nodiscard]] bytes_view view() const noexcept { return {data_.get(), size_}; }

    void clear() noexcept { size_ = 0; }
    /// Shrinks to `size` bytes (used to roll back a partially written frame or action).
    void truncate(std::size_t size) noexcept {
        if (size < size_) size_ = size;
    }
    /// Drops the first `n` bytes, moving the rest to the front.
    void consume_front(std::size_t n) noexcept {
        if (n >= size_) {
            size_ = 0;
            return;
        }
        std::memmove(data_.get(), data_.get() + n, size_ - n);
        size_ -= n;
    }

    void reserve(std::size_t capacity) {
        if (capacity <= capacity_) return;
        auto grown = std::make_unique_for_overwrite<std::uint8_t[]>(capacity);
        if (size_ != 0) std::memcpy(grown.get(), data_.get(), size_);
        data_ = std::move(grown);
        capacity_ = capacity;
    }

    /// Makes room for `n` more bytes and returns where they go; `commit(n)` makes them part of
    /// the contents.
    std::uint8_t* prepare(std::size_t n) {
        if (capacity_ - size_ < n) reserve(grow_to(size_ + n));
        return data_.get() + size_;
    }
    void commit(std::size_t n) noexcept { size_ += n; }

    void append(const void* bytes, std::size_t n) {
        if (n == 0) return;
        std::memcpy(prepare(n), bytes, n);
        size_ += n;
    }
    void append(bytes_view bytes) { append(bytes.data(), bytes.size()); }
    void append(std::string_view text) { append(text.data(), text.size()); }
    void put_u8(std::uint8_t value) {
        *prepare(1) = value;
        ++size_;
    }
    void put_u32be(std::uint32_t value) {
        std::uint8_t* p = prepare(4);
        p[0] = static_cast<std::uint8_t>(value >> 24);
        p[1] = static_cast<std::uint8_t>(value >> 16);
        p[2] = static_cast<std::uint8_t>(value >> 8);
        p[3] = static_cast<std::uint8_t>(value);
        size_ += 4;
    }
    void put_varint(std::uint64_t value) {
        size_ += encode_varint(value, prepare(max_varint_size));
    }
    /// Varint length then the bytes (SPOP strings, names, keys).
    void put_length_prefixed(std::string_view text) {
        put_varint(text.size());
        append(text);
    }
    /// Overwrites 4 bytes already written at `offset`.
    void patch_u32be(std::size_t offset, std::uint32_t value) noexcept {
        std::uint8_t* p = data_.get() + offset;
        p[0] = static_cast<std::uint8_t>(value >> 24);
        p[1] = static_cast<std::uint8_t>(value >> 16);
        p[2] = static_cast<std::uint8_t>(value >> 8);
        p[3] = static_cast<std::uint8_t>(value);
    }

    void swap(byte_buffer& other) noexcept {
        std::swap(data_, other.data_);
        std::swap(size_, other.size_);
        std::swap(capacity_, other.capacity_);
    }

  private:
    [[nodiscard]] std::size_t grow_to(std::size_t needed) const noexcept {
        std::size_t next = capacity_ < 256 ? 256 : capacity_ * 2;
        return next < needed ? needed : next;
    }

    std::unique_ptr<std::uint8_t[]> data_;
    std::size_t size_ = 0;
    std::size_t capacity_ = 0;
};

}  // namespace spoa::protocol
