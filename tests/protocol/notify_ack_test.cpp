// protocol/README.md §5.2, §5.3: NOTIFY messages (V5) and ACK actions (V6, V7) both ways, the
// decoder's reuse, ack_writer's size limit, decode_actions errors.

#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "spoa/protocol/action.hpp"
#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/notify.hpp"
#include "test_support.hpp"

using namespace spoa::protocol;
using spoa::test::bytes;
using spoa::test::decode_one;
using spoa::test::from_hex;
using spoa::test::to_hex;

namespace {

const std::string body_bytes("\x00\x01\xfe\xff", 4);

// V5 as protocol/README.md §11.1 decodes it.
const std::vector<argument> v5_msg1 = {
    {"ip", typed_value::ipv4({192, 168, 1, 10})},
    {"ip6", typed_value::ipv6({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})},
    {"port", typed_value::int64(443)},
    {"ssl", typed_value::boolean(true)},
    {"missing", typed_value::null()},
};
const std::vector<argument> v5_msg2 = {
    {"", typed_value::string("GET")},
    {"path", typed_value::string("/login")},
    {"body", typed_value::binary(std::string_view(body_bytes))},
    {"delta", typed_value::int64(-1)},
    {"big", typed_value::uint64(4294967296u)},
    {"plain", typed_value::boolean(false)},
};

void check_args(std::span<const argument> got, const std::vector<argument>& want) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
        INFO("arg " << i << " '" << want[i].name << "'");
        CHECK(got[i].name == want[i].name);
        CHECK(got[i].value.type() == want[i].value.type());
        CHECK(got[i].value == want[i].value);
    }
}

struct expected_action {
    action_type type;
    var_scope scope;
    std::string_view name;
    typed_value value;
};

// V6 as protocol/README.md §11.1 decodes it.
const std::vector<expected_action> v6_actions = {
    {action_type::set_var, var_scope::sess, "ip_score", typed_value::int32(42)},
    {action_type::set_var, var_scope::txn, "verdict", typed_value::string("allow")},
    {action_type::set_var, var_scope::req, "flag", typed_value::boolean(true)},
    {action_type::set_var, var_scope::res, "peer", typed_value::ipv4({10, 0, 0, 1})},
    {action_type::set_var, var_scope::proc, "hits", typed_value::uint64(1000)},
    {action_type::unset_var, var_scope::txn, "old", typed_value::null()},
};

void check_actions(const std::vector<action>& got, const std::vector<expected_action>& want) {
    REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < want.size(); ++i) {
        INFO("action " << i << " " << want[i].name);
        CHECK(got[i].type == want[i].type);
        CHECK(got[i].scope == want[i].scope);
        CHECK(got[i].name == want[i].name);
        CHECK(got[i].value.type() == want[i].value.type());
        CHECK(got[i].value == want[i].value);
    }
}

}  // namespace

TEST_CASE("notify: V5 decodes to its documented fields", "[notify][vectors]") {
    const bytes in = from_hex(spoa::test::v5_hex);
    const frame f = decode_one(spoa::test::view(in));
    REQUIRE(f.type == frame_type::notify);
    CHECK(f.stream_id == 3);
    CHECK(f.frame_id == 1);

    notify_decoder d;
    REQUIRE(d.decode(f.payload) == error::none);
    REQUIRE(d.messages().size() == 2);
    CHECK(d.messages()[0].name == "check-client-ip");
    check_args(d.messages()[0].args, v5_msg1);
    CHECK(d.messages()[1].name == "check-request");
    check_args(d.messages()[1].args, v5_msg2);
    // Strings view the payload.
    const auto* path = reinterpret_cast<const std::uint8_t*>(d.messages()[1].args[1].name.data());
    CHECK(path >= in.data());
    CHECK(path < in.data() + in.size());
}

TEST_CASE("notify: V5 re-encoded with frame_writer + encode_message is byte-identical",
          "[notify][vectors]") {
    byte_buffer out;
    frame_writer w(out);
    w.begin(frame_type::notify, frame_flags::fin, 3, 1);
    encode_message(out, "check-client-ip", v5_msg1);
    encode_message(out, "check-request", v5_msg2);
    REQUIRE(w.finish(haproxy_default_max_frame_size));
    CHECK(to_hex(out) == to_hex(from_hex(spoa::test::v5_hex)));
}

