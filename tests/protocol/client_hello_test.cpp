// protocol/README.md §6 from HAProxy's side: the HAPROXY-HELLO payloads of V1 to V3 byte for
// byte, and the AGENT-HELLO V4 parsed back.

#include <catch2/catch.hpp>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/client_hello.hpp"
#include "spoa/protocol/kv_list.hpp"
#include "test_support.hpp"

using namespace spoa::protocol;
using spoa::test::from_hex;
using spoa::test::to_hex;

namespace {

/// The payload of a golden frame: everything after the 11 header bytes (all have one-byte ids).
std::string payload_hex(const char* frame_hex) {
    const auto b = from_hex(frame_hex);
    return to_hex(bytes_view(b).subspan(11));
}

std::string encoded(const haproxy_hello_options& opts) {
    byte_buffer out;
    encode_haproxy_hello_payload(out, opts);
    return to_hex(out.view());
}

}  // namespace

TEST_CASE("HAPROXY-HELLO payloads match V1, V2 and V3", "[client_hello]") {
    CHECK(encoded(haproxy_hello_options::healthcheck_hello()) == payload_hex(spoa::test::v1_hex));
    CHECK(encoded(haproxy_hello_options::v2_6()) == payload_hex(spoa::test::v2_hex));
    CHECK(encoded(haproxy_hello_options::v3()) == payload_hex(spoa::test::v3_hex));
}

TEST_CASE("a key set to nullopt is left out", "[client_hello]") {
    haproxy_hello_options h;
    h.max_frame_size.reset();
    byte_buffer out;
    encode_haproxy_hello_payload(out, h);
    kv_reader kv(out.view());
    while (!kv.done()) {
        std::string_view key;
        typed_value value;
        REQUIRE(kv.next(key, value) == error::none);
        CHECK(key != "max-frame-size");
    }
}

TEST_CASE("AGENT-HELLO V4 parses", "[client_hello]") {
    const auto frame = from_hex(spoa::test::v4_hex);
    agent_hello h;
    REQUIRE(parse_agent_hello(bytes_view(frame).subspan(11), h) == error::none);
    CHECK(h.version == "2.0");
    CHECK(h.max_frame_size == 16380);
    CHECK(h.capabilities == "pipelining");
}

TEST_CASE("AGENT-HELLO without version or max-frame-size is refused", "[client_hello]") {
    agent_hello h;
    byte_buffer no_version;
    encode_kv(no_version, "max-frame-size", typed_value::uint32(16380));
    CHECK(parse_agent_hello(no_version.view(), h) == error::missing_version);
    byte_buffer no_size;
    encode_kv(no_size, "version", typed_value::string("2.0"));
    CHECK(parse_agent_hello(no_size.view(), h) == error::bad_max_frame_size);
    byte_buffer bad_caps;
    encode_kv(bad_caps, "version", typed_value::string("2.0"));
    encode_kv(bad_caps, "max-frame-size", typed_value::uint32(16380));
    encode_kv(bad_caps, "capabilities", typed_value::uint32(1));
    CHECK(parse_agent_hello(bad_caps.view(), h) == error::missing_capabilities);
}
