// protocol/README.md §5.1, §6: KV lists of V1..V4 (§11) both ways, parse_haproxy_hello, negotiate,
// encode_agent_hello.

#include <catch2/catch.hpp>
#include <string>
#include <utility>
#include <vector>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/hello.hpp"
#include "spoa/protocol/kv_list.hpp"
#include "test_support.hpp"

using namespace spoa::protocol;
using spoa::test::bytes;
using spoa::test::decode_one;
using spoa::test::from_hex;
using spoa::test::to_hex;

namespace {

using kv_pairs = std::vector<std::pair<std::string_view, typed_value>>;

kv_pairs read_all(bytes_view payload) {
    kv_pairs out;
    kv_reader kv(payload);
    while (!kv.done()) {
        std::string_view key;
        typed_value value;
        const error e = kv.next(key, value);
        if (e != error::none) throw std::runtime_error("kv decode failed");
        out.emplace_back(key, value);
    }
    return out;
}

void check_pairs(const kv_pairs& got, const kv_pairs& want) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        INFO("pair " << i << " key " << want[i].first);
        CHECK(got[i].first == want[i].first);
        CHECK(got[i].second.type() == want[i].second.type());
        CHECK(got[i].second == want[i].second);
    }
}

bytes encode_kv_frame(frame_type type, const kv_pairs& pairs) {
    byte_buffer out;
    frame_writer w(out);
    w.begin(type, frame_flags::fin, 0, 0);
    for (const auto& [k, v] : pairs)
        encode_kv(out, k, v);
    if (!w.finish(haproxy_default_max_frame_size)) throw std::runtime_error("too big");
    return bytes(out.data(), out.data() + out.size());
}

constexpr std::string_view engine_id = "8e6a5d2c-1f3b-4c7d-9a0e-2b4f6d8c0a1e";

const kv_pairs v1_pairs = {
    {"supported-versions", typed_value::string("2.0")},
    {"max-frame-size", typed_value::uint32(16380)},
    {"capabilities", typed_value::string("")},
    {"healthcheck", typed_value::boolean(true)},
};
const kv_pairs v2_pairs = {
    {"supported-versions", typed_value::string("2.0")},
    {"max-frame-size", typed_value::uint32(16380)},
    {"capabilities", typed_value::string("pipelining,async")},
    {"engine-id", typed_value::string(engine_id)},
};
const kv_pairs v3_pairs = {
    {"supported-versions", typed_value::string("2.0")},
    {"max-frame-size", typed_value::uint32(16380)},
    {"capabilities", typed_value::string("pipelining")},
    {"engine-id", typed_value::string(engine_id)},
};
const kv_pairs v4_pairs = {
    {"version", typed_value::string("2.0")},
    {"max-frame-size", typed_value::uint32(16380)},
    {"capabilities", typed_value::string("pipelining")},
};

/// A HAPROXY-HELLO payload made of `pairs`.
bytes hello_payload(const kv_pairs& pairs) {
    byte_buffer out;
    for (const auto& [k, v] : pairs)
        encode_kv(out, k, v);
    return bytes(out.data(), out.data() + out.size());
}

haproxy_hello parse_ok(const kv_pairs& pairs, bytes& storage) {
    storage = hello_payload(pairs);
    haproxy_hello h;
    const error e = parse_haproxy_hello(spoa::test::view(storage), h);
    if (e != error::none) throw std::runtime_error("parse failed");
    return h;
}

}  // namespace

TEST_CASE("hello: V1..V4 KV lists decode to their documented fields", "[hello][vectors]") {
    const std::pair<const char*, const kv_pairs*> cases[] = {
        {spoa::test::v1_hex, &v1_pairs},
        {spoa::test::v2_hex, &v2_pairs},
        {spoa::test::v3_hex, &v3_pairs},
        {spoa::test::v4_hex, &v4_pairs},
    };
    for (const auto& [hex, pairs] : cases) {
        const bytes in = from_hex(hex);
        const frame f = decode_one(spoa::test::view(in));
        check_pairs(read_all(f.payload), *pairs);
    }
}

