// spoa::reply on its own buffer: names checked, the frame-size limit enforced per action,
// pre-encoded actions appended whole or not at all.

#include <catch2/catch.hpp>

#include <type_traits>

#include "spoa/agent/message.hpp"
#include "spoa/agent/reply.hpp"
#include "spoa/protocol/action.hpp"

using namespace spoa;

// What the types say about their lifetime, checked where users would break it: a message views
// the frame being handled, so `[msg]` in a lambda that outlives the handler must not compile;
// replies that write into the agent's frames are made by the agent only.
static_assert(!std::is_copy_constructible_v<message> && !std::is_move_constructible_v<message>);
static_assert(!std::is_copy_assignable_v<message>);
static_assert(!std::is_constructible_v<async_reply, detail::async_state*>);
static_assert(
    !std::is_constructible_v<reply, protocol::byte_buffer&, std::size_t, detail::deferral*>);
static_assert(std::is_constructible_v<reply, protocol::byte_buffer&, std::size_t>);
static_assert(std::is_move_constructible_v<async_reply>);

namespace {

protocol::byte_buffer encoded_pair() {
    protocol::byte_buffer b;
    protocol::encode_set_var(b, var_scope::txn, "ip", typed_value::int32(1));
    protocol::encode_set_var(b, var_scope::txn, "port", typed_value::int32(2));
    return b;
}

}  // namespace

TEST_CASE("reply: append_encoded gives the bytes set() would have written", "[reply]") {
    protocol::byte_buffer direct;
    reply a(direct, 1024);
    REQUIRE(a.set(var_scope::txn, "ip", typed_value::int32(1)));
    REQUIRE(a.set(var_scope::txn, "port", typed_value::int32(2)));

    protocol::byte_buffer appended;
    reply b(appended, 1024);
    const auto pair = encoded_pair();
    REQUIRE(b.append_encoded(pair.view(), 2));
    CHECK(b.count() == 2);
    CHECK(b.refused() == 0);
    CHECK(std::vector<std::uint8_t>(appended.view().begin(), appended.view().end()) ==
          std::vector<std::uint8_t>(direct.view().begin(), direct.view().end()));
}

TEST_CASE("reply: append_encoded past the limit writes nothing and counts every action",
          "[reply]") {
    const auto pair = encoded_pair();
    protocol::byte_buffer out;
    reply exact(out, pair.size());
    CHECK(exact.append_encoded(pair.view(), 2));
    CHECK(out.size() == pair.size());

    protocol::byte_buffer small;
    reply r(small, pair.size() - 1);
    CHECK_FALSE(r.append_encoded(pair.view(), 2));
    CHECK(small.size() == 0);
    CHECK(r.count() == 0);
    CHECK(r.refused() == 2);
}

TEST_CASE("reply: bad names and oversized values are refused, the rest kept", "[reply]") {
    protocol::byte_buffer out;
    reply r(out, 64);
    CHECK_FALSE(r.set_string(var_scope::txn, "bad-name", "x"));
    CHECK_FALSE(r.set_string(var_scope::txn, "", "x"));
    CHECK_FALSE(r.set_string(var_scope::txn, "big", std::string(100, 'v')));
    CHECK(r.set_string(var_scope::txn, "ok_name.1", "x"));
    CHECK(r.count() == 1);
    CHECK(r.refused() == 3);
    CHECK(out.size() == protocol::set_var_size("ok_name.1", typed_value::string("x")));
}
