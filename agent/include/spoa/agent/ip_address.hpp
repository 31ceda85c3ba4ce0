#pragma once
/// An IPv4 or IPv6 address in network byte order, as SPOP carries them (protocol/README.md §4).

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace spoa {

class ip_address {
  public:
    enum class family : std::uint8_t { v4, v6 };

    constexpr ip_address() noexcept = default;
    [[nodiscard]] static ip_address v4(const std::array<std::uint8_t, 4>& bytes) noexcept;
    [[nodiscard]] static ip_address v6(const std::array<std::uint8_t, 16>& bytes) noexcept;
    /// Parses dotted IPv4 or textual IPv6 (no brackets, no zone); nullopt if neither.
    [[nodiscard]] static std::optional<ip_address> parse(std::string_view text);

    [[nodiscard]] family af() const noexcept { return family_; }
    [[nodiscard]] bool is_v4() const noexcept { return family_ == family::v4; }
    [[nodiscard]] bool is_v6() const noexcept { return family_ == family::v6; }
    /// 4 meaningful bytes for v4, 16 for v6.
    [[nodiscard]] const std::uint8_t* data() const noexcept { return bytes_.data(); }
    [[nodiscard]] std::size_t size() const noexcept { return is_v4() ? 4 : 16; }
    [[nodiscard]] std::array<std::uint8_t, 4> v4_bytes() const noexcept;
    [[nodiscard]] const std::array<std::uint8_t, 16>& v6_bytes() const noexcept { return bytes_; }

    /// Canonical text (inet_ntop).
    [[nodiscard]] std::string to_string() const;

    friend bool operator==(const ip_address& a, const ip_address& b) noexcept {
        return a.family_ == b.family_ && a.bytes_ == b.bytes_;
    }

  private:
    family family_ = family::v4;
    std::array<std::uint8_t, 16> bytes_{};
};

}  // namespace spoa
