#include "spoa/agent/ip_address.hpp"

#include <arpa/inet.h>

#include <cstring>

namespace spoa {

ip_address ip_address::v4(const std::array<std::uint8_t, 4>& bytes) noexcept {
    ip_address a;
    a.family_ = family::v4;
    std::memcpy(a.bytes_.data(), bytes.data(), 4);
    return a;
}

ip_address ip_address::v6(const std::array<std::uint8_t, 16>& bytes) noexcept {
    ip_address a;
    a.family_ = family::v6;
    a.bytes_ = bytes;
    return a;
}

std::optional<ip_address> ip_address::parse(std::string_view text) {
    if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
    char buf[INET6_ADDRSTRLEN];
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';
    std::array<std::uint8_t, 16> bytes{};
    if (::inet_pton(AF_INET, buf, bytes.data()) == 1) {
        return v4({bytes[0], bytes[1], bytes[2], bytes[3]});
    }
    if (::inet_pton(AF_INET6, buf, bytes.data()) == 1) return v6(bytes);
    return std::nullopt;
}

std::array<std::uint8_t, 4> ip_address::v4_bytes() const noexcept {
    return {bytes_[0], bytes_[1], bytes_[2], bytes_[3]};
}

std::string ip_address::to_string() const {
    char buf[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof buf);
    return buf;
}

}  // namespace spoa
