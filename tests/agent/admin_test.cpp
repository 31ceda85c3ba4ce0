// The admin HTTP endpoint, over raw HTTP/1.0 from the test.

#include <spdlog/logger.h>

#include <atomic>
#include <sstream>

#include "agent_test_util.hpp"
#include "spoa/handlers/examples.hpp"

namespace spoa::testing {
namespace {

agent_config admin_config() {
    auto cfg = test_config();
    cfg.admin = listen_address::parse("127.0.0.1:0");
    return cfg;
}

std::uint16_t admin_port(test_agent& a) {
    const auto addr = a.agent().admin_address();
    REQUIRE(addr);
    REQUIRE(addr->port != 0);
    return addr->port;
}

}  // namespace

TEST_CASE("admin: /healthz answers 200 ok, and 503 while draining", "[admin]") {
    auto cfg = admin_config();
    cfg.handler_deadline = 5000ms;
    reply_box box;
    test_agent a(cfg);
    a.agent().on_async("slow", [&](const message&, async_reply r) { box.put(std::move(r)); });
    a.start();
    const auto port = admin_port(a);
    auto r = http_request("127.0.0.1", port, "GET", "/healthz");
    CHECK(r.status == 200);
    CHECK(r.body == "ok\n");

    // Keep the drain going with a frame in flight, then ask again.
    auto c = a.connect_ready();
    c.send_notify(1, 1, message_spec{"slow", {}});
    REQUIRE(box.wait_for(1));
    a.agent().stop(true);
    r = http_request("127.0.0.1", port, "GET", "/healthz");
    CHECK(r.status == 503);
    box.take().reply.done();
    CHECK(c.expect(ft::ack).frame_id == 1);
    CHECK(c.expect_disconnect() == 0);
}

TEST_CASE("admin: /metrics counts NOTIFY frames and errors by status", "[admin]") {
    test_agent a(admin_config());
    handlers::register_echo(a.agent());
    a.start();
    const auto port = admin_port(a);

    auto c = a.connect_ready();
    for (std::uint64_t fid = 1; fid <= 5; ++fid) {
        c.send_notify(1, fid, one_arg("echo", "x"));
        CHECK(c.expect(ft::ack).frame_id == fid);
    }
    auto bad = a.connect_ready();
    bad.send_raw("00 00 00 07 04 00 00 00 01 01 01");  // unknown frame type: status 4
    CHECK(bad.expect_disconnect() == 4);
    auto refused = a.connect();
    hello_options h;
    h.supported_versions = "1.0";
    refused.send_hello(h);
    CHECK(refused.expect_disconnect() == 8);

    const auto r = http_request("127.0.0.1", port, "GET", "/metrics");
    CHECK(r.status == 200);
    CHECK(r.headers.find("text/plain; version=0.0.4") != std::string::npos);
    INFO(r.body);
    CHECK(find_metric(r.body, "spoa_frames_received_total{type=\"NOTIFY\"}") == 5);
    CHECK(find_metric(r.body, "spoa_frames_received_total{type=\"HAPROXY-HELLO\"}") == 2);
    CHECK(find_metric(r.body, "spoa_frames_sent_total{type=\"ACK\"}") == 5);
    CHECK(find_metric(r.body, "spoa_messages_total{message=\"echo\"}") == 5);
    CHECK(find_metric(r.body,
                      "spoa_errors_total{status=\"4\",reason=\"invalid frame received\"}") == 1);
    CHECK(find_metric(r.body, "spoa_errors_total{status=\"8\",reason=\"unsupported version\"}") ==
          1);
    CHECK(find_metric(r.body, "spoa_errors_total{status=\"3\",reason=\"frame is too big\"}") ==
          std::nullopt);  // statuses never sent are not listed (except 0)
    CHECK(find_metric(r.body, "spoa_connections_accepted_total") == 3);
    CHECK(find_metric(r.body, "spoa_frame_duration_seconds_count") == 5);

    // The text format groups a family's samples right after its # TYPE line.
    std::istringstream lines(r.body);
    std::string family;
    for (std::string line; std::getline(lines, line);) {
        if (line.starts_with("# TYPE ")) {
            family = line.substr(7, line.find(' ', 7) - 7);
            continue;
        }
        if (line.empty() || line.starts_with('#')) continue;
        const std::string name = line.substr(0, line.find_first_of("{ "));
        INFO(line << " after # TYPE " << family);
        CHECK((name == family || name == family + "_bucket" || name == family + "_sum" ||
               name == family + "_count"));
    }
}

TEST_CASE("admin: custom routes get method, path, query and body", "[admin]") {
    test_agent a(admin_config());
    std::mutex mutex;
    admin_request seen;
    a.agent().admin_route("POST", "/invalidate", [&](const admin_request& req) {
        std::lock_guard lock(mutex);
        seen = req;
        return admin_response{202, "application/json", "{\"invalidated\":1}"};
    });
    a.agent().admin_route("GET", "/boom", [](const admin_request&) -> admin_response {
        throw std::runtime_error("handler failed");
    });
    a.start();
    const auto port = admin_port(a);

    auto r = http_request("127.0.0.1", port, "POST", "/invalidate?key=abc&all=1", "payload");
    CHECK(r.status == 202);
    CHECK(r.body == "{\"invalidated\":1}");
    CHECK(r.headers.find("application/json") != std::string::npos);
    {
        std::lock_guard lock(mutex);
        CHECK(seen.method == "POST");
        CHECK(seen.path == "/invalidate");
        CHECK(seen.body == "payload");
        CHECK(seen.query == std::map<std::string, std::string>{{"all", "1"}, {"key", "abc"}});
    }
    CHECK(http_request("127.0.0.1", port, "GET", "/invalidate").status == 405);
    CHECK(http_request("127.0.0.1", port, "GET", "/nowhere").status == 404);
    r = http_request("127.0.0.1", port, "GET", "/boom");
    CHECK(r.status == 500);
    CHECK(r.body.find("handler failed") != std::string::npos);
}

TEST_CASE("admin: with a token, every route but the probes needs it", "[admin]") {
    auto cfg = admin_config();
    cfg.admin_token = "s3cret-token";
    test_agent a(cfg);
    a.agent().admin_route("POST", "/invalidate", [](const admin_request&) {
        return admin_response{200, "text/plain", "invalidated 0\n"};
    });
    a.start();
    const auto port = admin_port(a);
    const std::vector<std::string> good{"Authorization: Bearer s3cret-token"};

    for (const auto& [method, path] :
         std::vector<std::pair<std::string, std::string>>{{"GET", "/metrics"},
                                                          {"POST", "/invalidate?id=x"},
                                                          {"GET", "/log-level"},
                                                          {"POST", "/log-level?level=debug"}}) {
        INFO(method << " " << path);
        const auto refused = http_request("127.0.0.1", port, method, path);
        CHECK(refused.status == 401);
        CHECK(refused.headers.find("WWW-Authenticate: Bearer") != std::string::npos);
        for (const std::string bad :
             {"Authorization: Bearer s3cret-tokeN", "Authorization: Bearer s3cret-token2",
              "Authorization: Bearer ", "Authorization: s3cret-token",
              "Authorization: Basic czNjcmV0LXRva2Vu"}) {
            INFO(bad);
            CHECK(http_request("127.0.0.1", port, method, path, {}, {bad}).status == 401);
        }
        CHECK(http_request("127.0.0.1", port, method, path, {}, good).status == 200);
    }
    // Probes stay open: an orchestrator asks without credentials.
    CHECK(http_request("127.0.0.1", port, "GET", "/healthz").status == 200);
    CHECK(http_request("127.0.0.1", port, "GET", "/readyz").status == 200);
}

TEST_CASE("admin: a non-loopback address needs a token or --admin-public", "[admin]") {
    CHECK(listen_address::parse("127.0.0.1:9100").is_local());
    CHECK(listen_address::parse("127.8.9.10:9100").is_local());
    CHECK(listen_address::parse("[::1]:9100").is_local());
    CHECK(listen_address::parse("unix:/run/spoa/admin.sock").is_local());
    CHECK_FALSE(listen_address::parse(":9100").is_local());  // every IPv4 address
    CHECK_FALSE(listen_address::parse("0.0.0.0:9100").is_local());
    CHECK_FALSE(listen_address::parse("[::]:9100").is_local());
    CHECK_FALSE(listen_address::parse("192.0.2.7:9100").is_local());
    CHECK_FALSE(listen_address::parse("[::ffff:127.0.0.1]:9100").is_local());

    auto cfg = test_config();
    cfg.admin = listen_address::parse("0.0.0.0:0");
    test_agent refused(cfg);
    try {
        refused.start();
        FAIL("an open admin endpoint on every address was accepted");
    } catch (const std::invalid_argument& e) {
        const std::string what = e.what();
        CHECK(what.find("0.0.0.0:0") != std::string::npos);
        CHECK(what.find("--admin-token-file") != std::string::npos);
        CHECK(what.find("--admin-public") != std::string::npos);
    }
}

TEST_CASE("admin: /readyz names what is not ready; /healthz only says alive", "[admin]") {
    auto cfg = admin_config();
    cfg.handler_deadline = 5000ms;
    std::atomic<bool> resolver_up{false};
    reply_box box;
    test_agent a(cfg);
    a.agent().readiness_check([&]() -> std::optional<std::string> {
        if (resolver_up.load()) return std::nullopt;
        return "remote resolver: not connected";
    });
    a.agent().on_async("slow", [&](const message&, async_reply r) { box.put(std::move(r)); });
    a.start();
    const auto port = admin_port(a);

    auto r = http_request("127.0.0.1", port, "GET", "/readyz");
    CHECK(r.status == 503);
    CHECK(r.body == "not ready: remote resolver: not connected\n");
    CHECK(http_request("127.0.0.1", port, "GET", "/healthz").status == 200);
    resolver_up = true;
    r = http_request("127.0.0.1", port, "GET", "/readyz");
    CHECK(r.status == 200);
    CHECK(r.body == "ready\n");

    // Draining: not ready any more (and not alive either, for HAProxy's checks).
    auto c = a.connect_ready();
    c.send_notify(1, 1, message_spec{"slow", {}});
    REQUIRE(box.wait_for(1));
    a.agent().stop(true);
    r = http_request("127.0.0.1", port, "GET", "/readyz");
    CHECK(r.status == 503);
    CHECK(r.body == "not ready: draining\n");
    box.take().reply.done();
    CHECK(c.expect(ft::ack).frame_id == 1);
    CHECK(c.expect_disconnect() == 0);
}

TEST_CASE("admin: /readyz reports a degraded mode and stays ready", "[admin]") {
    std::atomic<bool> shared_state_up{false};
    test_agent a(admin_config());
    a.agent().readiness_note([&]() -> std::optional<std::string> {
        if (shared_state_up.load()) return std::nullopt;
        return "redis unreachable: deciding alone";
    });
    a.start();
    const auto port = admin_port(a);
    auto r = http_request("127.0.0.1", port, "GET", "/readyz");
    CHECK(r.status == 200);
    CHECK(r.body == "ready\ndegraded: redis unreachable: deciding alone\n");
    shared_state_up = true;
    r = http_request("127.0.0.1", port, "GET", "/readyz");
    CHECK(r.status == 200);
    CHECK(r.body == "ready\n");
    CHECK_THROWS_AS(a.agent().readiness_note([] { return std::optional<std::string>{}; }),
                    std::logic_error);
}

TEST_CASE("admin: the log level changes at run time", "[admin]") {
    auto cfg = admin_config();
    cfg.logger = std::make_shared<spdlog::logger>("admin-test");
    cfg.logger->set_level(spdlog::level::info);
    test_agent a(cfg);
    a.start();
    const auto port = admin_port(a);
    CHECK(http_request("127.0.0.1", port, "GET", "/log-level").body == "info\n");
    auto r = http_request("127.0.0.1", port, "POST", "/log-level?level=debug");
    CHECK(r.status == 200);
    CHECK(a.agent().config().logger->level() == spdlog::level::debug);
    CHECK(http_request("127.0.0.1", port, "GET", "/log-level").body == "debug\n");
    r = http_request("127.0.0.1", port, "POST", "/log-level?level=loud");
    CHECK(r.status == 400);
    CHECK(a.agent().config().logger->level() == spdlog::level::debug);
    CHECK(http_request("127.0.0.1", port, "GET", "/log-level").status == 200);
}

}  // namespace spoa::testing
