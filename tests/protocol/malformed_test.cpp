// One table of malformed inputs: each row is a byte stream, the error the codec must report and
// the SPOP status that error maps to (protocol/README.md §7.2).

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "malformed_cases.hpp"
#include "pipeline.hpp"
#include "spoa/protocol/error.hpp"
#include "spoa/protocol/frame.hpp"
#include "test_support.hpp"

using namespace spoa::protocol;
using spoa::test::bytes;
using spoa::test::from_hex;
using spoa::test::to_hex;

TEST_CASE("malformed: every row gives its error and status", "[malformed]") {
    const auto& cases = spoa::test::malformed_cases();
    REQUIRE(cases.size() >= 40);
    for (const auto& c : cases) {
        INFO(c.name << ": " << to_hex(c.input));
        const auto r = spoa::test::run_pipeline(spoa::test::view(c.input), c.max_frame_size);
        CHECK_FALSE(r.need_more);
        CHECK(r.err == c.expected);
        CHECK(to_status(r.err) == c.status);
        CHECK(r.frames == c.frames_before);
    }
}

TEST_CASE("malformed: header errors are reported by decode_frame itself", "[malformed]") {
    // The same rows without the pipeline: only those decided by the frame layer.
    for (const auto& c : spoa::test::malformed_cases()) {
        if (!c.header_error) continue;
        INFO(c.name);
        frame f;
        const auto r = decode_frame(spoa::test::view(c.input), c.max_frame_size, f);
        CHECK(r.status == decode_status::error);
        CHECK(r.err == c.expected);
        CHECK(r.size == 0);
    }
}

TEST_CASE("malformed: a FIN-less NOTIFY decodes; refusing it is status 10", "[malformed]") {
    // The connection layer refuses it when fragmentation was not negotiated (protocol/README.md
    // §9) with error::fragmentation_not_supported; the codec reports the missing FIN.
    const bytes in = from_hex("00 00 00 08 03 00 00 00 00 01 01 00");
    frame f;
    const auto r = decode_frame(spoa::test::view(in), 256, f);
    REQUIRE(r.status == decode_status::ok);
    CHECK(f.type == frame_type::notify);
    CHECK(!f.fin());
    CHECK(!f.aborted());
    CHECK(to_status(error::fragmentation_not_supported) ==
          status_code::fragmentation_not_supported);
    CHECK(static_cast<std::uint32_t>(to_status(error::fragmentation_not_supported)) == 10);
}

TEST_CASE("malformed: every error has a status and a description", "[malformed]") {
    struct row {
        error e;
        std::uint32_t status;
    };
    const row rows[] = {
        {error::none, 0},
        {error::truncated, 4},
        {error::varint_too_long, 4},
        {error::varint_overflow, 4},
        {error::frame_too_short, 4},
        {error::frame_too_big, 3},
        {error::unknown_frame_type, 4},
        {error::bad_flags, 4},
        {error::nonzero_ids, 4},
        {error::unexpected_frame, 4},
        {error::reserved_data_type, 4},
        {error::empty_key, 4},
        {error::bad_action, 4},
        {error::bad_scope, 4},
        {error::missing_version, 5},
        {error::missing_max_frame_size, 6},
        {error::missing_capabilities, 7},
        {error::unsupported_version, 8},
        {error::bad_max_frame_size, 9},
        {error::fragmentation_not_supported, 10},
        {error::interlaced_fragments, 11},
        {error::fragment_without_start, 12},
        {error::reassembly_too_big, 3},
        {error::bad_status_code, 4},
        {error::message_too_long, 4},
    };
    for (const row& r : rows) {
        INFO(static_cast<int>(r.e) << " " << to_string(r.e));
        CHECK(static_cast<std::uint32_t>(to_status(r.e)) == r.status);
        CHECK(!to_string(r.e).empty());
        CHECK(to_string(r.e) != "unknown error");
    }
    CHECK(to_string(error::none) == "no error");
}
