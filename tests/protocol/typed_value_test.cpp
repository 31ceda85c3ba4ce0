// protocol/README.md §4: typed data, exact wire bytes for every type and edge value, both ways.

#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/byte_reader.hpp"
#include "spoa/protocol/typed_value.hpp"
#include "test_support.hpp"

using namespace spoa::protocol;
using spoa::test::bytes;
using spoa::test::from_hex;
using spoa::test::to_hex;

namespace {

const std::string nul_string("a\0b\0", 4);
const std::string binary_blob("\x00\x01\xfe\xff\x00", 5);
const std::string long_string(300, 'x');

struct value_row {
    value_row(const char* n, typed_value v, const char* hex, std::string suffix = {})
        : name(n), value(v), wire_hex(hex), raw_suffix(std::move(suffix)) {}

    const char* name;
    typed_value value;
    const char* wire_hex;
    std::string raw_suffix;  ///< appended after the hex bytes (long bodies)
};

std::vector<value_row> value_rows() {
    return {
        {"NULL", typed_value::null(), "00"},
        {"BOOL true", typed_value::boolean(true), "11"},
        {"BOOL false", typed_value::boolean(false), "01"},
        {"INT32 0", typed_value::int32(0), "02 00"},
        {"INT32 42", typed_value::int32(42), "02 2a"},
        {"INT32 -1 (10-byte varint)", typed_value::int32(-1), "02 ff f0 fe fe fe fe fe fe fe 0e"},
        {"INT32 min", typed_value::int32(std::numeric_limits<std::int32_t>::min()),
         "02 f0 f1 fe fe be fe fe fe fe 0e"},
        {"INT32 max", typed_value::int32(std::numeric_limits<std::int32_t>::max()),
         "02 ff f0 fe fe 3e"},
        {"UINT32 max", typed_value::uint32(0xFFFFFFFFu), "03 ff f0 fe fe 7e"},
        {"UINT32 16380", typed_value::uint32(16380), "03 fc f0 06"},
        {"INT64 443", typed_value::int64(443), "04 fb 0c"},
        {"INT64 -1", typed_value::int64(-1), "04 ff f0 fe fe fe fe fe fe fe 0e"},
        {"INT64 -2", typed_value::int64(-2), "04 fe f0 fe fe fe fe fe fe fe 0e"},
        {"INT64 min", typed_value::int64(std::numeric_limits<std::int64_t>::min()),
         "04 f0 f1 fe fe fe fe fe fe fe 06"},
        {"INT64 max", typed_value::int64(std::numeric_limits<std::int64_t>::max()),
         "04 ff f0 fe fe fe fe fe fe fe 06"},
        {"UINT64 0", typed_value::uint64(0), "05 00"},
        {"UINT64 1000", typed_value::uint64(1000), "05 f8 2f"},
        {"UINT64 2^32", typed_value::uint64(4294967296u), "05 f0 f1 fe fe 7e"},
        {"UINT64 max", typed_value::uint64(std::numeric_limits<std::uint64_t>::max()),
         "05 ff f0 fe fe fe fe fe fe fe 0e"},
        {"IPV4 192.168.1.10", typed_value::ipv4({192, 168, 1, 10}), "06 c0 a8 01 0a"},
        {"IPV4 0.0.0.0", typed_value::ipv4({0, 0, 0, 0}), "06 00 00 00 00"},
        {"IPV6 2001:db8::1",
         typed_value::ipv6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}),
         "07 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01"},
        {"IPV6 all ones",
         typed_value::ipv6({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                            0xff, 0xff, 0xff, 0xff}),
         "07 ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff ff"},
        {"STRING empty", typed_value::string(""), "08 00"},
        {"STRING GET", typed_value::string("GET"), "08 03 47 45 54"},
        {"STRING with NUL bytes", typed_value::string(nul_string), "08 04 61 00 62 00"},
        // 300 = fc 03 (252 + (3 << 4)): a 2-byte length varint.
        {"STRING of 300 bytes", typed_value::string(long_string), "08 fc 03", long_string},
        {"BINARY empty", typed_value::binary(std::string_view{}), "09 00"},
        {"BINARY with NUL and high bytes", typed_value::binary(std::string_view(binary_blob)),
         "09 05 00 01 fe ff 00"},
    };
}

bytes expected_wire(const value_row& row) {
    bytes wire = from_hex(row.wire_hex);
    wire.insert(wire.end(), row.raw_suffix.begin(), row.raw_suffix.end());
    return wire;
}

}  // namespace

TEST_CASE("typed value: exact encoding and decoding of every type and edge value",
          "[typed_value]") {
    for (const value_row& row : value_rows()) {
        INFO(row.name);
        const bytes wire = expected_wire(row);

        byte_buffer out;
        encode_typed_value(out, row.value);
        CHECK(to_hex(out) == to_hex(wire));
        CHECK(encoded_size(row.value) == wire.size());

        byte_reader in(spoa::test::view(wire));
        typed_value decoded;
        REQUIRE(decode_typed_value(in, decoded) == error::none);
        CHECK(in.empty());
        CHECK(decoded == row.value);
        CHECK(decoded.type() == row.value.type());
    }
}

