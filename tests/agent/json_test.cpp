// The JSON writer of the admin endpoint and the JSON logs: commas, nesting, and strings that stay
// valid JSON whatever bytes a client sent.

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <string>

#include "spoa/agent/json.hpp"

using spoa::append_json_string;
using spoa::json_writer;

namespace {

std::string quoted(std::string_view s) {
    std::string out;
    append_json_string(out, s);
    return out;
}

}  // namespace

TEST_CASE("json: objects, arrays and scalars get their commas", "[json]") {
    std::string out;
    json_writer w(out);
    w.begin_object()
        .member("a", 1)
        .member("b", "x")
        .key("c")
        .begin_array()
        .value(true)
        .null()
        .value(std::uint64_t{18446744073709551615u})
        .begin_object()
        .end_object()
        .end_array()
        .member("d", -2.5)
        .member("e", std::numeric_limits<double>::infinity())
        .end_object();
    CHECK(out == R"({"a":1,"b":"x","c":[true,null,18446744073709551615,{}],"d":-2.5,"e":null})");
}

TEST_CASE("json: strings are escaped, invalid UTF-8 becomes U+FFFD", "[json]") {
    CHECK(quoted("plain") == R"("plain")");
    CHECK(quoted("q\"b\\") == R"("q\"b\\")");
    CHECK(quoted("\n\r\t") == R"("\n\r\t")");
    CHECK(quoted(std::string("\x00\x01\x1f\x7f", 4)) == R"("\u0000\u0001\u001f\u007f")");
    CHECK(quoted("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") ==
          "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    CHECK(quoted("\xff") == R"("\ufffd")");
    CHECK(quoted("\xc3") == R"("\ufffd")");                                // truncated sequence
    CHECK(quoted("\xc0\xaf") == R"("\ufffd\ufffd")");                      // overlong '/'
    CHECK(quoted("\xed\xa0\x80") == R"("\ufffd\ufffd\ufffd")");            // a UTF-16 surrogate
    CHECK(quoted("\xf4\x90\x80\x80") == R"("\ufffd\ufffd\ufffd\ufffd")");  // above U+10FFFF
}
