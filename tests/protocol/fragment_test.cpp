// protocol/README.md §9: reassembly of fragmented NOTIFYs (NOTIFY without FIN, UNSET continuations,
// FIN ends, FIN|ABORT drops) and the reassembly cap.

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/fragment_assembler.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/notify.hpp"
#include "test_support.hpp"

using namespace spoa::protocol;
using spoa::test::bytes;
using spoa::test::decode_one;
using spoa::test::from_hex;
using spoa::test::make_frame;
using spoa::test::to_hex;

namespace {

bytes v5_payload() {
    static const bytes v5 = from_hex(spoa::test::v5_hex);
    const frame f = decode_one(spoa::test::view(v5));
    return bytes(f.payload.begin(), f.payload.end());
}

}  // namespace

TEST_CASE("fragments: three fragments reassemble to the original payload, which parses",
          "[fragment]") {
    const bytes payload = v5_payload();
    // Split between the two messages (offset 68) and inside the "/login" STRING value (offset
    // 99 is after "08 06 2f 6c 6f"), like HAProxy does: the type byte and the length varint are
    // in the earlier fragment.
    const std::size_t cut1 = 68;
    const std::size_t cut2 = 99;
    REQUIRE(payload[cut1] == 0x0d);
    REQUIRE(to_hex(spoa::test::view(payload).subspan(cut2 - 5, 5)) == "08 06 2f 6c 6f");
    const bytes_view p = spoa::test::view(payload);
    const bytes stream = spoa::test::concat({
        make_frame(frame_type::notify, 0, 5, 1, p.first(cut1)),
        make_frame(frame_type::unset, 0, 5, 1, p.subspan(cut1, cut2 - cut1)),
        make_frame(frame_type::unset, frame_flags::fin, 5, 1, p.subspan(cut2)),
    });

    fragment_assembler assembler(1 << 20);
    std::size_t offset = 0;
    std::vector<fragment_assembler::outcome> outcomes;
    while (offset < stream.size()) {
        frame f;
        const auto r = decode_frame(spoa::test::view(stream).subspan(offset),
                                    haproxy_default_max_frame_size, f);
        REQUIRE(r.status == decode_status::ok);
        offset += r.size;
        const auto res = assembler.feed(f);
        CHECK(res.err == error::none);
        outcomes.push_back(res.what);
        if (res.what == fragment_assembler::outcome::pending) {
            CHECK(assembler.in_progress());
            CHECK(assembler.stream_id() == 5);
            CHECK(assembler.frame_id() == 1);
        }
    }
    REQUIRE(outcomes.size() == 3);
    CHECK(outcomes[0] == fragment_assembler::outcome::pending);
    CHECK(outcomes[1] == fragment_assembler::outcome::pending);
    CHECK(outcomes[2] == fragment_assembler::outcome::complete);
    CHECK(!assembler.in_progress());
    CHECK(to_hex(assembler.payload()) == to_hex(payload));

    notify_decoder d;
    REQUIRE(d.decode(assembler.payload()) == error::none);
    REQUIRE(d.messages().size() == 2);
    CHECK(d.messages()[1].args[1].value.as_string() == "/login");
}

TEST_CASE("fragments: the final UNSET seen live on HAProxy 2.6.12 (protocol/README.md §11.3)",
          "[fragment]") {
    // NOTIFY (flags 0) with the start, then the recorded last fragment: LEN 11, UNSET, FIN,
    // sid 2, fid 2, "AAAA".
    const bytes first =
        make_frame(frame_type::notify, 0, 2, 2,
                   spoa::test::view(from_hex("04 62 6f 64 79 01 00 09 08 41 41 41 41")));
    const bytes last = from_hex("00 00 00 0b 00 00 00 00 01 02 02 41 41 41 41");
    fragment_assembler assembler(1024);
    CHECK(assembler.feed(decode_one(spoa::test::view(first))).what ==
          fragment_assembler::outcome::pending);
    const frame f = decode_one(spoa::test::view(last));
    CHECK(f.type == frame_type::unset);
    const auto r = assembler.feed(f);
    CHECK(r.what == fragment_assembler::outcome::complete);
    notify_decoder d;
    REQUIRE(d.decode(assembler.payload()) == error::none);
    REQUIRE(d.messages().size() == 1);
    CHECK(d.messages()[0].name == "body");
    REQUIRE(d.messages()[0].args.size() == 1);
    CHECK(d.messages()[0].args[0].value.type() == data_type::binary);
    CHECK(d.messages()[0].args[0].value.as_string() == "AAAAAAAA");
}

TEST_CASE("fragments: a NOTIFY with FIN completes at once", "[fragment]") {
    const bytes payload = v5_payload();
    fragment_assembler assembler(1024);
    const bytes fr =
        make_frame(frame_type::notify, frame_flags::fin, 3, 1, spoa::test::view(payload));
    const auto r = assembler.feed(decode_one(spoa::test::view(fr)));
    CHECK(r.what == fragment_assembler::outcome::complete);
    CHECK(r.err == error::none);
    CHECK(!assembler.in_progress());
    CHECK(to_hex(assembler.payload()) == to_hex(payload));
}