TEST_CASE("hello: V1..V3 re-encoded with frame_writer + encode_kv are byte-identical",
          "[hello][vectors]") {
    CHECK(to_hex(encode_kv_frame(frame_type::haproxy_hello, v1_pairs)) ==
          to_hex(from_hex(spoa::test::v1_hex)));
    CHECK(to_hex(encode_kv_frame(frame_type::haproxy_hello, v2_pairs)) ==
          to_hex(from_hex(spoa::test::v2_hex)));
    CHECK(to_hex(encode_kv_frame(frame_type::haproxy_hello, v3_pairs)) ==
          to_hex(from_hex(spoa::test::v3_hex)));
    CHECK(to_hex(encode_kv_frame(frame_type::agent_hello, v4_pairs)) ==
          to_hex(from_hex(spoa::test::v4_hex)));
}

TEST_CASE("hello: parse_haproxy_hello on V1, V2, V3", "[hello][vectors]") {
    SECTION("V1 health check") {
        const bytes in = from_hex(spoa::test::v1_hex);
        haproxy_hello h;
        REQUIRE(parse_haproxy_hello(decode_one(spoa::test::view(in)).payload, h) == error::none);
        CHECK(h.supported_versions == "2.0");
        CHECK(h.max_frame_size == 16380);
        CHECK(h.capabilities.empty());
        CHECK(h.engine_id.empty());
        CHECK(h.healthcheck);
        CHECK(!h.offers_pipelining);
        CHECK(!h.offers_async);
        CHECK(!h.offers_fragmentation);
    }
    SECTION("V2 2.6 defaults") {
        const bytes in = from_hex(spoa::test::v2_hex);
        haproxy_hello h;
        REQUIRE(parse_haproxy_hello(decode_one(spoa::test::view(in)).payload, h) == error::none);
        CHECK(h.supported_versions == "2.0");
        CHECK(h.max_frame_size == 16380);
        CHECK(h.capabilities == "pipelining,async");
        CHECK(h.engine_id == engine_id);
        CHECK(!h.healthcheck);
        CHECK(h.offers_pipelining);
        CHECK(h.offers_async);
        CHECK(!h.offers_fragmentation);
    }
    SECTION("V3 3.1+ defaults") {
        const bytes in = from_hex(spoa::test::v3_hex);
        haproxy_hello h;
        REQUIRE(parse_haproxy_hello(decode_one(spoa::test::view(in)).payload, h) == error::none);
        CHECK(h.supported_versions == "2.0");
        CHECK(h.max_frame_size == 16380);
        CHECK(h.capabilities == "pipelining");
        CHECK(h.engine_id == engine_id);
        CHECK(!h.healthcheck);
        CHECK(h.offers_pipelining);
        CHECK(!h.offers_async);
        CHECK(!h.offers_fragmentation);
    }
}

TEST_CASE("hello: keys in any order, unknown keys skipped, any integer type for the size",
          "[hello]") {
    bytes storage;
    const haproxy_hello h = parse_ok(
        {
            {"x-future-key", typed_value::ipv4({1, 2, 3, 4})},
            {"capabilities", typed_value::string(" async , pipelining ")},
            {"healthcheck", typed_value::boolean(false)},
            {"max-frame-size", typed_value::int64(1024)},
            {"another", typed_value::null()},
            {"supported-versions", typed_value::string("2.0")},
        },
        storage);
    CHECK(h.max_frame_size == 1024);
    CHECK(h.offers_pipelining);
    CHECK(h.offers_async);
    CHECK(!h.healthcheck);
    CHECK(h.capabilities == " async , pipelining ");
}

