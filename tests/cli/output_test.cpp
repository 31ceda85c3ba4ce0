// How spoa-cli prints ACKs (cli/src/ack_output.hpp, json_text.hpp) and its load numbers
// (load_run.hpp).

#include <catch2/catch.hpp>
#include <chrono>
#include <vector>

#include "ack_output.hpp"
#include "json_text.hpp"
#include "load_run.hpp"
#include "value_syntax.hpp"

using namespace spoa::cli;
using namespace spoa::protocol;
using std::chrono::nanoseconds;

TEST_CASE("the table aligns columns and shows unset-var", "[cli][output]") {
    const std::vector<owned_action> actions = {
        {action_type::set_var, var_scope::txn, "backend", parse_typed_value("str:10.0.0.1:80")},
        {action_type::set_var, var_scope::sess, "n", parse_typed_value("int32:-3")},
        {action_type::unset_var, var_scope::txn, "spoa_noop", {}},
    };
    CHECK(actions_table(actions) ==
          "SCOPE  NAME       TYPE   VALUE\n"
          "txn    backend    str    10.0.0.1:80\n"
          "sess   n          int32  -3\n"
          "txn    spoa_noop  unset\n");
}

TEST_CASE("JSON has numbers, booleans, null and escaped strings", "[cli][output]") {
    const std::vector<owned_action> actions = {
        {action_type::set_var, var_scope::req, "i", parse_typed_value("uint64:7")},
        {action_type::set_var, var_scope::req, "b", parse_typed_value("bool:true")},
        {action_type::set_var, var_scope::req, "z", parse_typed_value("null")},
        {action_type::set_var, var_scope::req, "s", parse_typed_value("str:a\"\\\n")},
        {action_type::set_var, var_scope::req, "x", parse_typed_value("bin:00ff")},
        {action_type::unset_var, var_scope::proc, "u", {}},
    };
    CHECK(
        actions_json(actions) ==
        "{\"actions\":["
        "{\"action\":\"set-var\",\"scope\":\"req\",\"name\":\"i\",\"type\":\"uint64\",\"value\":7},"
        "{\"action\":\"set-var\",\"scope\":\"req\",\"name\":\"b\",\"type\":\"bool\",\"value\":true}"
        ","
        "{\"action\":\"set-var\",\"scope\":\"req\",\"name\":\"z\",\"type\":\"null\",\"value\":null}"
        ","
        "{\"action\":\"set-var\",\"scope\":\"req\",\"name\":\"s\",\"type\":\"str\","
        "\"value\":\"a\\\"\\\\\\u000a\"},"
        "{\"action\":\"set-var\",\"scope\":\"req\",\"name\":\"x\",\"type\":\"bin\",\"value\":"
        "\"00ff\"},"
        "{\"action\":\"unset-var\",\"scope\":\"proc\",\"name\":\"u\"}]}\n");
}

TEST_CASE("JSON strings keep UTF-8 and escape invalid bytes", "[cli][output]") {
    CHECK(json_string("caf\xc3\xa9") == "\"caf\xc3\xa9\"");
    CHECK(json_string("\xff") == "\"\\u00ff\"");
    CHECK(json_string("\xc3") == "\"\\u00c3\"");
}

TEST_CASE("percentiles use the nearest rank", "[cli][load]") {
    std::vector<nanoseconds> sorted;
    for (int i = 1; i <= 100; ++i)
        sorted.emplace_back(i);
    CHECK(percentile(sorted, 50) == nanoseconds(50));
    CHECK(percentile(sorted, 90) == nanoseconds(90));
    CHECK(percentile(sorted, 99) == nanoseconds(99));
    CHECK(percentile(sorted, 100) == nanoseconds(100));
    CHECK(percentile({}, 50) == nanoseconds(0));
    const std::vector<nanoseconds> one = {nanoseconds(5)};
    CHECK(percentile(one, 1) == nanoseconds(5));
}