TEST_CASE("notify: empty payload, zero-arg messages, 255 args, decoder reuse", "[notify]") {
    notify_decoder d;
    SECTION("empty payload is a NOTIFY with no message") {
        REQUIRE(d.decode({}) == error::none);
        CHECK(d.messages().empty());
    }
    SECTION("a message with no argument and one with 255") {
        std::vector<std::string> names;
        for (int i = 0; i < 255; ++i)
            names.push_back("a" + std::to_string(i));
        std::vector<argument> args;
        for (int i = 0; i < 255; ++i)
            args.push_back({names[static_cast<std::size_t>(i)], typed_value::int64(-i)});
        byte_buffer out;
        encode_message(out, "none", {});
        encode_message(out, "many", args);
        encode_message(out, "", {});  // empty message name
        CHECK(to_hex(out.view().first(6)) == "04 6e 6f 6e 65 00");
        REQUIRE(d.decode(out.view()) == error::none);
        REQUIRE(d.messages().size() == 3);
        CHECK(d.messages()[0].name == "none");
        CHECK(d.messages()[0].args.empty());
        CHECK(d.messages()[1].name == "many");
        check_args(d.messages()[1].args, args);
        CHECK(d.messages()[2].name.empty());
        CHECK(d.messages()[2].args.empty());
    }
    SECTION("reuse: a failed decode exposes nothing, a later one works") {
        const bytes v5 = from_hex(spoa::test::v5_hex);
        const bytes_view payload = decode_one(spoa::test::view(v5)).payload;
        REQUIRE(d.decode(payload) == error::none);
        REQUIRE(d.messages().size() == 2);
        CHECK(d.decode(payload.first(payload.size() - 1)) == error::truncated);
        CHECK(d.messages().empty());
        REQUIRE(d.decode(payload) == error::none);
        REQUIRE(d.messages().size() == 2);
        check_args(d.messages()[1].args, v5_msg2);
    }
}

TEST_CASE("notify: round trip of every typed value including edge values", "[notify]") {
    const std::string nul("x\0y", 3);
    const std::vector<argument> args = {
        {"i64min", typed_value::int64(std::numeric_limits<std::int64_t>::min())},
        {"i64max", typed_value::int64(std::numeric_limits<std::int64_t>::max())},
        {"u64max", typed_value::uint64(std::numeric_limits<std::uint64_t>::max())},
        {"i32neg", typed_value::int32(-7)},
        {"i32min", typed_value::int32(std::numeric_limits<std::int32_t>::min())},
        {"u32max", typed_value::uint32(std::numeric_limits<std::uint32_t>::max())},
        {"empty", typed_value::string("")},
        {"nul", typed_value::string(nul)},
        {"bin", typed_value::binary(std::string_view(nul))},
        {"v4", typed_value::ipv4({127, 0, 0, 1})},
        {"v6", typed_value::ipv6({0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2})},
        {"t", typed_value::boolean(true)},
        {"f", typed_value::boolean(false)},
        {"null", typed_value::null()},
        {"", typed_value::uint64(0)},
    };
    byte_buffer out;
    frame_writer w(out);
    w.begin(frame_type::notify, frame_flags::fin, 0, 1);  // stream-id 0 is legal (§9.4)
    encode_message(out, "all-types", args);
    REQUIRE(w.finish(haproxy_default_max_frame_size));
    const frame f = decode_one(out.view());
    notify_decoder d;
    REQUIRE(d.decode(f.payload) == error::none);
    REQUIRE(d.messages().size() == 1);
    CHECK(d.messages()[0].name == "all-types");
    check_args(d.messages()[0].args, args);
    CHECK(d.messages()[0].args[3].value.as_int64() == -7);
    CHECK(d.messages()[0].args[7].value.as_string().size() == 3);
}

