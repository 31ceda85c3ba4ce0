// protocol/README.md §7: DISCONNECT frames V8, V9, V10 (§11) both ways, parse_disconnect,
// status strings.

#include <catch2/catch.hpp>
#include <string>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/disconnect.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/kv_list.hpp"
#include "test_support.hpp"

using namespace spoa::protocol;
using spoa::test::bytes;
using spoa::test::decode_one;
using spoa::test::from_hex;
using spoa::test::to_hex;

TEST_CASE("disconnect: V8, V9, V10 decode to their documented fields", "[disconnect][vectors]") {
    struct row {
        const char* hex;
        frame_type type;
        std::uint32_t status;
        const char* message;
    };
    const row rows[] = {
        {spoa::test::v8_hex, frame_type::haproxy_disconnect, 0, "normal"},
        {spoa::test::v9_hex, frame_type::haproxy_disconnect, 2, "a timeout occurred"},
        {spoa::test::v10_hex, frame_type::agent_disconnect, 8, "unsupported version"},
    };
    for (const row& r : rows) {
        INFO(r.message);
        const bytes in = from_hex(r.hex);
        const frame f = decode_one(spoa::test::view(in));
        CHECK(f.type == r.type);
        CHECK(f.flags == frame_flags::fin);
        CHECK(f.stream_id == 0);
        CHECK(f.frame_id == 0);

        // The raw KV list: exactly status-code (UINT32) then message (STRING).
        kv_reader kv(f.payload);
        std::string_view key;
        typed_value value;
        REQUIRE(kv.next(key, value) == error::none);
        CHECK(key == "status-code");
        CHECK(value.type() == data_type::uint32);
        CHECK(value.as_uint64() == r.status);
        REQUIRE(kv.next(key, value) == error::none);
        CHECK(key == "message");
        CHECK(value.type() == data_type::string);
        CHECK(value.as_string() == r.message);
        CHECK(kv.done());

        disconnect_info info;
        REQUIRE(parse_disconnect(f.payload, info) == error::none);
        CHECK(info.status == r.status);
        CHECK(info.message == r.message);
    }
}

TEST_CASE("disconnect: encode_disconnect reproduces V8, V9, V10", "[disconnect][vectors]") {
    byte_buffer out;
    encode_disconnect(out, frame_type::haproxy_disconnect, status_code::normal, "normal");
    CHECK(to_hex(out) == to_hex(from_hex(spoa::test::v8_hex)));

    out.clear();
    encode_disconnect(out, frame_type::haproxy_disconnect, status_code::timeout,
                      "a timeout occurred");
    CHECK(to_hex(out) == to_hex(from_hex(spoa::test::v9_hex)));

    out.clear();
    encode_disconnect(out, frame_type::agent_disconnect, status_code::unsupported_version,
                      "unsupported version");
    CHECK(to_hex(out) == to_hex(from_hex(spoa::test::v10_hex)));

    // An empty message means HAProxy's own text for the status: the same bytes again.
    out.clear();
    encode_disconnect(out, frame_type::agent_disconnect, status_code::unsupported_version);
    CHECK(to_hex(out) == to_hex(from_hex(spoa::test::v10_hex)));
    out.clear();
    encode_disconnect(out, frame_type::haproxy_disconnect, status_code::timeout);
    CHECK(to_hex(out) == to_hex(from_hex(spoa::test::v9_hex)));
}

TEST_CASE("disconnect: messages are cut to 255 bytes on encode", "[disconnect]") {
    const std::string long_message(300, 'm');
    byte_buffer out;
    encode_disconnect(out, frame_type::agent_disconnect, status_code::unknown, long_message);
    const frame f = decode_one(out.view());
    disconnect_info info;
    REQUIRE(parse_disconnect(f.payload, info) == error::none);
    CHECK(info.status == 99);
    CHECK(info.message == std::string(255, 'm'));

    out.clear();
    const std::string exact(255, 'e');
    encode_disconnect(out, frame_type::agent_disconnect, status_code::io_error, exact);
    REQUIRE(parse_disconnect(decode_one(out.view()).payload, info) == error::none);
    CHECK(info.status == 1);
    CHECK(info.message == exact);
}

TEST_CASE("disconnect: parse_disconnect accepts any integer status, other keys, no message",
          "[disconnect]") {
    struct row {
        const char* name;
        std::vector<std::pair<std::string_view, typed_value>> pairs;
        std::uint32_t status;
        std::string_view message;
    };
    const row rows[] = {
        {"INT64 status, no message", {{"status-code", typed_value::int64(13)}}, 13, ""},
        {"UINT64 status 2^32-1",
         {{"status-code", typed_value::uint64(0xFFFFFFFFu)}},
         0xFFFFFFFFu,
         ""},
        {"message first, extra keys",
         {{"message", typed_value::string("bye")},
          {"x", typed_value::boolean(true)},
          {"status-code", typed_value::uint32(4)}},
         4,
         "bye"},
        {"non-string message ignored",
         {{"status-code", typed_value::uint32(0)}, {"message", typed_value::int32(5)}},
         0,
         ""},
    };
    for (const row& r : rows) {
        INFO(r.name);
        byte_buffer payload;
        for (const auto& [k, v] : r.pairs)
            encode_kv(payload, k, v);
        disconnect_info info;
        REQUIRE(parse_disconnect(payload.view(), info) == error::none);
        CHECK(info.status == r.status);
        CHECK(info.message == r.message);
    }
}

TEST_CASE("disconnect: parse_disconnect errors", "[disconnect]") {
    struct row {
        const char* name;
        std::vector<std::pair<std::string_view, typed_value>> pairs;
        error expected;
    };
    const std::string too_long(256, 'x');
    const row rows[] = {
        {"empty payload", {}, error::bad_status_code},
        {"no status-code", {{"message", typed_value::string("x")}}, error::bad_status_code},
        {"status-code as STRING",
         {{"status-code", typed_value::string("0")}},
         error::bad_status_code},
        {"status-code above 2^32-1",
         {{"status-code", typed_value::uint64(0x100000000u)}},
         error::bad_status_code},
        {"message of 256 bytes",
         {{"status-code", typed_value::uint32(0)}, {"message", typed_value::string(too_long)}},
         error::message_too_long},
    };
    for (const row& r : rows) {
        INFO(r.name);
        byte_buffer payload;
        for (const auto& [k, v] : r.pairs)
            encode_kv(payload, k, v);
        disconnect_info info;
        const error e = parse_disconnect(payload.view(), info);
        CHECK(e == r.expected);
        CHECK(to_status(e) == status_code::invalid_frame);
    }
}

TEST_CASE("disconnect: status code strings are HAProxy's", "[disconnect]") {
    struct row {
        std::uint32_t code;
        const char* text;
    };
    const row rows[] = {
        {0, "normal"},
        {1, "I/O error"},
        {2, "a timeout occurred"},
        {3, "frame is too big"},
        {4, "invalid frame received"},
        {5, "version value not found"},
        {6, "max-frame-size value not found"},
        {7, "capabilities value not found"},
        {8, "unsupported version"},
        {9, "max-frame-size too big or too small"},
        {10, "fragmentation not supported"},
        {11, "invalid interlaced frames"},
        {12, "frame-id not found"},
        {13, "resource allocation error"},
        {99, "an unknown error occurred"},
        {14, "an unknown error occurred"},
        {100, "an unknown error occurred"},
    };
    for (const row& r : rows) {
        INFO(r.code);
        CHECK(to_string(static_cast<status_code>(r.code)) == r.text);
    }
}