TEST_CASE("typed value: accessors of decoded edge values", "[typed_value]") {
    const auto decode = [](const char* hex, typed_value& v, bytes& storage) {
        storage = from_hex(hex);
        byte_reader in(spoa::test::view(storage));
        return decode_typed_value(in, v);
    };
    bytes storage;
    typed_value v;

    REQUIRE(decode("04 f0 f1 fe fe fe fe fe fe fe 06", v, storage) == error::none);
    CHECK(v.type() == data_type::int64);
    CHECK(v.as_int64() == std::numeric_limits<std::int64_t>::min());

    REQUIRE(decode("05 ff f0 fe fe fe fe fe fe fe 0e", v, storage) == error::none);
    CHECK(v.type() == data_type::uint64);
    CHECK(v.as_uint64() == std::numeric_limits<std::uint64_t>::max());

    // A negative INT32 travels as the 64-bit two's complement pattern (protocol/README.md §4).
    REQUIRE(decode("02 fb f0 fe fe fe fe fe fe fe 0e", v, storage) == error::none);
    CHECK(v.type() == data_type::int32);
    CHECK(v.as_int64() == -5);

    REQUIRE(decode("08 04 61 00 62 00", v, storage) == error::none);
    CHECK(v.type() == data_type::string);
    CHECK(v.as_string() == nul_string);
    CHECK(v.as_string().size() == 4);
    // Views the input: no copy.
    CHECK(reinterpret_cast<const std::uint8_t*>(v.as_string().data()) == storage.data() + 2);

    REQUIRE(decode("09 04 00 01 fe ff", v, storage) == error::none);
    CHECK(v.type() == data_type::binary);
    CHECK(to_hex(v.as_bytes()) == "00 01 fe ff");

    REQUIRE(decode("06 0a 00 00 01", v, storage) == error::none);
    CHECK(v.as_ipv4() == std::array<std::uint8_t, 4>{10, 0, 0, 1});

    REQUIRE(decode("07 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01", v, storage) ==
            error::none);
    CHECK(v.as_ipv6() ==
          std::array<std::uint8_t, 16>{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
    CHECK(!v.is_integer());
    CHECK(!v.is_null());
}

TEST_CASE("typed value: BOOL is true only for flag nibble 1, flags of other types ignored",
          "[typed_value]") {
    struct row {
        const char* hex;
        data_type type;
        bool boolean;
    };
    // protocol/README.md §4: 0x11 true, 0x01 false, 0x31 false.
    const row rows[] = {
        {"11", data_type::boolean, true},  {"01", data_type::boolean, false},
        {"31", data_type::boolean, false}, {"f1", data_type::boolean, false},
        {"10", data_type::null, false},
    };
    for (const row& r : rows) {
        INFO(r.hex);
        const bytes in = from_hex(r.hex);
        byte_reader reader(spoa::test::view(in));
        typed_value v;
        REQUIRE(decode_typed_value(reader, v) == error::none);
        CHECK(v.type() == r.type);
        if (r.type == data_type::boolean) CHECK(v.as_bool() == r.boolean);
        CHECK(reader.empty());
    }
}

TEST_CASE("typed value: decoding errors", "[typed_value]") {
    struct row {
        const char* name;
        const char* hex;
        error expected;
    };
    const row rows[] = {
        {"no type byte", "", error::truncated},
        {"INT32 without varint", "02", error::truncated},
        {"INT64 truncated varint", "04 ff f0", error::truncated},
        {"UINT64 11-byte varint", "05 ff ff ff ff ff ff ff ff ff ff 00", error::varint_too_long},
        {"UINT64 varint overflow", "05 ff f0 fe fe fe fe fe fe fe 0f", error::varint_overflow},
        {"IPV4 with 3 bytes", "06 0a 00 00", error::truncated},
        {"IPV6 with 15 bytes", "07 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00", error::truncated},
        {"STRING length past the end", "08 05 41 42 43 44", error::truncated},
        {"STRING length varint truncated", "08 f0", error::truncated},
        {"BINARY huge length", "09 ff f0 fe fe fe fe fe fe fe 0e 00", error::truncated},
    };
    for (const row& r : rows) {
        INFO(r.name);
        const bytes in = from_hex(r.hex);
        byte_reader reader(spoa::test::view(in));
        typed_value v;
        CHECK(decode_typed_value(reader, v) == r.expected);
    }
}

TEST_CASE("typed value: reserved types 10..15 are refused whatever the flag nibble",
          "[typed_value]") {
    for (unsigned type = 10; type <= 15; ++type) {
        for (unsigned flags = 0; flags <= 15; ++flags) {
            const bytes in{static_cast<std::uint8_t>(flags << 4 | type), 0x00, 0x00};
            byte_reader reader(spoa::test::view(in));
            typed_value v;
            INFO("type byte " << to_hex(in));
            CHECK(decode_typed_value(reader, v) == error::reserved_data_type);
        }
    }
}

TEST_CASE("typed value: equality compares type and value", "[typed_value]") {
    CHECK(typed_value::int32(5) != typed_value::int64(5));
    CHECK(typed_value::int32(5) != typed_value::int32(6));
    CHECK(typed_value::string("ab") != typed_value::binary(std::string_view("ab")));
    CHECK(typed_value::string("ab") == typed_value::string(std::string("ab")));
    CHECK(typed_value::ipv4({1, 2, 3, 4}) != typed_value::ipv4({1, 2, 3, 5}));
    CHECK(typed_value::boolean(true) != typed_value::boolean(false));
    CHECK(typed_value::null() == typed_value());
    CHECK(typed_value::int32(-1).as_uint64() == std::numeric_limits<std::uint64_t>::max());
    CHECK(typed_value::uint64(std::numeric_limits<std::uint64_t>::max()).as_int64() == -1);
}