TEST_CASE("ack: V6 and V7 decode to their documented fields", "[ack][vectors]") {
    std::vector<action> actions;
    const bytes v6 = from_hex(spoa::test::v6_hex);
    const frame f6 = decode_one(spoa::test::view(v6));
    REQUIRE(f6.type == frame_type::ack);
    CHECK(f6.stream_id == 3);
    CHECK(f6.frame_id == 1);
    REQUIRE(decode_actions(f6.payload, actions) == error::none);
    check_actions(actions, v6_actions);

    const bytes v7 = from_hex(spoa::test::v7_hex);
    const frame f7 = decode_one(spoa::test::view(v7));
    REQUIRE(f7.type == frame_type::ack);
    CHECK(f7.stream_id == 3);
    CHECK(f7.frame_id == 1);
    REQUIRE(decode_actions(f7.payload, actions) == error::none);  // clears the previous list
    CHECK(actions.empty());
}

TEST_CASE("ack: V6 and V7 re-encoded with ack_writer are byte-identical", "[ack][vectors]") {
    byte_buffer out;
    {
        ack_writer ack(out, 3, 1, haproxy_default_max_frame_size);
        CHECK(ack.set_var(var_scope::sess, "ip_score", typed_value::int32(42)));
        CHECK(ack.set_var(var_scope::txn, "verdict", typed_value::string("allow")));
        CHECK(ack.set_var(var_scope::req, "flag", typed_value::boolean(true)));
        CHECK(ack.set_var(var_scope::res, "peer", typed_value::ipv4({10, 0, 0, 1})));
        CHECK(ack.set_var(var_scope::proc, "hits", typed_value::uint64(1000)));
        CHECK(ack.unset_var(var_scope::txn, "old"));
        CHECK(ack.action_count() == 6);
        CHECK(ack.dropped_count() == 0);
        CHECK(ack.payload_size() == 79 - 7);
        ack.finish();
    }
    CHECK(to_hex(out) == to_hex(from_hex(spoa::test::v6_hex)));

    out.clear();
    {
        ack_writer ack(out, 3, 1, haproxy_default_max_frame_size);
        CHECK(ack.payload_size() == 0);
        ack.finish();
    }
    CHECK(to_hex(out) == to_hex(from_hex(spoa::test::v7_hex)));
}

TEST_CASE("ack: encode_set_var/encode_unset_var bytes and sizes", "[ack]") {
    byte_buffer out;
    encode_set_var(out, var_scope::sess, "ip_score", typed_value::int32(42));
    CHECK(to_hex(out) == "01 03 01 08 69 70 5f 73 63 6f 72 65 02 2a");
    CHECK(set_var_size("ip_score", typed_value::int32(42)) == out.size());
    out.clear();
    encode_unset_var(out, var_scope::txn, "old");
    CHECK(to_hex(out) == "02 02 02 03 6f 6c 64");
    CHECK(unset_var_size("old") == out.size());
    const std::string long_name(300, 'n');
    CHECK(unset_var_size(long_name) == 3 + 2 + 300);
    CHECK(set_var_size(long_name, typed_value::int64(-1)) == 3 + 2 + 300 + 11);
}

TEST_CASE("ack: encode_set_var_within stops exactly at its limit", "[ack]") {
    const std::string long_value(200, 'v');
    for (const typed_value& v :
         {typed_value::int32(42), typed_value::uint64(UINT64_MAX), typed_value::string(long_value),
          typed_value::ipv6(std::array<std::uint8_t, 16>{}), typed_value::boolean(true)}) {
        const std::size_t exact = set_var_size("route.ip", v);
        byte_buffer out;
        out.append(std::string_view("prefix"));
        const std::size_t base = out.size();
        // One byte short: refused, nothing written (even though the upper bound would not fit).
        CHECK_FALSE(encode_set_var_within(out, base + exact - 1, var_scope::txn, "route.ip", v));
        CHECK(out.size() == base);
        // Exactly enough: written, the same bytes as encode_set_var.
        REQUIRE(encode_set_var_within(out, base + exact, var_scope::txn, "route.ip", v));
        CHECK(out.size() == base + exact);
        byte_buffer plain;
        encode_set_var(plain, var_scope::txn, "route.ip", v);
        CHECK(to_hex(out).substr(to_hex(out).size() - to_hex(plain).size()) == to_hex(plain));
    }
    byte_buffer over;
    over.append(std::string_view("0123456789"));
    CHECK_FALSE(encode_set_var_within(over, 4, var_scope::txn, "a", typed_value::int32(1)));
    CHECK(over.size() == 10);
}

