// protocol/README.md §2: frame headers of every example frame (§11), incremental (byte-at-a-time)
// decoding, frame_writer round trips for every frame type, streams of several frames, LEN limits.

#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/frame.hpp"
#include "test_support.hpp"

using namespace spoa::protocol;
using spoa::test::bytes;
using spoa::test::from_hex;
using spoa::test::spec_vectors;
using spoa::test::to_hex;

namespace {

struct header_row {
    frame_type type;
    std::uint32_t flags;
    std::uint64_t stream_id;
    std::uint64_t frame_id;
    std::size_t payload_size;  ///< LEN - 7 for all §14 vectors (one-byte ids)
};

// The example frames of protocol/README.md §11.1, header part (payloads are checked per topic).
const header_row expected_headers[10] = {
    {frame_type::haproxy_hello, 1, 0, 0, 78 - 7},
    {frame_type::haproxy_hello, 1, 0, 0, 129 - 7},
    {frame_type::haproxy_hello, 1, 0, 0, 123 - 7},
    {frame_type::agent_hello, 1, 0, 0, 64 - 7},
    {frame_type::notify, 1, 3, 1, 154 - 7},
    {frame_type::ack, 1, 3, 1, 79 - 7},
    {frame_type::ack, 1, 3, 1, 0},
    {frame_type::haproxy_disconnect, 1, 0, 0, 37 - 7},
    {frame_type::haproxy_disconnect, 1, 0, 0, 49 - 7},
    {frame_type::agent_disconnect, 1, 0, 0, 50 - 7},
};

}  // namespace

TEST_CASE("frame: headers of every example frame V1..V10", "[frame][vectors]") {
    for (std::size_t i = 0; i < spec_vectors.size(); ++i) {
        const auto& v = spec_vectors[i];
        const header_row& want = expected_headers[i];
        INFO(v.name);
        const bytes in = from_hex(v.hex);
        REQUIRE(in.size() == v.total_size);

        frame f;
        const auto r = decode_frame(spoa::test::view(in), haproxy_default_max_frame_size, f);
        REQUIRE(r.status == decode_status::ok);
        CHECK(r.err == error::none);
        CHECK(r.size == v.total_size);
        CHECK(f.type == want.type);
        CHECK(f.flags == want.flags);
        CHECK(f.fin());
        CHECK(!f.aborted());
        CHECK(f.stream_id == want.stream_id);
        CHECK(f.frame_id == want.frame_id);
        CHECK(f.payload.size() == want.payload_size);
        // The payload is a view of the input, ending where the frame ends.
        CHECK(f.payload.data() == in.data() + 11);
        CHECK(f.payload.data() + f.payload.size() == in.data() + in.size());
    }
}

TEST_CASE("frame: every vector fed one byte at a time", "[frame][vectors]") {
    for (const auto& v : spec_vectors) {
        INFO(v.name);
        const bytes full = from_hex(v.hex);
        for (std::size_t n = 0; n < full.size(); ++n) {
            INFO("prefix of " << n << " bytes");
            // Exactly-sized copy: an over-read is a heap overflow under ASan.
            const bytes prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
            frame f;
            const auto r =
                decode_frame(spoa::test::view(prefix), haproxy_default_max_frame_size, f);
            REQUIRE(r.status == decode_status::need_more);
            CHECK(r.err == error::none);
            CHECK(r.size == (n < length_prefix_size ? 0 : full.size()));
        }
        frame f;
        const auto r = decode_frame(spoa::test::view(full), haproxy_default_max_frame_size, f);
        CHECK(r.status == decode_status::ok);
        CHECK(r.size == full.size());
    }
}

TEST_CASE("frame: a stream of all vectors decodes frame by frame, also when fed byte by byte",
          "[frame][vectors]") {
    bytes stream;
    for (const auto& v : spec_vectors) {
        const bytes b = from_hex(v.hex);
        stream.insert(stream.end(), b.begin(), b.end());
    }

    SECTION("whole stream at once") {
        std::size_t offset = 0;
        std::size_t index = 0;
        while (offset < stream.size()) {
            frame f;
            const auto r = decode_frame(spoa::test::view(stream).subspan(offset),
                                        haproxy_default_max_frame_size, f);
            REQUIRE(r.status == decode_status::ok);
            REQUIRE(index < spec_vectors.size());
            CHECK(r.size == spec_vectors[index].total_size);
            CHECK(f.type == expected_headers[index].type);
            offset += r.size;
            ++index;
        }
        CHECK(index == spec_vectors.size());
    }

    SECTION("one byte arriving at a time, like a socket") {
        bytes pending;
        std::size_t index = 0;
        std::size_t need_more = 0;
        for (const std::uint8_t byte : stream) {
            pending.push_back(byte);
            frame f;
            const auto r =
                decode_frame(spoa::test::view(pending), haproxy_default_max_frame_size, f);
            if (r.status == decode_status::need_more) {
                ++need_more;
                continue;
            }
            REQUIRE(r.status == decode_status::ok);
            REQUIRE(index < spec_vectors.size());
            CHECK(r.size == pending.size());
            CHECK(f.type == expected_headers[index].type);
            pending.clear();
            ++index;
        }
        CHECK(index == spec_vectors.size());
        CHECK(pending.empty());
        CHECK(need_more == stream.size() - spec_vectors.size());
    }
}

