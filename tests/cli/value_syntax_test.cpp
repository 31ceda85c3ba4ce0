// spoa-cli's `name=type:value` syntax (cli/src/value_syntax.hpp, message_list.hpp): every SPOP
// type, the limits of each, the errors, and grouping words into messages.

#include <catch2/catch.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "message_list.hpp"
#include "spoa/protocol/notify.hpp"
#include "value_syntax.hpp"

using namespace spoa::cli;
using spoa::protocol::data_type;
using spoa::protocol::owned_value;

namespace {

owned_value value_of(const std::string& text) {
    return parse_argument(text).value;
}

}  // namespace

TEST_CASE("every SPOP type parses and prints back", "[cli][syntax]") {
    struct row {
        std::string text;
        data_type type;
        std::string printed;
    };
    const std::vector<row> rows = {
        {"a=null", data_type::null, ""},
        {"a=null:", data_type::null, ""},
        {"a=bool:true", data_type::boolean, "true"},
        {"a=bool:false", data_type::boolean, "false"},
        {"a=int32:-2147483648", data_type::int32, "-2147483648"},
        {"a=uint32:4294967295", data_type::uint32, "4294967295"},
        {"a=int64:-9223372036854775808", data_type::int64, "-9223372036854775808"},
        {"a=uint64:18446744073709551615", data_type::uint64, "18446744073709551615"},
        {"a=ipv4:192.0.2.1", data_type::ipv4, "192.0.2.1"},
        {"a=ipv6:2001:db8::1", data_type::ipv6, "2001:db8::1"},
        {"a=str:a=b:c d", data_type::string, "a=b:c d"},
        {"a=str:", data_type::string, ""},
        {"a=bin:00FFa0", data_type::binary, "00ffa0"},
    };
    for (const auto& r : rows) {
        INFO(r.text);
        const owned_value v = value_of(r.text);
        CHECK(v.type == r.type);
        CHECK(format_value(v) == r.printed);
    }
}

TEST_CASE("values keep their wire form", "[cli][syntax]") {
    CHECK(value_of("x=int32:-1").integer == 0xFFFFFFFFFFFFFFFFu);
    CHECK(value_of("x=ipv4:10.0.0.1").bytes == std::string("\x0a\x00\x00\x01", 4));
    CHECK(value_of("x=bin:00ff").bytes == std::string("\x00\xff", 2));
    CHECK(value_of("x=ipv6:::1").bytes.size() == 16);
}

TEST_CASE("names may be empty and values may hold = and :", "[cli][syntax]") {
    const auto a = parse_argument("=str:GET");
    CHECK(a.name.empty());
    CHECK(a.value.bytes == "GET");
    const auto b = parse_argument("q=str:k=v:w");
    CHECK(b.name == "q");
    CHECK(b.value.bytes == "k=v:w");
}

TEST_CASE("bad arguments are refused with a reason", "[cli][syntax]") {
    for (const char* bad :
         {"noequals", "a=", "a=str", "a=text:x", "a=bool:yes", "a=int32:2147483648", "a=uint32:-1",
          "a=int64:1.5", "a=uint64:", "a=ipv4:300.0.0.1", "a=ipv6:1.2.3.4", "a=bin:abc", "a=bin:zz",
          "a=null:x", "a=int32: 1"}) {
        INFO(bad);
        CHECK_THROWS_AS(parse_argument(bad), std::invalid_argument);
    }
}

TEST_CASE("type names are the syntax's", "[cli][syntax]") {
    CHECK(type_name(data_type::string) == "str");
    CHECK(type_name(data_type::binary) == "bin");
    CHECK(type_name(data_type::boolean) == "bool");
    CHECK(type_name(data_type::ipv6) == "ipv6");
}

TEST_CASE("words group into messages", "[cli][messages]") {
    const std::vector<std::string> words = {"route-http", "host=str:a.example", "path=str:/",
                                            "check-ip",   "ip=ipv4:192.0.2.1",  "empty"};
    const auto m = parse_messages(words);
    REQUIRE(m.size() == 3);
    CHECK(m[0].name == "route-http");
    CHECK(m[0].args.size() == 2);
    CHECK(m[1].name == "check-ip");
    CHECK(m[1].args.at(0).name == "ip");
    CHECK(m[2].name == "empty");
    CHECK(m[2].args.empty());
}

TEST_CASE("message lists that cannot be sent are refused", "[cli][messages]") {
    CHECK_THROWS_AS(parse_messages(std::vector<std::string>{}), std::invalid_argument);
    CHECK_THROWS_AS(parse_messages(std::vector<std::string>{"a=str:x"}), std::invalid_argument);
    std::vector<std::string> many = {"m"};
    for (int i = 0; i < 256; ++i)
        many.push_back("a" + std::to_string(i) + "=null");
    CHECK_THROWS_AS(parse_messages(many), std::invalid_argument);
    many.pop_back();
    CHECK(parse_messages(many).at(0).args.size() == 255);
}

TEST_CASE("encoded messages decode to the same arguments", "[cli][messages]") {
    const std::vector<std::string> words = {"m1", "s=str:x", "n=int64:-7", "m2", "=bin:0102"};
    const auto messages = parse_messages(words);
    spoa::protocol::byte_buffer payload;
    encode_messages(payload, messages);
    spoa::protocol::notify_decoder d;
    REQUIRE(d.decode(payload.view()) == spoa::protocol::error::none);
    REQUIRE(d.messages().size() == 2);
    CHECK(d.messages()[0].name == "m1");
    CHECK(d.messages()[0].args[1].value.as_int64() == -7);
    CHECK(d.messages()[1].args[0].name.empty());
    CHECK(d.messages()[1].args[0].value.as_string() == std::string("\x01\x02", 2));
}
