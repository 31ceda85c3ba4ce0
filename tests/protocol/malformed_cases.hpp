#pragma once
// The malformed-input table (see malformed_test.cpp); the guard-page test replays it too.

#include <cstdint>
#include <string>
#include <vector>

#include "spoa/protocol/error.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/status_code.hpp"
#include "test_support.hpp"

namespace spoa::test {

struct malformed_case {
    std::string name;
    bytes input;
    protocol::error expected;
    protocol::status_code status;
    std::size_t frames_before = 0;  ///< valid frames preceding the bad one
    bool header_error = false;      ///< decided by decode_frame alone
    std::uint32_t max_frame_size = protocol::haproxy_default_max_frame_size;
};

/// `body_hex` is everything after the length prefix (type, flags, ids, payload); the prefix is
/// computed so the frame is well delimited and only the tested field is wrong.
inline bytes with_len(const std::string& body_hex) {
    const bytes body = from_hex(body_hex);
    const auto n = static_cast<std::uint32_t>(body.size());
    bytes out{static_cast<std::uint8_t>(n >> 24), static_cast<std::uint8_t>(n >> 16),
              static_cast<std::uint8_t>(n >> 8), static_cast<std::uint8_t>(n)};
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

inline std::string hex_of(const std::string& text) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (const unsigned char c : text) {
        out += digits[c >> 4];
        out += digits[c & 0x0F];
        out += ' ';
    }
    return out;
}

// Frequently used pieces (hex).
inline const std::string notify_fin = "03 00 00 00 01 01 01 ";    // NOTIFY, FIN, sid 1, fid 1
inline const std::string notify_nofin = "03 00 00 00 00 01 01 ";  // NOTIFY, no FIN
inline const std::string hello_hdr = "01 00 00 00 01 00 00 ";     // HAPROXY-HELLO, FIN, ids 0
inline const std::string ack_hdr = "67 00 00 00 01 01 01 ";       // ACK, FIN, sid 1, fid 1
inline const std::string disc_hdr = "02 00 00 00 01 00 00 ";      // HAPROXY-DISCONNECT
// KV pairs of a valid HELLO payload.
inline const std::string kv_versions = "12 " + hex_of("supported-versions") + "08 03 32 2e 30 ";
inline const std::string kv_mfs = "0e " + hex_of("max-frame-size") + "03 fc f0 06 ";
inline const std::string kv_caps = "0c " + hex_of("capabilities") + "08 00 ";

inline const std::vector<malformed_case>& malformed_cases() {
    using protocol::error;
    using protocol::status_code;
    static const std::vector<malformed_case> cases = [] {
        std::vector<malformed_case> c;
        const auto add = [&c](std::string name, bytes input, error e, status_code s,
                              std::size_t before = 0, bool header = false,
                              std::uint32_t mfs = protocol::haproxy_default_max_frame_size) {
            c.push_back({std::move(name), std::move(input), e, s, before, header, mfs});
        };

        // --- frame header (decode_frame) ---
        for (unsigned len = 0; len < 7; ++len) {
            add("LEN " + std::to_string(len) + " below the 7-byte minimum",
                from_hex("00 00 00 0" + std::to_string(len) + " 03 00 00 00 01 01 01"),
                error::frame_too_short, status_code::invalid_frame, 0, true);
        }
        add("LEN 257 over a 256 limit (prefix only)", from_hex("00 00 01 01"), error::frame_too_big,
            status_code::frame_too_big, 0, true, 256);
        add("LEN 16381 over the default limit", from_hex("00 00 3f fd 03 00 00 00 01"),
            error::frame_too_big, status_code::frame_too_big, 0, true);
        add("LEN 0xffffffff", from_hex("ff ff ff ff"), error::frame_too_big,
            status_code::frame_too_big, 0, true);
        for (const char* type : {"04", "64", "68", "ff"}) {
            add(std::string("unknown frame type 0x") + type,
                with_len(std::string(type) + " 00 00 00 01 01 01"), error::unknown_frame_type,
                status_code::invalid_frame, 0, true);
        }
        add("stream-id varint truncated by LEN", with_len("03 00 00 00 01 f0 80"), error::truncated,
            status_code::invalid_frame, 0, true);
        add("frame-id missing", with_len("03 00 00 00 01 f0 80 00"), error::truncated,
            status_code::invalid_frame, 0, true);
        add("stream-id 11-byte varint",
            with_len("03 00 00 00 01 f0 80 80 80 80 80 80 80 80 80 00 01"), error::varint_too_long,
            status_code::invalid_frame, 0, true);
        add("frame-id varint overflow", with_len("03 00 00 00 01 01 ff f0 fe fe fe fe fe fe fe 0f"),
            error::varint_overflow, status_code::invalid_frame, 0, true);
        add("ABORT without FIN", with_len("00 00 00 00 02 01 01"), error::bad_flags,
            status_code::invalid_frame, 0, true);
        add("HAPROXY-HELLO with stream-id 1", with_len("01 00 00 00 01 01 00 " + kv_versions),
            error::nonzero_ids, status_code::invalid_frame, 0, true);
        add("HAPROXY-HELLO with frame-id 1", with_len("01 00 00 00 01 00 01"), error::nonzero_ids,
            status_code::invalid_frame, 0, true);
        add("AGENT-HELLO with stream-id 240 (2-byte varint)", with_len("65 00 00 00 01 f0 00 00"),
            error::nonzero_ids, status_code::invalid_frame, 0, true);
        add("HAPROXY-DISCONNECT with frame-id 3", with_len("02 00 00 00 01 00 03"),
            error::nonzero_ids, status_code::invalid_frame, 0, true);
        add("AGENT-DISCONNECT with ids 1/1", with_len("66 00 00 00 01 01 01"), error::nonzero_ids,
            status_code::invalid_frame, 0, true);

        // --- NOTIFY payloads ---
        for (const char* t : {"0a", "0b", "0c", "0d", "0e", "0f", "1a", "ff"}) {
            add(std::string("NOTIFY arg of reserved data type 0x") + t,
                with_len(notify_fin + "01 6d 01 01 61 " + t), error::reserved_data_type,
                status_code::invalid_frame);
        }
        add("NOTIFY string length past the end",
            with_len(notify_fin + "01 6d 01 01 61 08 05 41 42"), error::truncated,
            status_code::invalid_frame);
        add("NOTIFY message name past the end", with_len(notify_fin + "05 6d 6d"), error::truncated,
            status_code::invalid_frame);
        add("NOTIFY nb-args missing", with_len(notify_fin + "01 6d"), error::truncated,
            status_code::invalid_frame);
        add("NOTIFY nb-args 3 with 1 argument", with_len(notify_fin + "01 6d 03 01 61 00"),
            error::truncated, status_code::invalid_frame);
        add("NOTIFY argument without a value", with_len(notify_fin + "01 6d 01 01 61"),
            error::truncated, status_code::invalid_frame);
        add("NOTIFY IPV6 cut short", with_len(notify_fin + "01 6d 01 00 07 20 01 0d b8"),
            error::truncated, status_code::invalid_frame);
        add("NOTIFY INT64 11-byte varint",
            with_len(notify_fin + "01 6d 01 00 04 ff ff ff ff ff ff ff ff ff ff 01"),
            error::varint_too_long, status_code::invalid_frame);
        add("NOTIFY UINT64 overflow",
            with_len(notify_fin + "01 6d 01 00 05 ff f0 fe fe fe fe fe fe fe 0f"),
            error::varint_overflow, status_code::invalid_frame);
        add("NOTIFY string length 2^64-1",
            with_len(notify_fin + "01 6d 01 00 08 ff f0 fe fe fe fe fe fe fe 0e 41"),
            error::truncated, status_code::invalid_frame);

        // --- KV lists (HELLO, DISCONNECT) ---
        for (const char* t : {"0a", "0b", "0c", "0d", "0e", "0f", "2b"}) {
            add(std::string("HELLO value of reserved data type 0x") + t,
                with_len(hello_hdr + "01 6b " + t), error::reserved_data_type,
                status_code::invalid_frame);
        }
        add("HELLO reserved type after valid pairs",
            with_len(hello_hdr + kv_versions + kv_mfs + "01 6b 3f"), error::reserved_data_type,
            status_code::invalid_frame);
        add("AGENT-HELLO value of reserved data type 0x0a",
            with_len("65 00 00 00 01 00 00 01 6b 0a"), error::reserved_data_type,
            status_code::invalid_frame);
        add("DISCONNECT value of reserved data type 0x0c", with_len(disc_hdr + "01 6b 0c"),
            error::reserved_data_type, status_code::invalid_frame);
        add("HELLO empty key", with_len(hello_hdr + "00 08 00"), error::empty_key,
            status_code::invalid_frame);
        add("HELLO key past the end", with_len(hello_hdr + "09 6b 6b"), error::truncated,
            status_code::invalid_frame);
        add("HELLO key without a value", with_len(hello_hdr + "01 6b"), error::truncated,
            status_code::invalid_frame);
        add("HELLO string value past the end", with_len(hello_hdr + "01 6b 08 03 32 2e"),
            error::truncated, status_code::invalid_frame);
        add("DISCONNECT IPV4 cut short", with_len(disc_hdr + "01 6b 06 7f 00 00"), error::truncated,
            status_code::invalid_frame);

        // --- handshake (parse_haproxy_hello + negotiate) ---
        add("HELLO without supported-versions", with_len(hello_hdr + kv_mfs + kv_caps),
            error::missing_version, status_code::version_not_found);
        add("HELLO without max-frame-size", with_len(hello_hdr + kv_versions + kv_caps),
            error::missing_max_frame_size, status_code::max_frame_size_not_found);
        add("HELLO without capabilities", with_len(hello_hdr + kv_versions + kv_mfs),
            error::missing_capabilities, status_code::capabilities_not_found);
        add("HELLO offering only 1.0",
            with_len(hello_hdr + "12 " + hex_of("supported-versions") + "08 03 31 2e 30 " + kv_mfs +
                     kv_caps),
            error::unsupported_version, status_code::unsupported_version);
        add("HELLO max-frame-size 255",
            with_len(hello_hdr + kv_versions + "0e " + hex_of("max-frame-size") + "03 ff 00 " +
                     kv_caps),
            error::bad_max_frame_size, status_code::bad_max_frame_size);

        // --- DISCONNECT payloads ---
        add("DISCONNECT without status-code",
            with_len(disc_hdr + "07 " + hex_of("message") + "08 01 78"), error::bad_status_code,
            status_code::invalid_frame);
        add("DISCONNECT message of 256 bytes",
            with_len(disc_hdr + "0b " + hex_of("status-code") + "03 00 07 " + hex_of("message") +
                     "08 f0 01 " + hex_of(std::string(256, 'x'))),
            error::message_too_long, status_code::invalid_frame);

        // --- ACK payloads ---
        add("ACK action type 3", with_len(ack_hdr + "03 02 02 01 61"), error::bad_action,
            status_code::invalid_frame);
        add("ACK set-var with 2 args", with_len(ack_hdr + "01 02 02 01 61 00"), error::bad_action,
            status_code::invalid_frame);
        add("ACK scope 5", with_len(ack_hdr + "02 02 05 01 61"), error::bad_scope,
            status_code::invalid_frame);
        add("ACK value of reserved type", with_len(ack_hdr + "01 03 02 01 61 0d"),
            error::reserved_data_type, status_code::invalid_frame);

        // --- fragments (fragment_assembler, cap 64 in run_pipeline) ---
        const bytes start = with_len(notify_nofin + "01 6d 01 01 61 08 0a");
        add("UNSET without a started NOTIFY", with_len("00 00 00 00 01 01 01 41"),
            error::fragment_without_start, status_code::frame_id_not_found);
        add("UNSET of another stream interlaced",
            concat({start, with_len("00 00 00 00 01 02 01 41")}), error::interlaced_fragments,
            status_code::interlaced_frames, 1);
        add("UNSET of another frame-id interlaced",
            concat({start, with_len("00 00 00 00 01 01 02 41")}), error::interlaced_fragments,
            status_code::interlaced_frames, 1);
        add("NOTIFY while a fragmented NOTIFY is open",
            concat({start, with_len(notify_fin + "01 6d 00")}), error::interlaced_fragments,
            status_code::interlaced_frames, 1);
        add("reassembly over the 64-byte cap",
            concat({start, with_len("00 00 00 00 00 01 01 " + hex_of(std::string(50, 'a'))),
                    with_len("00 00 00 00 01 01 01 " + hex_of(std::string(10, 'a')))}),
            error::reassembly_too_big, status_code::frame_too_big, 2);
        add("reassembled payload with a bad string length",
            concat({start, with_len("00 00 00 00 01 01 01 41 41")}), error::truncated,
            status_code::invalid_frame, 1);
        add("valid frames then a bad one",
            concat({from_hex(v7_hex), from_hex(v8_hex), with_len("05 00 00 00 01 01 01")}),
            error::unknown_frame_type, status_code::invalid_frame, 2, false);
        return c;
    }();
    return cases;
}

}  // namespace spoa::test