TEST_CASE("frame: frame_writer round trip for every frame type, flags and id sizes", "[frame]") {
    const frame_type types[] = {
        frame_type::unset,  frame_type::haproxy_hello, frame_type::haproxy_disconnect,
        frame_type::notify, frame_type::agent_hello,   frame_type::agent_disconnect,
        frame_type::ack};
    const std::uint32_t flag_sets[] = {frame_flags::fin, frame_flags::fin | frame_flags::abort, 0};
    const std::uint64_t ids[] = {0,
                                 1,
                                 239,
                                 240,
                                 16380,
                                 std::numeric_limits<std::uint32_t>::max(),
                                 std::numeric_limits<std::uint64_t>::max()};
    const bytes payload = from_hex("de ad be ef 00 01");

    for (const frame_type type : types) {
        const bool control = type == frame_type::haproxy_hello || type == frame_type::agent_hello ||
                             type == frame_type::haproxy_disconnect ||
                             type == frame_type::agent_disconnect;
        for (const std::uint32_t flags : flag_sets) {
            for (const std::uint64_t sid : ids) {
                for (const std::uint64_t fid : ids) {
                    if (control && (sid != 0 || fid != 0)) continue;  // refused, see malformed
                    INFO(to_string(type) << " flags " << flags << " sid " << sid << " fid " << fid);
                    byte_buffer out;
                    frame_writer w(out);
                    w.begin(type, flags, sid, fid);
                    out.append(spoa::test::view(payload));
                    const std::size_t len = 5 + varint_size(sid) + varint_size(fid) + 6;
                    CHECK(w.frame_size() == len);
                    REQUIRE(w.finish(haproxy_default_max_frame_size));
                    REQUIRE(out.size() == 4 + len);
                    CHECK(out.data()[0] == 0);
                    CHECK(out.data()[3] == len);
                    CHECK(out.data()[4] == static_cast<std::uint8_t>(type));

                    frame f;
                    const auto r = decode_frame(out.view(), haproxy_default_max_frame_size, f);
                    REQUIRE(r.status == decode_status::ok);
                    CHECK(r.size == out.size());
                    CHECK(f.type == type);
                    CHECK(f.flags == flags);
                    CHECK(f.stream_id == sid);
                    CHECK(f.frame_id == fid);
                    CHECK(to_hex(f.payload) == to_hex(payload));
                }
            }
        }
    }
}

TEST_CASE("frame: exact header bytes written by frame_writer", "[frame]") {
    byte_buffer out;
    frame_writer w(out);
    w.begin(frame_type::ack, frame_flags::fin, 2288, 16380);
    REQUIRE(w.finish(256));
    // LEN 11 = 1 + 4 + 3 + 3; sid f0 80 00; fid fc f0 06.
    CHECK(to_hex(out) == "00 00 00 0b 67 00 00 00 01 f0 80 00 fc f0 06");
}

TEST_CASE("frame: frame_writer appends after existing bytes and refuses oversized frames",
          "[frame]") {
    byte_buffer out;
    out.append(std::string_view("prefix"));
    frame_writer w(out);
    w.begin(frame_type::notify, frame_flags::fin, 1, 1);
    CHECK(w.start() == 6);
    out.append(std::string_view("abc"));
    REQUIRE(w.finish(10));  // LEN 10
    CHECK(to_hex(out) == "70 72 65 66 69 78 00 00 00 0a 03 00 00 00 01 01 01 61 62 63");

    frame_writer w2(out);
    w2.begin(frame_type::notify, frame_flags::fin, 1, 1);
    out.append(std::string_view("abcd"));  // LEN 11
    CHECK_FALSE(w2.finish(10));
    // The refused frame is gone; the earlier contents stay.
    CHECK(out.size() == 20);
    CHECK(to_hex(out) == "70 72 65 66 69 78 00 00 00 0a 03 00 00 00 01 01 01 61 62 63");

    frame_writer w3(out);
    w3.begin(frame_type::ack, frame_flags::fin, 9, 9);
    w3.cancel();
    CHECK(out.size() == 20);
}

