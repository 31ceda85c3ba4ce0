// agent_config::record_file (spoa-agent --record): what lands in the file, read back with the
// format's decoder (spoa/protocol/recording.hpp).

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <thread>
#include <tuple>

#include "agent_test_util.hpp"
#include "spoa/handlers/examples.hpp"
#include "spoa/protocol/recording.hpp"

namespace spoa::testing {
namespace {

struct read_record {
    protocol::record_header header;
    std::vector<std::uint8_t> payload;
};

/// A file name of this test process's own.
std::string record_path(const char* name) {
    return (std::filesystem::temp_directory_path() /
            ("spoa-record-test-" + std::to_string(::getpid()) + "-" + name))
        .string();
}

/// Every record of the file; fails the test on a bad magic, a bad or incomplete record.
std::vector<read_record> read_records(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    const std::vector<std::uint8_t> bytes{std::istreambuf_iterator<char>(in),
                                          std::istreambuf_iterator<char>()};
    REQUIRE(protocol::has_recording_magic(bytes));
    protocol::bytes_view rest = protocol::bytes_view(bytes).subspan(8);
    std::vector<read_record> out;
    while (!rest.empty()) {
        protocol::record r;
        const auto res = protocol::decode_record(rest, r);
        REQUIRE(res.status == protocol::decode_status::ok);
        out.push_back({r.header, {r.payload.begin(), r.payload.end()}});
        rest = rest.subspan(res.size);
    }
    return out;
}

std::vector<std::uint8_t> echo_payload(const std::string& value) {
    return notify_payload(message_spec{"echo", {{"v", typed_value::binary(value)}}});
}

}  // namespace

TEST_CASE("record: a fragmented NOTIFY is recorded whole, then its ACK as sent", "[record]") {
    const std::string path = record_path("fragments");
    auto cfg = test_config();
    cfg.record_file = path;
    {
        test_agent a(cfg);
        handlers::register_echo(a.agent());
        a.start();
        hello_options h;
        h.max_frame_size = 256;
        auto c = a.connect_ready(h);
        const auto big = echo_payload(std::string(100, 'B'));
        const std::size_t chunks[] = {40, 40};
        c.send_fragmented_notify(5, 1, big, chunks);
        const auto ack1 = c.expect(ft::ack);
        const auto small = echo_payload("s");
        c.send_notify(7, 1, small);
        const auto ack2 = c.expect(ft::ack);

        const auto records = read_records(path);
        REQUIRE(records.size() == 4);
        using protocol::record_kind;
        CHECK(records[0].header.kind == record_kind::notify);
        CHECK(records[0].header.stream_id == 5);
        CHECK(records[0].payload == big);
        CHECK(records[1].header.kind == record_kind::ack);
        CHECK(records[1].header.stream_id == 5);
        CHECK(records[1].header.frame_id == 1);
        CHECK(records[1].payload == ack1.payload);
        CHECK(records[2].header.kind == record_kind::notify);
        CHECK(records[2].payload == small);
        CHECK(records[3].header.stream_id == 7);
        CHECK(records[3].payload == ack2.payload);
        for (const auto& r : records) {
            CHECK(r.header.connection_id == records[0].header.connection_id);
            CHECK(r.header.unix_time_ns > 1'600'000'000'000'000'000u);
        }
    }
    std::filesystem::remove(path);
}

TEST_CASE("record: the size bound keeps whole records and the agent answers on", "[record]") {
    const std::string path = record_path("bound");
    auto cfg = test_config();
    cfg.record_file = path;
    cfg.record_max_bytes = 300;
    {
        test_agent a(cfg);
        handlers::register_echo(a.agent());
        a.start();
        auto c = a.connect_ready();
        for (std::uint64_t sid = 1; sid < 40; sid += 2) {
            c.send_notify(sid, 1, echo_payload("0123456789"));
            CHECK(c.expect(ft::ack).stream_id == sid);
        }
        const auto records = read_records(path);
        CHECK(std::filesystem::file_size(path) <= 300);
        CHECK(records.size() >= 2);
        CHECK(records.size() < 40);
    }
    std::filesystem::remove(path);
}

TEST_CASE("record: loop threads write whole records side by side", "[record]") {
    const std::string path = record_path("threads");
    auto cfg = test_config();
    cfg.record_file = path;
    cfg.threads = 2;
    constexpr int clients = 8;
    constexpr std::uint64_t frames = 50;
    {
        test_agent a(cfg);
        handlers::register_echo(a.agent());
        a.start();
        std::vector<std::thread> threads;
        std::atomic<int> acked{0};
        for (int i = 0; i < clients; ++i) {
            threads.emplace_back([&a, &acked, i] {
                auto c = a.connect_ready();
                for (std::uint64_t sid = 1; sid <= frames; ++sid) {
                    c.send_notify(sid, 1, echo_payload(std::to_string(i)));
                    if (c.expect(ft::ack).stream_id == sid) ++acked;
                }
            });
        }
        for (auto& t : threads)
            t.join();
        REQUIRE(acked == clients * static_cast<int>(frames));
        // Every NOTIFY is followed, somewhere later, by its own ACK.
        std::map<std::tuple<std::uint64_t, std::uint64_t>, int> open;
        const auto records = read_records(path);
        CHECK(records.size() == 2 * clients * frames);
        for (const auto& r : records) {
            const auto key = std::make_tuple(r.header.connection_id, r.header.stream_id);
            open[key] += r.header.kind == protocol::record_kind::notify ? 1 : -1;
            CHECK(open[key] >= 0);
        }
        CHECK(open.size() == clients * frames);
        for (const auto& [key, count] : open)
            CHECK(count == 0);
    }
    std::filesystem::remove(path);
}

}  // namespace spoa::testing
