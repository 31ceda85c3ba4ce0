#pragma once
// Shared helpers for the codec tests: hex conversion, the example frames of
// protocol/README.md §11.1, and small
// wrappers that keep test bodies about behaviour rather than plumbing.

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/frame.hpp"

namespace spoa::test {

using bytes = std::vector<std::uint8_t>;

/// Parses hex text; spaces and newlines are ignored. Throws on anything else so a typo in a
/// test vector fails loudly instead of silently producing other bytes.
inline bytes from_hex(std::string_view text) {
    const auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    bytes out;
    int high = -1;
    for (const char c : text) {
        if (c == ' ' || c == '\n' || c == '\t') continue;
        const int v = nibble(c);
        if (v < 0) throw std::invalid_argument("bad hex digit");
        if (high < 0) {
            high = v;
        } else {
            out.push_back(static_cast<std::uint8_t>(high << 4 | v));
            high = -1;
        }
    }
    if (high >= 0) throw std::invalid_argument("odd number of hex digits");
    return out;
}

/// Lower-case hex with a space between bytes (readable in Catch2 failure messages).
inline std::string to_hex(protocol::bytes_view b) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < b.size(); ++i) {
        if (i != 0) out += ' ';
        out += digits[b[i] >> 4];
        out += digits[b[i] & 0x0F];
    }
    return out;
}

inline std::string to_hex(const bytes& b) {
    return to_hex(protocol::bytes_view(b));
}
inline std::string to_hex(const protocol::byte_buffer& b) {
    return to_hex(b.view());
}

inline protocol::bytes_view view(const bytes& b) noexcept {
    return {b.data(), b.size()};
}

inline bytes concat(std::initializer_list<bytes> parts) {
    bytes out;
    for (const bytes& p : parts)
        out.insert(out.end(), p.begin(), p.end());
    return out;
}

inline bytes to_bytes(std::string_view s) {
    return bytes(s.begin(), s.end());
}

/// One golden vector of protocol/README.md §11.1 (full frame, length prefix included).
struct spec_vector {
    const char* name;
    const char* hex;
    std::size_t total_size;  ///< "(N bytes)" in its heading
};

// The same hex as protocol/README.md §11.1 (tests/fuzz/make_corpus.py reads it from there).
inline constexpr const char* v1_hex =
    "00 00 00 4e 01 00 00 00 01 00 00 12 73 75 70 70"
    "6f 72 74 65 64 2d 76 65 72 73 69 6f 6e 73 08 03"
    "32 2e 30 0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69"
    "7a 65 03 fc f0 06 0c 63 61 70 61 62 69 6c 69 74"
    "69 65 73 08 00 0b 68 65 61 6c 74 68 63 68 65 63"
    "6b 11";
inline constexpr const char* v2_hex =
    "00 00 00 81 01 00 00 00 01 00 00 12 73 75 70 70"
    "6f 72 74 65 64 2d 76 65 72 73 69 6f 6e 73 08 03"
    "32 2e 30 0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69"
    "7a 65 03 fc f0 06 0c 63 61 70 61 62 69 6c 69 74"
    "69 65 73 08 10 70 69 70 65 6c 69 6e 69 6e 67 2c"
    "61 73 79 6e 63 09 65 6e 67 69 6e 65 2d 69 64 08"
    "24 38 65 36 61 35 64 32 63 2d 31 66 33 62 2d 34"
    "63 37 64 2d 39 61 30 65 2d 32 62 34 66 36 64 38"
    "63 30 61 31 65";
inline constexpr const char* v3_hex =
    "00 00 00 7b 01 00 00 00 01 00 00 12 73 75 70 70"
    "6f 72 74 65 64 2d 76 65 72 73 69 6f 6e 73 08 03"
    "32 2e 30 0e 6d 61 78 2d 66 72 61 6d 65 2d 73 69"
    "7a 65 03 fc f0 06 0c 63 61 70 61 62 69 6c 69 74"
    "69 65 73 08 0a 70 69 70 65 6c 69 6e 69 6e 67 09"
    "65 6e 67 69 6e 65 2d 69 64 08 24 38 65 36 61 35"
    "64 32 63 2d 31 66 33 62 2d 34 63 37 64 2d 39 61"
    "30 65 2d 32 62 34 66 36 64 38 63 30 61 31 65";
inline constexpr const char* v4_hex =
    "00 00 00 40 65 00 00 00 01 00 00 07 76 65 72 73"
    "69 6f 6e 08 03 32 2e 30 0e 6d 61 78 2d 66 72 61"
    "6d 65 2d 73 69 7a 65 03 fc f0 06 0c 63 61 70 61"
    "62 69 6c 69 74 69 65 73 08 0a 70 69 70 65 6c 69"
    "6e 69 6e 67";