TEST_CASE("ack: actions that would exceed max_frame_size are refused", "[ack]") {
    constexpr std::uint32_t limit = 256;
    byte_buffer out;
    out.append(std::string_view("earlier frame bytes"));  // the writer appends after them
    const std::size_t start = out.size();
    ack_writer ack(out, 7, 9, limit);
    // Header: 1 type + 4 flags + 1 + 1 ids = 7. Each set-var of a 1-byte name and an 8-byte
    // string takes 3 + 1 + 1 + 1 + 1 + 8 = 15 bytes.
    std::size_t accepted = 0;
    while (ack.set_var(var_scope::txn, "v", typed_value::string("12345678")))
        ++accepted;
    CHECK(accepted == (limit - 7) / 15);  // 16 actions, 247 bytes
    CHECK(ack.action_count() == accepted);
    CHECK(ack.dropped_count() == 1);
    CHECK(ack.payload_size() == accepted * 15);
    const std::size_t before = out.size();

    // Refused: nothing is written.
    CHECK_FALSE(ack.set_var(var_scope::txn, "v", typed_value::string("12345678")));
    CHECK_FALSE(ack.unset_var(var_scope::txn, "0123456"));  // 3 + 1 + 7 = 11 > 9 bytes left
    CHECK(out.size() == before);
    CHECK(ack.dropped_count() == 3);

    // Exactly filling the frame is allowed: 256 - 7 - 240 = 9 bytes left = unset of 5 chars.
    CHECK(ack.unset_var(var_scope::txn, "abcde"));
    CHECK(out.size() == before + 9);
    CHECK_FALSE(ack.unset_var(var_scope::txn, ""));  // even the smallest action no longer fits
    CHECK_FALSE(ack.append_encoded(from_hex("02 02 02 00")));
    CHECK(ack.dropped_count() == 5);
    CHECK(ack.payload_size() == limit - 7);
    ack.finish();

    const bytes_view frame_bytes = out.view().subspan(start);
    CHECK(frame_bytes.size() == 4 + limit);
    frame f;
    const auto r = decode_frame(frame_bytes, limit, f);
    REQUIRE(r.status == decode_status::ok);
    CHECK(r.size == frame_bytes.size());
    CHECK(f.type == frame_type::ack);
    CHECK(f.flags == frame_flags::fin);
    CHECK(f.stream_id == 7);
    CHECK(f.frame_id == 9);
    std::vector<action> actions;
    REQUIRE(decode_actions(f.payload, actions) == error::none);
    CHECK(actions.size() == accepted + 1);
    CHECK(actions.back().type == action_type::unset_var);
    CHECK(actions.back().name == "abcde");
    CHECK(to_hex(out.view().first(start)) == to_hex(spoa::test::to_bytes("earlier frame bytes")));
}

TEST_CASE("ack: a single action larger than the frame is refused, the frame stays valid", "[ack]") {
    const std::string big(300, 'x');
    byte_buffer out;
    ack_writer ack(out, 1, 1, 256);
    CHECK_FALSE(ack.set_var(var_scope::txn, "big", typed_value::binary(std::string_view(big))));
    CHECK(ack.set_var(var_scope::txn, "small", typed_value::int32(1)));
    ack.finish();
    const frame f = decode_one(out.view(), 256);
    std::vector<action> actions;
    REQUIRE(decode_actions(f.payload, actions) == error::none);
    REQUIRE(actions.size() == 1);
    CHECK(actions[0].name == "small");
}

