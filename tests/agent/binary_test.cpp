// The real spoa-agent executable: --example echo, SIGTERM drains, a second SIGTERM exits at once.

#include <signal.h>

#include <charconv>
#include <cstring>

#include "agent_test_util.hpp"

#ifndef SPOA_AGENT_BINARY
#error "SPOA_AGENT_BINARY must name the spoa-agent executable"
#endif

namespace spoa::testing {
namespace {

/// Starts spoa-agent on 127.0.0.1:0 and learns its port from the "listening on" log line.
struct agent_process {
    explicit agent_process(std::vector<std::string> extra = {})
        : child(make_args(std::move(extra))) {
        const auto line = child.wait_for_line("listening on 127.0.0.1:", 10s);
        INFO(child.output());
        REQUIRE(line);
        const std::size_t at = line->find("127.0.0.1:") + 10;
        const auto [p, ec] = std::from_chars(line->data() + at, line->data() + line->size(), port);
        REQUIRE(ec == std::errc());
        REQUIRE(port != 0);
    }

    static std::vector<std::string> make_args(std::vector<std::string> extra) {
        std::vector<std::string> args = {
            SPOA_AGENT_BINARY, "--listen", "127.0.0.1:0", "--threads", "1",
            "--example",       "echo",     "--log-level", "info"};
        args.insert(args.end(), extra.begin(), extra.end());
        return args;
    }

    child_process child;
    std::uint16_t port = 0;
};

}  // namespace

TEST_CASE("binary: spoa-agent --example echo answers, and SIGTERM drains with DISCONNECT 0",
          "[binary]") {
    agent_process p;
    auto c = fake_haproxy::connect_tcp("127.0.0.1", p.port);
    CHECK(c.handshake(hello_options::v2_6()).kv_string("capabilities") ==
          "pipelining,fragmentation");
    c.send_notify(0, 1, message_spec{"echo", {{"", typed_value::string("GET")}}});
    CHECK(c.expect(ft::ack).actions() ==
          std::vector<owned_action>{set_txn("arg0", typed_value::string("GET"))});

    p.child.signal(SIGTERM);
    CHECK(c.expect_disconnect() == 0);
    CHECK(c.wait_closed() == close_kind::eof);
    c.close();
    const auto status = p.child.wait_exit(5s);
    INFO(p.child.output());
    REQUIRE(status);
    CHECK(*status == 0);
    CHECK(p.child.output().find("draining") != std::string::npos);
}

TEST_CASE("binary: a second SIGTERM during a slow drain exits at once", "[binary]") {
    // The drain is slow because our connection never closes after the DISCONNECT: the agent
    // waits for it up to its close linger, here a minute (and the drain may last two). Exiting
    // within 30 s of the second signal can only be the second signal's doing.
    agent_process p({"--close-linger", "60000", "--drain-timeout", "120000"});
    auto c = fake_haproxy::connect_tcp("127.0.0.1", p.port);
    (void)c.handshake();
    p.child.signal(SIGTERM);
    CHECK(c.expect_disconnect() == 0);
    REQUIRE(p.child.running());  // draining: we hold the connection open

    p.child.signal(SIGTERM);
    const auto status = p.child.wait_exit(30s);
    INFO(p.child.output());
    REQUIRE(status);
    CHECK(*status == 0);
    CHECK(p.child.output().find("stopping now") != std::string::npos);
}

TEST_CASE("binary: SIGTERM as soon as it says listening drains, never kills", "[binary]") {
    // The signal handlers must be installed before the "listening" line: a supervisor that
    // sends SIGTERM right after the agent came up must get a drain and exit code 0, not a
    // death by signal (exit 128 + 15). The window is short, so try a few times.
    for (int i = 0; i < 5; ++i) {
        INFO("attempt " << i);
        agent_process p;
        p.child.signal(SIGTERM);
        const auto status = p.child.wait_exit(5s);
        INFO(p.child.output());
        REQUIRE(status);
        CHECK(*status == 0);
    }
}

TEST_CASE("binary: bad arguments exit with status 2", "[binary]") {
    child_process bad({SPOA_AGENT_BINARY, "--listen", "nonsense", "--example", "echo"});
    const auto status = bad.wait_exit(5s);
    REQUIRE(status);
    CHECK(*status == 2);
    child_process unknown({SPOA_AGENT_BINARY, "--listen", "127.0.0.1:0", "--example", "nope"});
    const auto status2 = unknown.wait_exit(5s);
    REQUIRE(status2);
    CHECK(*status2 == 2);
    // --check validates a routing file: without one, "OK" would be a lie.
    child_process check({SPOA_AGENT_BINARY, "--listen", "127.0.0.1:0", "--check"});
    const auto status3 = check.wait_exit(5s);
    REQUIRE(status3);
    CHECK(*status3 == 2);
    CHECK(check.output().find("--check needs") != std::string::npos);
}

TEST_CASE("binary: --check FILE validates that file, --config or not", "[binary]") {
    const std::string good = SPOA_SOURCE_DIR "/haproxy/routing.example.yaml";
    child_process ok({SPOA_AGENT_BINARY, "--check", good});
    const auto status = ok.wait_exit(10s);
    INFO(ok.output());
    REQUIRE(status);
    CHECK(*status == 0);
    // A file that is not a routing configuration is refused, with exit 2 and the reason.
    child_process bad({SPOA_AGENT_BINARY, "--check", SPOA_SOURCE_DIR "/CMakeLists.txt"});
    const auto bad_status = bad.wait_exit(10s);
    REQUIRE(bad_status);
    CHECK(*bad_status == 2);
    CHECK(bad.output().find("CMakeLists.txt") != std::string::npos);
}

namespace {

/// Runs `spoa-agent --probe host:port` and returns its exit status.
int probe(std::uint16_t port) {
    child_process p({SPOA_AGENT_BINARY, "--probe", "127.0.0.1:" + std::to_string(port)});
    const auto status = p.wait_exit(10s);  // the probe's own bound is 3 s
    REQUIRE(status);
    return *status;
}

}  // namespace

TEST_CASE("binary: --probe is healthy while serving, not while draining nor when down",
          "[binary]") {
    // A long drain grace: after SIGTERM the agent keeps serving but /healthz answers 503.
    agent_process p({"--admin", "127.0.0.1:0", "--drain-grace", "60000"});
    const std::string& out = p.child.output();
    const std::size_t at = out.find("admin on http://127.0.0.1:");
    REQUIRE(at != std::string::npos);
    const std::size_t digits = at + std::strlen("admin on http://127.0.0.1:");
    std::uint16_t admin_port = 0;
    std::from_chars(out.data() + digits, out.data() + out.size(), admin_port);
    REQUIRE(admin_port != 0);

    CHECK(probe(admin_port) == 0);
    p.child.signal(SIGTERM);
    REQUIRE(p.child.wait_for_line("draining", 10s));
    CHECK(probe(admin_port) == 1);
    p.child.signal(SIGTERM);  // the second signal stops at once
    REQUIRE(p.child.wait_exit(30s));
    CHECK(probe(admin_port) == 1);  // nothing listens there any more
}

}  // namespace spoa::testing
