#pragma once
/// Byte views shared by the whole codec.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace spoa::protocol {

/// A read-only view over bytes owned by someone else (usually the connection's read buffer).
using bytes_view = std::span<const std::uint8_t>;

/// Reinterprets raw bytes as text without copying (SPOP strings carry no encoding guarantee).
[[nodiscard]] inline std::string_view as_string_view(bytes_view bytes) noexcept {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

/// Views text as bytes without copying.
[[nodiscard]] inline bytes_view as_bytes_view(std::string_view text) noexcept {
    return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

}  // namespace spoa::protocol
