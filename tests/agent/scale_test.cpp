// Many concurrent connections (slow suite).

#include <poll.h>

#include "agent_test_util.hpp"
#include "spoa/handlers/examples.hpp"

namespace spoa::testing {
namespace {

using clock = std::chrono::steady_clock;

/// Waits until every client in `clients` has a complete frame buffered or the timeout passes,
/// polling them all at once (reading them one by one would serialize on the slowest).
void wait_all_readable(std::vector<fake_haproxy>& clients, milliseconds timeout) {
    const auto deadline = clock::now() + timeout;
    std::vector<std::size_t> waiting(clients.size());
    for (std::size_t i = 0; i < clients.size(); ++i)
        waiting[i] = i;
    while (!waiting.empty() && clock::now() < deadline) {
        std::vector<pollfd> fds;
        for (const auto i : waiting)
            fds.push_back({clients[i].fd(), POLLIN, 0});
        if (::poll(fds.data(), fds.size(), 100) <= 0) continue;
        std::vector<std::size_t> still;
        for (std::size_t k = 0; k < waiting.size(); ++k) {
            if ((fds[k].revents & (POLLIN | POLLHUP | POLLERR)) == 0) still.push_back(waiting[k]);
        }
        waiting.swap(still);
    }
}

}  // namespace

TEST_CASE("scale: 2000 concurrent connections each do HELLO and one NOTIFY", "[scale]") {
    constexpr std::size_t n = 2000;
    // Each connection costs two descriptors in this process (client and agent side).
    const std::size_t limit = raise_fd_limit(2 * n + 256);
    REQUIRE(limit >= 2 * n + 64);

    auto cfg = test_config();
    cfg.threads = 2;
    test_agent a(cfg);
    handlers::register_echo(a.agent());
    a.start();

    const auto start = clock::now();
    std::vector<fake_haproxy> clients;
    clients.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        clients.push_back(a.connect());
    for (auto& c : clients)
        c.send_hello();
    wait_all_readable(clients, 10s);
    for (auto& c : clients)
        REQUIRE(c.expect(ft::agent_hello).kv_string("version") == "2.0");
    REQUIRE(a.wait_metric("spoa_connections_active", n, 5000ms));

    for (std::size_t i = 0; i < n; ++i) {
        clients[i].send_notify(i, 1, one_arg("echo", "conn-" + std::to_string(i)));
    }
    wait_all_readable(clients, 10s);
    std::size_t ok = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const auto ack = clients[i].expect(ft::ack);
        const bool match =
            ack.stream_id == i && ack.frame_id == 1 &&
            ack.actions() == std::vector<owned_action>{
                                 set_txn("v", typed_value::string("conn-" + std::to_string(i)))};
        if (!match) FAIL_CHECK("connection " << i << " got " << ack.describe());
        ok += match ? 1 : 0;
    }
    CHECK(ok == n);
    CHECK(a.metric("spoa_frames_received_total{type=\"NOTIFY\"}") == n);
    CHECK(a.metric("spoa_connections_accepted_total") == n);
    // Generous bound: the point is that nothing serializes on a slow path.
    CHECK(clock::now() - start < 20s);
    clients.clear();
    CHECK(a.wait_metric("spoa_connections_active", 0, 5000ms));
}

}  // namespace spoa::testing