inline constexpr const char* v5_hex =
    "00 00 00 9a 03 00 00 00 01 03 01 0f 63 68 65 63"
    "6b 2d 63 6c 69 65 6e 74 2d 69 70 05 02 69 70 06"
    "c0 a8 01 0a 03 69 70 36 07 20 01 0d b8 00 00 00"
    "00 00 00 00 00 00 00 00 01 04 70 6f 72 74 04 fb"
    "0c 03 73 73 6c 11 07 6d 69 73 73 69 6e 67 00 0d"
    "63 68 65 63 6b 2d 72 65 71 75 65 73 74 06 00 08"
    "03 47 45 54 04 70 61 74 68 08 06 2f 6c 6f 67 69"
    "6e 04 62 6f 64 79 09 04 00 01 fe ff 05 64 65 6c"
    "74 61 04 ff f0 fe fe fe fe fe fe fe 0e 03 62 69"
    "67 05 f0 f1 fe fe 7e 05 70 6c 61 69 6e 01";
inline constexpr const char* v6_hex =
    "00 00 00 4f 67 00 00 00 01 03 01 01 03 01 08 69"
    "70 5f 73 63 6f 72 65 02 2a 01 03 02 07 76 65 72"
    "64 69 63 74 08 05 61 6c 6c 6f 77 01 03 03 04 66"
    "6c 61 67 11 01 03 04 04 70 65 65 72 06 0a 00 00"
    "01 01 03 00 04 68 69 74 73 05 f8 2f 02 02 02 03"
    "6f 6c 64";
inline constexpr const char* v7_hex = "00 00 00 07 67 00 00 00 01 03 01";
inline constexpr const char* v8_hex =
    "00 00 00 25 02 00 00 00 01 00 00 0b 73 74 61 74"
    "75 73 2d 63 6f 64 65 03 00 07 6d 65 73 73 61 67"
    "65 08 06 6e 6f 72 6d 61 6c";
inline constexpr const char* v9_hex =
    "00 00 00 31 02 00 00 00 01 00 00 0b 73 74 61 74"
    "75 73 2d 63 6f 64 65 03 02 07 6d 65 73 73 61 67"
    "65 08 12 61 20 74 69 6d 65 6f 75 74 20 6f 63 63"
    "75 72 72 65 64";
inline constexpr const char* v10_hex =
    "00 00 00 32 66 00 00 00 01 00 00 0b 73 74 61 74"
    "75 73 2d 63 6f 64 65 03 08 07 6d 65 73 73 61 67"
    "65 08 13 75 6e 73 75 70 70 6f 72 74 65 64 20 76"
    "65 72 73 69 6f 6e";

inline constexpr std::array<spec_vector, 10> spec_vectors{{
    {"V1 HAPROXY-HELLO health check", v1_hex, 82},
    {"V2 HAPROXY-HELLO 2.6 defaults", v2_hex, 133},
    {"V3 HAPROXY-HELLO 3.1+ defaults", v3_hex, 127},
    {"V4 AGENT-HELLO", v4_hex, 68},
    {"V5 NOTIFY", v5_hex, 158},
    {"V6 ACK", v6_hex, 83},
    {"V7 empty ACK", v7_hex, 11},
    {"V8 HAPROXY-DISCONNECT normal", v8_hex, 41},
    {"V9 HAPROXY-DISCONNECT timeout", v9_hex, 53},
    {"V10 AGENT-DISCONNECT unsupported version", v10_hex, 54},
}};

/// Decodes a buffer that must hold exactly one valid frame (throws otherwise, so a broken
/// fixture shows up as a test error rather than as a confusing later failure).
inline protocol::frame decode_one(protocol::bytes_view in,
                                  std::uint32_t max_frame_size = 0xFFFFFFFFu) {
    protocol::frame f;
    const auto r = protocol::decode_frame(in, max_frame_size, f);
    if (r.status != protocol::decode_status::ok || r.size != in.size())
        throw std::runtime_error("fixture is not exactly one valid frame");
    return f;
}

/// One whole frame with the given header and payload, as the codec's frame_writer writes it.
inline bytes make_frame(protocol::frame_type type, std::uint32_t flags, std::uint64_t sid,
                        std::uint64_t fid, protocol::bytes_view payload = {}) {
    protocol::byte_buffer out;
    protocol::frame_writer w(out);
    w.begin(type, flags, sid, fid);
    out.append(payload);
    if (!w.finish(0xFFFFFFFFu)) throw std::runtime_error("finish");
    return bytes(out.data(), out.data() + out.size());
}

}  // namespace spoa::test
