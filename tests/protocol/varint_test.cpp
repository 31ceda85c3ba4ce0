// protocol/README.md §3: the varint table, the size-class boundaries and the decoder's error cases.

#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <random>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/byte_reader.hpp"
#include "spoa/protocol/varint.hpp"
#include "test_support.hpp"

using namespace spoa::protocol;
using spoa::test::bytes;
using spoa::test::from_hex;
using spoa::test::to_hex;

namespace {

struct varint_row {
    std::uint64_t value;
    const char* hex;
};

// protocol/README.md §3 "Worked examples", every row.
const varint_row spec_table[] = {
    {0, "00"},
    {1, "01"},
    {239, "ef"},
    {240, "f0 00"},
    {255, "ff 00"},
    {2287, "ff 7f"},
    {2288, "f0 80 00"},
    {16380, "fc f0 06"},
    {264431, "ff ff 7f"},
    {264432, "f0 80 80 00"},
    {33818863, "ff ff ff 7f"},
    {33818864, "f0 80 80 80 00"},
    {4294967295u, "ff f0 fe fe 7e"},
    {9223372036854775807u, "ff f0 fe fe fe fe fe fe fe 06"},
    {18446744073709551615u, "ff f0 fe fe fe fe fe fe fe 0e"},
    {static_cast<std::uint64_t>(std::int64_t{-1}), "ff f0 fe fe fe fe fe fe fe 0e"},
    {static_cast<std::uint64_t>(std::int64_t{-2}), "fe f0 fe fe fe fe fe fe fe 0e"},
};

// Largest value of each size class (n bytes: ff (ff)*(n-2) 7f) and the first of the next one
// (f0 (80)*(n-1) 00), computed independently from the size table of §3.
const varint_row class_boundaries[] = {
    {239, "ef"},
    {240, "f0 00"},
    {2287, "ff 7f"},
    {2288, "f0 80 00"},
    {264431, "ff ff 7f"},
    {264432, "f0 80 80 00"},
    {33818863, "ff ff ff 7f"},
    {33818864, "f0 80 80 80 00"},
    {4328786159u, "ff ff ff ff 7f"},
    {4328786160u, "f0 80 80 80 80 00"},
    {554084600047u, "ff ff ff ff ff 7f"},
    {554084600048u, "f0 80 80 80 80 80 00"},
    {70922828777711u, "ff ff ff ff ff ff 7f"},
    {70922828777712u, "f0 80 80 80 80 80 80 00"},
    {9078122083518703u, "ff ff ff ff ff ff ff 7f"},
    {9078122083518704u, "f0 80 80 80 80 80 80 80 00"},
    {1161999626690365679u, "ff ff ff ff ff ff ff ff 7f"},
    {1161999626690365680u, "f0 80 80 80 80 80 80 80 80 00"},
};

bytes encode(std::uint64_t v) {
    byte_buffer out;
    out.put_varint(v);
    return bytes(out.data(), out.data() + out.size());
}

void check_both_ways(const varint_row& row) {
    const bytes wire = from_hex(row.hex);
    INFO("value " << row.value << " wire " << row.hex);
    CHECK(to_hex(encode(row.value)) == to_hex(wire));
    CHECK(varint_size(row.value) == wire.size());

    std::uint64_t value = 0;
    std::size_t size = 0;
    REQUIRE(decode_varint(wire.data(), wire.data() + wire.size(), value, size) == error::none);
    CHECK(value == row.value);
    CHECK(size == wire.size());

    // With trailing bytes the decoder stops at the end of the varint.
    bytes longer = wire;
    longer.push_back(0xAB);
    REQUIRE(decode_varint(longer.data(), longer.data() + longer.size(), value, size) ==
            error::none);
    CHECK(value == row.value);
    CHECK(size == wire.size());

    // Every strict prefix is a truncation.
    for (std::size_t n = 0; n < wire.size(); ++n) {
        const bytes prefix(wire.begin(), wire.begin() + static_cast<std::ptrdiff_t>(n));
        INFO("prefix of " << n << " bytes");
        CHECK(decode_varint(prefix.data(), prefix.data() + prefix.size(), value, size) ==
              error::truncated);
    }
}

}  // namespace

TEST_CASE("varint: every row of the worked examples, both ways", "[varint]") {
    for (const varint_row& row : spec_table)
        check_both_ways(row);
}

TEST_CASE("varint: size-class boundaries, both ways", "[varint]") {
    for (const varint_row& row : class_boundaries)
        check_both_ways(row);
    CHECK(varint_size(std::numeric_limits<std::uint64_t>::max()) == max_varint_size);
}

TEST_CASE("varint: worked decodes of protocol/README.md §3", "[varint]") {
    // f0 80 00: 240 + (0x80 << 4) + (0 << 11) = 2288; fc f0 06: 252 + 3840 + 12288 = 16380.
    const bytes a = from_hex("f0 80 00");
    const bytes b = from_hex("fc f0 06");
    std::uint64_t v = 0;
    std::size_t n = 0;
    REQUIRE(decode_varint(a.data(), a.data() + a.size(), v, n) == error::none);
    CHECK(v == 2288);
    REQUIRE(decode_varint(b.data(), b.data() + b.size(), v, n) == error::none);
    CHECK(v == 16380);
}