TEST_CASE("hello: missing or mistyped keys map to statuses 5, 6, 7, 9", "[hello]") {
    struct row {
        const char* name;
        kv_pairs pairs;
        error expected;
        status_code status;
    };
    const row rows[] = {
        {"no supported-versions",
         {{"max-frame-size", typed_value::uint32(16380)},
          {"capabilities", typed_value::string("pipelining")}},
         error::missing_version,
         status_code::version_not_found},
        {"no max-frame-size",
         {{"supported-versions", typed_value::string("2.0")},
          {"capabilities", typed_value::string("pipelining")}},
         error::missing_max_frame_size,
         status_code::max_frame_size_not_found},
        {"no capabilities",
         {{"supported-versions", typed_value::string("2.0")},
          {"max-frame-size", typed_value::uint32(16380)}},
         error::missing_capabilities,
         status_code::capabilities_not_found},
        {"empty payload", {}, error::missing_version, status_code::version_not_found},
        {"max-frame-size as a STRING",
         {{"supported-versions", typed_value::string("2.0")},
          {"max-frame-size", typed_value::string("16380")},
          {"capabilities", typed_value::string("")}},
         error::bad_max_frame_size,
         status_code::bad_max_frame_size},
        {"max-frame-size above 2^32-1",
         {{"supported-versions", typed_value::string("2.0")},
          {"max-frame-size", typed_value::uint64(0x100000000u)},
          {"capabilities", typed_value::string("")}},
         error::bad_max_frame_size,
         status_code::bad_max_frame_size},
    };
    for (const row& r : rows) {
        INFO(r.name);
        const bytes payload = hello_payload(r.pairs);
        haproxy_hello h;
        const error e = parse_haproxy_hello(spoa::test::view(payload), h);
        CHECK(e == r.expected);
        CHECK(to_status(e) == r.status);
    }
}

TEST_CASE("hello: supported-versions lists", "[hello]") {
    struct row {
        const char* list;
        bool ok;
    };
    const row rows[] = {
        {"2.0", true},     {" 2.0 , 1.0", true}, {"1.0, 2.0", true},
        {"1.0,2.5", true},  // a major version covers its lower minors
        {"02.0", true},    {"1.0", false},       {"3.0", false},
        {"", false},       {"2", false},         {"2.", false},
        {".0", false},     {"2.x", false},       {"20.0", false},
        {"1.0,,", false},
    };
    for (const row& r : rows) {
        INFO('"' << r.list << '"');
        CHECK(supports_version_2_0(r.list) == r.ok);
    }
}

TEST_CASE("hello: capability lists", "[hello]") {
    CHECK(has_capability("pipelining,async", "pipelining"));
    CHECK(has_capability("pipelining,async", "async"));
    CHECK(has_capability(" pipelining , async ", "async"));
    CHECK(!has_capability("pipelining,async", "fragmentation"));
    CHECK(!has_capability("pipelininga", "pipelining"));
    CHECK(!has_capability("", "pipelining"));
    CHECK(!has_capability("pipe lining", "pipelining"));
}

