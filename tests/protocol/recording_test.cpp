// The recording format of spoa-agent --record (spoa/protocol/recording.hpp): header bytes, round
// trips, every prefix is need-more, unknown kinds are errors.

#include <catch2/catch.hpp>
#include <vector>

#include "spoa/protocol/recording.hpp"
#include "test_support.hpp"

using namespace spoa::protocol;
using spoa::test::from_hex;
using spoa::test::to_hex;

namespace {

std::vector<std::uint8_t> record_bytes(const record_header& h, bytes_view payload) {
    std::vector<std::uint8_t> out(record_header_size);
    encode_record_header(
        h, std::span<std::uint8_t, record_header_size>(out.data(), record_header_size));
    out.insert(out.end(), payload.begin(), payload.end());
    return out;
}

const record_header example{record_kind::ack, 3, 0x0102030405060708u, 3, 1, 1700000000123456789u};

}  // namespace

TEST_CASE("record header layout is big-endian, flags and reserved zero", "[recording]") {
    const std::vector<std::uint8_t> payload = {0xaa, 0xbb, 0xcc};
    CHECK(to_hex(record_bytes(example, payload)) ==
          to_hex(from_hex("02 00 0000 00000003"
                          "0102030405060708 0000000000000003 0000000000000001"
                          "17979cfe3d85cd15"
                          "aabbcc")));
}

TEST_CASE("records round-trip and every prefix needs more", "[recording]") {
    const std::vector<std::uint8_t> payload = {1, 2, 3};
    const auto bytes = record_bytes(example, payload);
    record r;
    const auto res = decode_record(bytes, r);
    REQUIRE(res.status == decode_status::ok);
    CHECK(res.size == bytes.size());
    CHECK(r.header.kind == record_kind::ack);
    CHECK(r.header.payload_size == 3);
    CHECK(r.header.connection_id == example.connection_id);
    CHECK(r.header.stream_id == 3);
    CHECK(r.header.frame_id == 1);
    CHECK(r.header.unix_time_ns == example.unix_time_ns);
    CHECK(std::vector<std::uint8_t>(r.payload.begin(), r.payload.end()) == payload);
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        INFO("prefix of " << n << " bytes");
        CHECK(decode_record(bytes_view(bytes).first(n), r).status == decode_status::need_more);
    }
}

TEST_CASE("an empty payload is a whole record", "[recording]") {
    record_header h = example;
    h.kind = record_kind::notify;
    h.payload_size = 0;
    const auto bytes = record_bytes(h, {});
    record r;
    const auto res = decode_record(bytes, r);
    REQUIRE(res.status == decode_status::ok);
    CHECK(res.size == record_header_size);
    CHECK(r.payload.empty());
    CHECK(r.header.kind == record_kind::notify);
}

TEST_CASE("an unknown kind is an error", "[recording]") {
    auto bytes = record_bytes(example, {});
    bytes[0] = 3;
    record r;
    const auto res = decode_record(bytes, r);
    CHECK(res.status == decode_status::error);
    CHECK(res.err == record_error::unknown_kind);
}

TEST_CASE("the magic is SPOAREC then version 1", "[recording]") {
    const auto good = from_hex("53 50 4f 41 52 45 43 01");
    CHECK(has_recording_magic(good));
    CHECK_FALSE(has_recording_magic(bytes_view(good).first(7)));
    auto other = good;
    other[7] = 2;
    CHECK_FALSE(has_recording_magic(other));
}