TEST_CASE("varint: exhaustive round trip of the small values and random 64-bit values",
          "[varint]") {
    byte_buffer out;
    const auto round_trip = [&](std::uint64_t x) {
        out.clear();
        out.put_varint(x);
        std::uint64_t v = 0;
        std::size_t n = 0;
        const error e = decode_varint(out.data(), out.data() + out.size(), v, n);
        return e == error::none && v == x && n == out.size() && n == varint_size(x);
    };
    std::size_t failures = 0;
    for (std::uint64_t x = 0; x < 300000; ++x) {
        if (!round_trip(x)) ++failures;
    }
    std::mt19937_64 rng(20240601);
    for (int i = 0; i < 200000; ++i) {
        // Vary the magnitude so every size class is hit.
        const std::uint64_t x = rng() >> (rng() % 64);
        if (!round_trip(x)) ++failures;
    }
    for (unsigned bit = 0; bit < 64; ++bit) {
        const std::uint64_t p = std::uint64_t{1} << bit;
        if (!round_trip(p) || !round_trip(p - 1) || !round_trip(p + 1)) ++failures;
    }
    CHECK(failures == 0);
}

TEST_CASE("varint: decoder errors", "[varint]") {
    struct row {
        const char* name;
        const char* hex;
        error expected;
    };
    const row rows[] = {
        {"empty input", "", error::truncated},
        {"first byte says more follows, nothing else", "f0", error::truncated},
        {"continuation byte with nothing after it", "f0 80", error::truncated},
        {"nine continuation bytes, cut", "ff ff ff ff ff ff ff ff ff", error::truncated},
        // Ten bytes whose last one still has the continuation bit: an 11th byte would be
        // needed, which the decoder rules forbid (protocol/README.md §3).
        {"11-byte varint (f0 80*9 00)", "f0 80 80 80 80 80 80 80 80 80 00", error::varint_too_long},
        {"10 continuation bytes, cut", "ff ff ff ff ff ff ff ff ff ff", error::varint_too_long},
        {"11-byte all-ff", "ff ff ff ff ff ff ff ff ff ff ff", error::varint_too_long},
        // 2^64-1 is ff f0 fe*7 0e; a last byte of 0f adds 2^60 more and wraps.
        {"2^64-1 + 2^60 (sum wraps)", "ff f0 fe fe fe fe fe fe fe 0f", error::varint_overflow},
        // At shift 60 only the low nibble fits in 64 bits.
        {"10th byte 0x10 (bit shifted out)", "f0 80 80 80 80 80 80 80 80 10",
         error::varint_overflow},
        {"10th byte 0x7f", "f0 80 80 80 80 80 80 80 80 7f", error::varint_overflow},
    };
    for (const row& r : rows) {
        INFO(r.name);
        const bytes in = from_hex(r.hex);
        std::uint64_t v = 12345;
        std::size_t n = 678;
        CHECK(decode_varint(in.data(), in.data() + in.size(), v, n) == r.expected);
        CHECK(v == 12345);  // outputs untouched on error
        CHECK(n == 678);
    }
}

TEST_CASE("varint: 10-byte values near the top of the range", "[varint]") {
    struct row {
        const char* hex;
        error expected;
        std::uint64_t value;
    };
    // Continuation bytes are added with their high bit (protocol/README.md §3), so with 0x80 bytes
    // the sum reaches 2^64 already at a last byte of 0x0f: decoded in Python, 0e gives
    // 0xf0204081020408f0 and 0f would be 0x1_00204081020408f0.
    const row rows[] = {
        {"f0 80 80 80 80 80 80 80 80 0e", error::none, 0xf0204081020408f0u},
        {"f0 80 80 80 80 80 80 80 80 0f", error::varint_overflow, 0},
        {"ff f0 fe fe fe fe fe fe fe 0e", error::none, 0xffffffffffffffffu},
        {"f0 80 80 80 80 80 80 80 80 00", error::none, 1161999626690365680u},
    };
    for (const row& r : rows) {
        INFO(r.hex);
        const bytes in = from_hex(r.hex);
        std::uint64_t v = 0;
        std::size_t n = 0;
        REQUIRE(decode_varint(in.data(), in.data() + in.size(), v, n) == r.expected);
        if (r.expected == error::none) {
            CHECK(v == r.value);
            CHECK(n == 10);
        }
    }
}

TEST_CASE("varint: byte_reader moves only on success", "[varint]") {
    const bytes in = from_hex("fc f0 06 f0 80");
    byte_reader r(spoa::test::view(in));
    std::uint64_t v = 0;
    REQUIRE(r.read_varint(v) == error::none);
    CHECK(v == 16380);
    CHECK(r.remaining() == 2);
    CHECK(r.read_varint(v) == error::truncated);
    CHECK(r.remaining() == 2);
    CHECK(v == 16380);
}