TEST_CASE("frame: LEN limits are judged before the body arrives", "[frame]") {
    SECTION("LEN == max_frame_size is accepted") {
        bytes in = from_hex("00 00 01 00 03 00 00 00 01 01 01");
        in.resize(4 + 256, 0x00);  // NOTIFY payload of 249 bytes of 00 (not parsed here)
        frame f;
        const auto r = decode_frame(spoa::test::view(in), 256, f);
        CHECK(r.status == decode_status::ok);
        CHECK(r.size == 260);
        CHECK(f.payload.size() == 249);
    }
    SECTION("LEN == max_frame_size + 1 is refused from the 4-byte prefix alone") {
        const bytes in = from_hex("00 00 01 01");
        frame f;
        const auto r = decode_frame(spoa::test::view(in), 256, f);
        CHECK(r.status == decode_status::error);
        CHECK(r.err == error::frame_too_big);
        CHECK(to_status(r.err) == status_code::frame_too_big);
    }
    SECTION("LEN 0xFFFFFFFF with the largest limit waits for 4 + 2^32 - 1 bytes") {
        const bytes in = from_hex("ff ff ff ff 03 00 00 00 01");
        frame f;
        const auto r = decode_frame(spoa::test::view(in), 0xFFFFFFFFu, f);
        CHECK(r.status == decode_status::need_more);
        CHECK(r.size == std::size_t{4} + 0xFFFFFFFFu);
    }
    SECTION("the smallest frame, LEN 7") {
        const bytes in = from_hex(spoa::test::v7_hex);
        frame f;
        const auto r = decode_frame(spoa::test::view(in), min_frame_size, f);
        CHECK(r.status == decode_status::ok);
        CHECK(f.payload.empty());
    }
}

TEST_CASE("frame: ids may be multi-byte varints, the payload starts after them", "[frame]") {
    // NOTIFY with stream-id 2^64-1 (10 bytes) and frame-id 240 (2 bytes): LEN = 5+10+2+2 = 19.
    const bytes in =
        from_hex("00 00 00 13 03 00 00 00 01 ff f0 fe fe fe fe fe fe fe 0e f0 00 aa bb");
    frame f;
    const auto r = decode_frame(spoa::test::view(in), 256, f);
    REQUIRE(r.status == decode_status::ok);
    CHECK(f.stream_id == std::numeric_limits<std::uint64_t>::max());
    CHECK(f.frame_id == 240);
    CHECK(to_hex(f.payload) == "aa bb");
}

TEST_CASE("frame: type names and known types", "[frame]") {
    CHECK(to_string(frame_type::unset) == "UNSET");
    CHECK(to_string(frame_type::haproxy_hello) == "HAPROXY-HELLO");
    CHECK(to_string(frame_type::haproxy_disconnect) == "HAPROXY-DISCONNECT");
    CHECK(to_string(frame_type::notify) == "NOTIFY");
    CHECK(to_string(frame_type::agent_hello) == "AGENT-HELLO");
    CHECK(to_string(frame_type::agent_disconnect) == "AGENT-DISCONNECT");
    CHECK(to_string(frame_type::ack) == "ACK");
    std::size_t known = 0;
    for (unsigned t = 0; t <= 255; ++t) {
        if (is_known_frame_type(static_cast<std::uint8_t>(t))) ++known;
    }
    CHECK(known == 7);
    for (const unsigned t : {0u, 1u, 2u, 3u, 101u, 102u, 103u})
        CHECK(is_known_frame_type(static_cast<std::uint8_t>(t)));
}

TEST_CASE("frame: byte_buffer reuse, truncate, consume_front, move", "[frame]") {
    byte_buffer b;
    CHECK(b.empty());
    b.append(std::string_view("hello world"));
    b.put_u8(0x21);
    b.put_u32be(0x01020304);
    b.put_varint(2288);
    b.put_length_prefixed("ab");
    CHECK(to_hex(b) == "68 65 6c 6c 6f 20 77 6f 72 6c 64 21 01 02 03 04 f0 80 00 02 61 62");
    b.patch_u32be(12, 0xa0b0c0d0);
    CHECK(to_hex(b.view().subspan(12, 4)) == "a0 b0 c0 d0");

    b.truncate(5);
    CHECK(to_hex(b) == "68 65 6c 6c 6f");
    b.truncate(50);  // never grows
    CHECK(b.size() == 5);
    b.consume_front(2);
    CHECK(to_hex(b) == "6c 6c 6f");
    b.consume_front(10);
    CHECK(b.empty());

    const std::size_t cap = b.capacity();
    const std::uint8_t* storage = b.data();
    b.clear();
    b.append(std::string_view("again"));
    CHECK(b.capacity() == cap);  // reuse: no reallocation
    CHECK(b.data() == storage);

    byte_buffer moved(std::move(b));
    CHECK(to_hex(moved) == "61 67 61 69 6e");
    byte_buffer assigned;
    assigned = std::move(moved);
    CHECK(to_hex(assigned) == "61 67 61 69 6e");
}
