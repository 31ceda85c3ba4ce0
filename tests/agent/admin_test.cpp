// The admin HTTP endpoint, over raw HTTP/1.0 from the test.

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

}  // namespace spoa::testing