TEST_CASE("fragments: FIN|ABORT discards, then a new NOTIFY starts cleanly", "[fragment]") {
    fragment_assembler assembler(1024);
    const bytes a = make_frame(frame_type::notify, 0, 9, 4, spoa::test::view(from_hex("01 61")));
    const bytes b = make_frame(frame_type::unset, 0, 9, 4, spoa::test::view(from_hex("00")));
    // protocol/README.md §9: HAProxy's cancel is an UNSET with FIN|ABORT and an empty payload.
    const bytes abort = from_hex("00 00 00 07 00 00 00 00 03 09 04");
    CHECK(assembler.feed(decode_one(spoa::test::view(a))).what ==
          fragment_assembler::outcome::pending);
    CHECK(assembler.feed(decode_one(spoa::test::view(b))).what ==
          fragment_assembler::outcome::pending);
    const auto r = assembler.feed(decode_one(spoa::test::view(abort)));
    CHECK(r.what == fragment_assembler::outcome::aborted);
    CHECK(r.err == error::none);
    CHECK(!assembler.in_progress());
    CHECK(assembler.payload().empty());

    // After the abort nothing is open: a continuation is refused, a new NOTIFY is fine.
    const auto orphan = assembler.feed(decode_one(spoa::test::view(b)));
    CHECK(orphan.what == fragment_assembler::outcome::failed);
    CHECK(orphan.err == error::fragment_without_start);

    const bytes c = make_frame(frame_type::notify, 0, 10, 1, spoa::test::view(from_hex("01 62")));
    const bytes d =
        make_frame(frame_type::unset, frame_flags::fin, 10, 1, spoa::test::view(from_hex("00")));
    CHECK(assembler.feed(decode_one(spoa::test::view(c))).what ==
          fragment_assembler::outcome::pending);
    CHECK(assembler.feed(decode_one(spoa::test::view(d))).what ==
          fragment_assembler::outcome::complete);
    CHECK(to_hex(assembler.payload()) == "01 62 00");
}

TEST_CASE("fragments: the reassembly cap", "[fragment]") {
    const bytes ten(10, 0x41);
    const bytes_view p = spoa::test::view(ten);

    SECTION("exactly the cap is accepted") {
        fragment_assembler assembler(20);
        CHECK(
            assembler.feed(decode_one(spoa::test::view(make_frame(frame_type::notify, 0, 1, 1, p))))
                .what == fragment_assembler::outcome::pending);
        const auto r = assembler.feed(
            decode_one(spoa::test::view(make_frame(frame_type::unset, frame_flags::fin, 1, 1, p))));
        CHECK(r.what == fragment_assembler::outcome::complete);
        CHECK(assembler.payload().size() == 20);
    }
    SECTION("one byte above the cap fails with reassembly_too_big (status 3) and closes") {
        fragment_assembler assembler(19);
        CHECK(
            assembler.feed(decode_one(spoa::test::view(make_frame(frame_type::notify, 0, 1, 1, p))))
                .what == fragment_assembler::outcome::pending);
        const auto r =
            assembler.feed(decode_one(spoa::test::view(make_frame(frame_type::unset, 0, 1, 1, p))));
        CHECK(r.what == fragment_assembler::outcome::failed);
        CHECK(r.err == error::reassembly_too_big);
        CHECK(to_status(r.err) == status_code::frame_too_big);
        CHECK(!assembler.in_progress());
    }
    SECTION("a first fragment above the cap fails at once") {
        fragment_assembler assembler(9);
        const auto r = assembler.feed(
            decode_one(spoa::test::view(make_frame(frame_type::notify, 0, 1, 1, p))));
        CHECK(r.what == fragment_assembler::outcome::failed);
        CHECK(r.err == error::reassembly_too_big);
        CHECK(!assembler.in_progress());
    }
}

TEST_CASE("fragments: interlaced and unexpected frames", "[fragment]") {
    const bytes one = from_hex("00");
    const bytes_view p = spoa::test::view(one);
    struct row {
        const char* name;
        bytes second;
        error expected;
        status_code status;
    };
    const row rows[] = {
        {"UNSET with another stream-id", make_frame(frame_type::unset, 0, 2, 1, p),
         error::interlaced_fragments, status_code::interlaced_frames},
        {"UNSET with another frame-id", make_frame(frame_type::unset, frame_flags::fin, 1, 2, p),
         error::interlaced_fragments, status_code::interlaced_frames},
        {"a new NOTIFY", make_frame(frame_type::notify, frame_flags::fin, 3, 1, p),
         error::interlaced_fragments, status_code::interlaced_frames},
        {"an ACK", make_frame(frame_type::ack, frame_flags::fin, 1, 1, p), error::unexpected_frame,
         status_code::invalid_frame},
    };
    for (const row& r : rows) {
        INFO(r.name);
        fragment_assembler assembler(1024);
        REQUIRE(
            assembler.feed(decode_one(spoa::test::view(make_frame(frame_type::notify, 0, 1, 1, p))))
                .what == fragment_assembler::outcome::pending);
        const auto res = assembler.feed(decode_one(spoa::test::view(r.second)));
        CHECK(res.what == fragment_assembler::outcome::failed);
        CHECK(res.err == r.expected);
        CHECK(to_status(res.err) == r.status);
    }
}

TEST_CASE("fragments: UNSET without a start is frame-id not found (12)", "[fragment]") {
    fragment_assembler assembler(1024);
    const bytes u = make_frame(frame_type::unset, frame_flags::fin, 1, 1, {});
    const auto r = assembler.feed(decode_one(spoa::test::view(u)));
    CHECK(r.what == fragment_assembler::outcome::failed);
    CHECK(r.err == error::fragment_without_start);
    CHECK(static_cast<std::uint32_t>(to_status(r.err)) == 12);
}
