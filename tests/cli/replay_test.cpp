// spoa-cli replay's pure parts: pairing a recording's NOTIFYs with their ACKs
// (cli/src/recording_file.hpp) and comparing actions (cli/src/replay_compare.hpp).

#include <catch2/catch.hpp>
#include <stdexcept>
#include <vector>

#include "recording_file.hpp"
#include "replay_compare.hpp"
#include "spoa/protocol/recording.hpp"

using namespace spoa::cli;
using namespace spoa::protocol;

namespace {

struct file_builder {
    std::vector<std::uint8_t> bytes{recording_magic.begin(), recording_magic.end()};

    file_builder& add(record_kind kind, std::uint64_t conn, std::uint64_t sid, std::uint64_t fid,
                      std::vector<std::uint8_t> payload) {
        std::uint8_t h[record_header_size];
        encode_record_header({kind, static_cast<std::uint32_t>(payload.size()), conn, sid, fid, 0},
                             std::span<std::uint8_t, record_header_size>(h));
        bytes.insert(bytes.end(), h, h + record_header_size);
        bytes.insert(bytes.end(), payload.begin(), payload.end());
        return *this;
    }
};

owned_action set_str(std::string name, std::string value) {
    owned_value v;
    v.type = data_type::string;
    v.bytes = std::move(value);
    return {action_type::set_var, var_scope::txn, std::move(name), v};
}

}  // namespace

TEST_CASE("ACKs pair with the earliest NOTIFY of the same ids", "[cli][replay]") {
    file_builder f;
    f.add(record_kind::notify, 1, 3, 1, {0x10})
        .add(record_kind::notify, 2, 3, 1, {0x20})
        .add(record_kind::notify, 1, 3, 1, {0x11})  // 2.6 reuses a pair after a timeout
        .add(record_kind::ack, 2, 3, 1, {0xa2})
        .add(record_kind::ack, 1, 3, 1, {0xa1})
        .add(record_kind::ack, 9, 9, 9, {0xff})
        .add(record_kind::notify, 1, 5, 1, {0x12});
    const auto r = parse_recording(f.bytes);
    REQUIRE(r.exchanges.size() == 2);
    CHECK(r.exchanges[0].notify == std::vector<std::uint8_t>{0x10});
    CHECK(r.exchanges[0].ack == std::vector<std::uint8_t>{0xa1});
    CHECK(r.exchanges[1].notify == std::vector<std::uint8_t>{0x20});
    CHECK(r.exchanges[1].ack == std::vector<std::uint8_t>{0xa2});
    CHECK(r.unanswered == 2);
    CHECK(r.orphan_acks == 1);
    CHECK_FALSE(r.truncated);
}

TEST_CASE("a cut last record is reported, a bad file refused", "[cli][replay]") {
    file_builder f;
    f.add(record_kind::notify, 1, 1, 1, {1, 2, 3}).add(record_kind::ack, 1, 1, 1, {4, 5});
    f.bytes.pop_back();
    const auto r = parse_recording(f.bytes);
    CHECK(r.truncated);
    CHECK(r.unanswered == 1);
    const std::vector<std::uint8_t> junk = {'n', 'o', 'p', 'e', 0, 0, 0, 0};
    CHECK_THROWS_AS(parse_recording(junk), std::invalid_argument);
}

TEST_CASE("compare_actions ignores order and ignored names", "[cli][replay]") {
    const std::set<std::string, std::less<>> ignored = {"decision_us"};
    const std::vector<owned_action> recorded = {
        set_str("backend", "a"), set_str("decision_us", "1"), set_str("tenant", "t")};
    const std::vector<owned_action> same = {set_str("tenant", "t"), set_str("backend", "a"),
                                            set_str("decision_us", "99")};
    CHECK(compare_actions(recorded, same, ignored).same());
    const std::vector<owned_action> changed = {set_str("backend", "b"), set_str("tenant", "t")};
    const auto d = compare_actions(recorded, changed, ignored);
    REQUIRE(d.recorded_only.size() == 1);
    CHECK(d.recorded_only[0].value.bytes == "a");
    REQUIRE(d.replayed_only.size() == 1);
    CHECK(d.replayed_only[0].value.bytes == "b");
    CHECK_FALSE(compare_actions(recorded, same, {}).same());
}
