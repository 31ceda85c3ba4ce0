/// wake_lease_bench: what one wake per resource across the fleet costs a cold start, against a
/// private redis-server (tests/handlers/redis_server.hpp, Unix socket and loopback TCP).
///
/// The cold starter of an agent with a `redis:` section claims the wake lease before its wake
/// call (SET NX PX) and, when the start ended, publishes the outcome and releases the lease (one
/// pipelined PUBLISH + EVAL). The claim is the only step a wake waits for: its round trip is the
/// coordination's overhead on the first request of a cold start (the followers wait for the
/// backend anyway). Printed per transport: the claim round trip (p50, p99, max) over N distinct
/// resources, each claimed by agent A (won) then by agent B (lost, as a follower would), and
/// released by A; and the time from A's release to B hearing the outcome.
///
///   wake_lease_bench [--quick] [--n N]
///
/// --quick: a few rounds (a functional smoke run for ctest: every first claim won, every second
/// lost, every outcome heard). Exit 77 without redis-server, 1 on a wrong result.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../handlers/redis_server.hpp"
#include "spoa/handlers/routing/wake_lease.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace {

using namespace spoa::handlers;
using namespace spoa::handlers::routing;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using claim_result = wake_coordinator::claim_result;

/// The outcomes one agent heard (its service loop writes, the bench thread waits).
struct heard {
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<std::string> ids;
};

struct agent_side {
    std::shared_ptr<service_loop> loop = std::make_shared<service_loop>();
    std::shared_ptr<redis_client> redis;
    std::shared_ptr<wake_lease> lease;
    std::shared_ptr<heard> log = std::make_shared<heard>();

    agent_side(const std::string& address, const std::string& id) {
        redis_options o;
        o.address = connect_address::parse(address);
        o.wake_lease = 5000ms;
        redis = std::make_shared<redis_client>(o, loop, nullptr);
        lease = std::make_shared<wake_lease>(redis, id, nullptr);
        lease->on_outcome([l = log](app_protocol, std::string_view rid, wake_coordinator::outcome) {
            std::lock_guard lock(l->mutex);
            l->ids.emplace_back(rid);
            l->cv.notify_all();
        });
    }
    ~agent_side() { loop->join(); }

    claim_result claim(const std::string& id) {
        auto done = std::make_shared<std::promise<claim_result>>();
        auto f = done->get_future();
        loop->post([this, id, done](uv_loop_t*) {
            lease->claim(app_protocol::http, id, [done](claim_result r) { done->set_value(r); });
        });
        return f.get();
    }
    void release(const std::string& id) {
        loop->post([this, id](uv_loop_t*) {
            lease->release(app_protocol::http, id, wake_coordinator::outcome::ready);
        });
    }
    bool wait_heard(const std::string& id) {
        std::unique_lock lock(log->mutex);
        return log->cv.wait_for(lock, 5s, [&] {
            return std::find(log->ids.begin(), log->ids.end(), id) != log->ids.end();
        });
    }
    bool ready() const {
        return redis->connected(redis_link::command) && redis->connected(redis_link::subscriber);
    }
};

double ms(clock_type::duration d) {
    return std::chrono::duration<double, std::milli>(d).count();
}

void print(const char* what, std::vector<double>& v) {
    std::sort(v.begin(), v.end());
    std::printf("  %-34s p50 %.3f ms  p99 %.3f ms  max %.3f ms\n", what, v[v.size() / 2],
                v[v.size() * 99 / 100], v.back());
}

bool run(test::redis_server& server, const char* transport, int n) {
    agent_side a(server.address(), "bench-a");
    agent_side b(server.address(), "bench-b");
    const auto deadline = clock_type::now() + 5s;
    while (!(a.ready() && b.ready())) {
        if (clock_type::now() > deadline) return false;
        std::this_thread::sleep_for(2ms);
    }
    // B hears outcomes once its SUBSCRIBE is confirmed: warm up until it does.
    for (int i = 0; i < 1000; ++i) {
        const auto id = "warmup-" + std::to_string(i);
        a.claim(id);
        a.release(id);
        if (b.wait_heard(id)) break;
    }
    std::vector<double> won, lost, outcome;
    bool ok = true;
    for (int i = 0; i < n; ++i) {
        const auto id = std::string(transport) + "-" + std::to_string(i) + ".bench";
        auto t0 = clock_type::now();
        ok &= a.claim(id) == claim_result::won;
        won.push_back(ms(clock_type::now() - t0));
        t0 = clock_type::now();
        ok &= b.claim(id) == claim_result::lost;
        lost.push_back(ms(clock_type::now() - t0));
        t0 = clock_type::now();
        a.release(id);
        ok &= b.wait_heard(id);
        outcome.push_back(ms(clock_type::now() - t0));
    }
    std::printf("%s, %d resources:\n", transport, n);
    print("claim (won: the wake waits for it)", won);
    print("claim (lost: a follower)", lost);
    print("release -> outcome heard by B", outcome);
    return ok;
}

}  // namespace

int main(int argc, char** argv) {
    int n = 2000;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--quick") == 0) n = 20;
        if (std::strcmp(argv[i], "--n") == 0 && i + 1 < argc) n = std::atoi(argv[++i]);
    }
    if (test::redis_server_binary().empty()) {
        std::fprintf(stderr, "wake_lease_bench: no redis-server on PATH (skipped)\n");
        return 77;
    }
    bool ok = true;
    {
        test::redis_server unix_server;
        ok &= run(unix_server, "unix socket", n);
    }
    {
        test::redis_server tcp_server(test::redis_server::listen_on::tcp);
        ok &= run(tcp_server, "loopback TCP", n);
    }
    if (!ok) std::fprintf(stderr, "wake_lease_bench: FAIL: a claim or an outcome was wrong\n");
    return ok ? 0 : 1;
}