TEST_CASE("ack: append_encoded and reset_actions", "[ack]") {
    byte_buffer pre;
    encode_set_var(pre, var_scope::req, "a", typed_value::uint32(5));
    encode_unset_var(pre, var_scope::res, "b");

    byte_buffer out;
    ack_writer ack(out, 3, 1, 256);
    CHECK(ack.set_var(var_scope::txn, "gone", typed_value::null()));
    ack.reset_actions();
    CHECK(ack.action_count() == 0);
    CHECK(ack.payload_size() == 0);
    CHECK(ack.append_encoded(pre.view()));
    ack.finish();
    CHECK(to_hex(out) == "00 00 00 13 67 00 00 00 01 03 01 01 03 03 01 61 03 05 02 02 04 01 62");
    std::vector<action> actions;
    REQUIRE(decode_actions(decode_one(out.view()).payload, actions) == error::none);
    check_actions(actions, {{action_type::set_var, var_scope::req, "a", typed_value::uint32(5)},
                            {action_type::unset_var, var_scope::res, "b", typed_value::null()}});
}

TEST_CASE("ack: decode_actions round trip of every value type and scope", "[ack]") {
    const std::string nul("\0\0", 2);
    std::vector<expected_action> want;
    const var_scope scopes[] = {var_scope::proc, var_scope::sess, var_scope::txn, var_scope::req,
                                var_scope::res};
    const typed_value values[] = {
        typed_value::null(),
        typed_value::boolean(true),
        typed_value::boolean(false),
        typed_value::int32(-5),
        typed_value::uint32(7),
        typed_value::int64(std::numeric_limits<std::int64_t>::min()),
        typed_value::uint64(std::numeric_limits<std::uint64_t>::max()),
        typed_value::ipv4({1, 2, 3, 4}),
        typed_value::ipv6({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}),
        typed_value::string(nul),
        typed_value::binary(std::string_view("")),
    };
    std::size_t i = 0;
    for (const typed_value& v : values)
        want.push_back({action_type::set_var, scopes[i++ % 5], "n", v});
    for (const var_scope s : scopes)
        want.push_back({action_type::unset_var, s, "u", typed_value::null()});

    byte_buffer out;
    ack_writer ack(out, 1, 2, haproxy_default_max_frame_size);
    for (const auto& a : want) {
        if (a.type == action_type::set_var) {
            REQUIRE(ack.set_var(a.scope, a.name, a.value));
        } else {
            REQUIRE(ack.unset_var(a.scope, a.name));
        }
    }
    ack.finish();
    std::vector<action> got;
    REQUIRE(decode_actions(decode_one(out.view()).payload, got) == error::none);
    check_actions(got, want);
}

TEST_CASE("ack: decode_actions errors", "[ack]") {
    struct row {
        const char* name;
        const char* hex;
        error expected;
    };
    const row rows[] = {
        {"action type 0 (NOOP inside HAProxy)", "00 02 02 01 61", error::bad_action},
        {"action type 3", "03 03 02 01 61 00", error::bad_action},
        {"action type 9", "09 02 02 01 61", error::bad_action},
        {"set-var with 2 args", "01 02 02 01 61 00", error::bad_action},
        {"unset-var with 3 args", "02 03 02 01 61", error::bad_action},
        {"scope 5", "01 03 05 01 61 00", error::bad_scope},
        {"scope 255 in unset-var", "02 02 ff 01 61", error::bad_scope},
        {"only the type byte", "01", error::truncated},
        {"no scope", "01 03", error::truncated},
        {"no name", "01 03 02", error::truncated},
        {"name past the end", "01 03 02 05 61 62", error::truncated},
        {"no value", "01 03 02 01 61", error::truncated},
        {"reserved value type", "01 03 02 01 61 0a", error::reserved_data_type},
        {"value varint too long", "01 03 02 01 61 04 ff ff ff ff ff ff ff ff ff ff 00",
         error::varint_too_long},
        {"good action then a bad one", "02 02 02 01 61 07 02 02 01 61", error::bad_action},
    };
    for (const row& r : rows) {
        INFO(r.name);
        const bytes in = from_hex(r.hex);
        std::vector<action> out;
        const error e = decode_actions(spoa::test::view(in), out);
        CHECK(e == r.expected);
        CHECK(to_status(e) == status_code::invalid_frame);
    }
}

TEST_CASE("ack: scope names", "[ack]") {
    CHECK(to_string(var_scope::proc) == "proc");
    CHECK(to_string(var_scope::sess) == "sess");
    CHECK(to_string(var_scope::txn) == "txn");
    CHECK(to_string(var_scope::req) == "req");
    CHECK(to_string(var_scope::res) == "res");
}