TEST_CASE("hello: negotiate", "[hello]") {
    bytes storage;
    const kv_pairs base = {
        {"supported-versions", typed_value::string(" 2.0 , 1.0")},
        {"max-frame-size", typed_value::uint32(16380)},
        {"capabilities", typed_value::string("pipelining,async")},
    };

    SECTION("versions list with spaces is accepted") {
        const negotiation n = negotiate(parse_ok(base, storage), agent_capabilities{});
        CHECK(n.accepted());
        CHECK(n.refusal == error::none);
        CHECK(n.max_frame_size == 16380);
        CHECK(n.pipelining);
        CHECK(!n.async);  // we do not want async by default
        CHECK(n.fragmentation);
        CHECK(!n.healthcheck);
    }
    SECTION("only 1.0 offered: unsupported_version, status 8") {
        kv_pairs p = base;
        p[0].second = typed_value::string("1.0");
        const negotiation n = negotiate(parse_ok(p, storage), agent_capabilities{});
        CHECK(!n.accepted());
        CHECK(n.refusal == error::unsupported_version);
        CHECK(to_status(n.refusal) == status_code::unsupported_version);
        CHECK(static_cast<std::uint32_t>(to_status(n.refusal)) == 8);
    }
    SECTION("max-frame-size below 256: status 9; exactly 256 accepted") {
        kv_pairs p = base;
        p[1].second = typed_value::uint32(255);
        negotiation n = negotiate(parse_ok(p, storage), agent_capabilities{});
        CHECK(n.refusal == error::bad_max_frame_size);
        CHECK(static_cast<std::uint32_t>(to_status(n.refusal)) == 9);

        p[1].second = typed_value::uint32(0);
        n = negotiate(parse_ok(p, storage), agent_capabilities{});
        CHECK(n.refusal == error::bad_max_frame_size);

        p[1].second = typed_value::uint32(256);
        n = negotiate(parse_ok(p, storage), agent_capabilities{});
        CHECK(n.accepted());
        CHECK(n.max_frame_size == 256);
    }
    SECTION("ours smaller than theirs: ours") {
        agent_capabilities ours;
        ours.max_frame_size = 1024;
        const negotiation n = negotiate(parse_ok(base, storage), ours);
        CHECK(n.max_frame_size == 1024);
    }
    SECTION("ours larger than theirs: theirs") {
        agent_capabilities ours;
        ours.max_frame_size = 65536;
        const negotiation n = negotiate(parse_ok(base, storage), ours);
        CHECK(n.max_frame_size == 16380);
    }
    SECTION("ours below the protocol minimum is raised to 256") {
        agent_capabilities ours;
        ours.max_frame_size = 100;
        const negotiation n = negotiate(parse_ok(base, storage), ours);
        CHECK(n.accepted());
        CHECK(n.max_frame_size == 256);
    }
    SECTION("capabilities are the intersection (fragmentation is ours alone)") {
        struct row {
            const char* offered;
            bool we_pipeline, we_async, we_frag;
            bool pipelining, async, fragmentation;
        };
        const row rows[] = {
            {"pipelining,async", true, true, false, true, true, false},
            {"pipelining,async", false, true, false, false, true, false},
            {"pipelining", true, true, true, true, false, true},
            {"async", true, true, false, false, true, false},
            {"", true, true, true, false, false, true},
            {"fragmentation", true, false, false, false, false, false},
            {"pipelining,async,fragmentation", false, false, false, false, false, false},
        };
        for (const row& r : rows) {
            INFO("offered \"" << r.offered << "\" ours " << r.we_pipeline << r.we_async
                              << r.we_frag);
            kv_pairs p = base;
            p[2].second = typed_value::string(r.offered);
            agent_capabilities ours;
            ours.pipelining = r.we_pipeline;
            ours.async = r.we_async;
            ours.fragmentation = r.we_frag;
            const negotiation n = negotiate(parse_ok(p, storage), ours);
            REQUIRE(n.accepted());
            CHECK(n.pipelining == r.pipelining);
            CHECK(n.async == r.async);
            CHECK(n.fragmentation == r.fragmentation);
        }
    }
    SECTION("healthcheck flag is carried (V1)") {
        const bytes in = from_hex(spoa::test::v1_hex);
        haproxy_hello h;
        REQUIRE(parse_haproxy_hello(decode_one(spoa::test::view(in)).payload, h) == error::none);
        const negotiation n = negotiate(h, agent_capabilities{});
        CHECK(n.accepted());
        CHECK(n.healthcheck);
        CHECK(!n.pipelining);  // V1 offers no capability
    }
}

TEST_CASE("hello: encode_agent_hello matches V4 for pipelining only at 16380", "[hello][vectors]") {
    const bytes in = from_hex(spoa::test::v3_hex);
    haproxy_hello h;
    REQUIRE(parse_haproxy_hello(decode_one(spoa::test::view(in)).payload, h) == error::none);
    agent_capabilities ours;
    ours.fragmentation = false;
    const negotiation n = negotiate(h, ours);
    REQUIRE(n.accepted());
    CHECK(n.max_frame_size == 16380);
    CHECK(n.pipelining);
    CHECK(!n.async);
    CHECK(!n.fragmentation);

    byte_buffer out;
    out.append(std::string_view("xy"));  // appends after existing contents
    encode_agent_hello(out, n);
    CHECK(to_hex(out.view().subspan(2)) == to_hex(from_hex(spoa::test::v4_hex)));
}

TEST_CASE("hello: encode_agent_hello capability strings", "[hello]") {
    struct row {
        bool pipelining, async, fragmentation;
        const char* caps;
    };
    const row rows[] = {
        {false, false, false, ""},
        {true, false, false, "pipelining"},
        {true, false, true, "pipelining,fragmentation"},
        {true, true, true, "pipelining,async,fragmentation"},
        {false, true, false, "async"},
        {false, false, true, "fragmentation"},
    };
    for (const row& r : rows) {
        INFO(r.caps);
        negotiation n;
        n.max_frame_size = 1024;
        n.pipelining = r.pipelining;
        n.async = r.async;
        n.fragmentation = r.fragmentation;
        byte_buffer out;
        encode_agent_hello(out, n);
        const frame f = decode_one(out.view());
        CHECK(f.type == frame_type::agent_hello);
        CHECK(f.flags == frame_flags::fin);
        CHECK(f.stream_id == 0);
        CHECK(f.frame_id == 0);
        check_pairs(read_all(f.payload), {
                                             {"version", typed_value::string("2.0")},
                                             {"max-frame-size", typed_value::uint32(1024)},
                                             {"capabilities", typed_value::string(r.caps)},
                                         });
    }
}

TEST_CASE("hello: the negotiated fragmentation capability is announced", "[hello]") {
    const bytes in = from_hex(spoa::test::v2_hex);
    haproxy_hello h;
    REQUIRE(parse_haproxy_hello(decode_one(spoa::test::view(in)).payload, h) == error::none);
    const negotiation n = negotiate(h, agent_capabilities{});  // fragmentation on by default
    REQUIRE(n.fragmentation);
    byte_buffer out;
    encode_agent_hello(out, n);
    // LEN = 7 + "version" kv (13) + "max-frame-size" kv (19) + "capabilities" kv (15 + 24).
    CHECK(to_hex(out.view().first(4)) == "00 00 00 4e");
    const frame f = decode_one(out.view());
    const kv_pairs pairs = read_all(f.payload);
    REQUIRE(pairs.size() == 3);
    CHECK(pairs[2].second.as_string() == "pipelining,fragmentation");
}

TEST_CASE("hello: KV round trip of every typed value, any key length", "[hello]") {
    const std::string nul("k\0v", 3);
    const std::string long_key(240, 'k');  // 2-byte key length varint (f0 00)
    const kv_pairs pairs = {
        {"null", typed_value::null()},
        {"t", typed_value::boolean(true)},
        {"f", typed_value::boolean(false)},
        {"i32", typed_value::int32(-2147483647 - 1)},
        {"u32", typed_value::uint32(4294967295u)},
        {"i64", typed_value::int64(-9223372036854775807 - 1)},
        {"u64", typed_value::uint64(18446744073709551615u)},
        {"v4", typed_value::ipv4({10, 0, 0, 1})},
        {"v6", typed_value::ipv6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1})},
        {"s", typed_value::string(nul)},
        {"empty", typed_value::string("")},
        {"b", typed_value::binary(std::string_view(nul))},
        {long_key, typed_value::uint32(1)},
    };
    const bytes payload = hello_payload(pairs);
    CHECK(to_hex(spoa::test::view(payload).first(7)) == "04 6e 75 6c 6c 00 01");
    check_pairs(read_all(spoa::test::view(payload)), pairs);
}
