/// shared_tier_bench: what the shared cache tier (redis: shared_cache) costs and saves, in
/// process, against a private redis-server (tests/handlers/redis_server.hpp, Unix socket).
///
/// 1. Miss latency, one decision at a time, each for a resource the agent has not cached (the
///    time from NOTIFY sent to ACK read by the fake HAProxy over loopback):
///    - "resolver, no redis":  the agent without a redis: section, a static resolver;
///    - "shared tier hit":     an agent whose resolver is never called: another agent wrote the
///                             entries (GET + PTTL, decode, SSRF check);
///    - "remote resolver":     without Redis, a resolver answering after a simulated control
///                             plane round trip (--plane-us, rounded down to whole
///                             milliseconds; default 1000 us);
///    - "shared tier miss":    the tier empty, then that same resolver (GET + PTTL miss, the
///                             resolver, the SET written after the answer).
/// 2. Warm decisions/s (every decision a first-tier hit), batches of pipelined NOTIFYs on one
///    connection, agents without and with a redis: section, alternated in the same run: hits
///    never touch Redis, so both must be the same within noise.
///
///   shared_tier_bench [--quick] [--plane-us N]
///
/// --quick: few iterations (a functional smoke run for ctest: every decision must route to the
/// expected port, and the shared-tier agent must not call its resolver). Exit 77 without
/// redis-server, 1 on a wrong decision.

#include <spdlog/logger.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../handlers/redis_server.hpp"
#include "spoa/agent/agent.hpp"
#include "spoa/handlers/routing/contract.hpp"
#include "spoa/handlers/routing/redis_client.hpp"
#include "spoa/handlers/routing/router.hpp"
#include "spoa/handlers/routing/shared_route_tier.hpp"
#include "spoa/handlers/service_loop.hpp"
#include "spoa/protocol/action.hpp"
#include "spoa/testing/fake_haproxy.hpp"

namespace {

using namespace spoa;
using namespace spoa::handlers::routing;
using namespace std::chrono_literals;
namespace spop = spoa::protocol;
using clock_type = std::chrono::steady_clock;
using spoa::testing::fake_haproxy;
using spoa::testing::message_spec;

int failures = 0;

void fail(const std::string& what) {
    std::fprintf(stderr, "shared_tier_bench: FAIL: %s\n", what.c_str());
    ++failures;
}

/// Answers every id with 127.0.0.1:port, at once or after `delay_us` on the service loop (a
/// control plane's round trip, without the network).
class bench_resolver final : public resolver {
  public:
    bench_resolver(std::uint16_t port, std::uint64_t delay_us,
                   std::shared_ptr<handlers::service_loop> loop)
        : port_(port), delay_us_(delay_us), loop_(std::move(loop)) {}
    void resolve(const std::string& /*id*/, const resolve_context& /*ctx*/,
                 resolve_callback done) override {
        calls_++;
        route r;
        r.endpoints = {{"127.0.0.1", port_}};
        if (delay_us_ == 0) {
            done(std::move(r));
            return;
        }
        // A timer on the service loop (millisecond resolution), which stays free meanwhile.
        const std::uint64_t ms = delay_us_ / 1000;
        loop_->start_timer(
            ms, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
    }
    [[nodiscard]] std::string_view name() const noexcept override { return "bench"; }
    std::atomic<std::uint64_t> calls_{0};

  private:
    std::uint16_t port_;
    std::uint64_t delay_us_;
    std::shared_ptr<handlers::service_loop> loop_;
};

/// One agent: a router on 127.0.0.1 and a free port, with a shared tier when `redis_address`
/// is not empty.
class bench_agent {
  public:
    bench_agent(std::uint16_t port, std::uint64_t delay_us, const std::string& redis_address)
        : service_(std::make_shared<handlers::service_loop>()),
          resolver_(std::make_shared<bench_resolver>(port, delay_us, service_)),
          router_(resolver_,
                  ssrf_policy::allowlist({{*cidr::parse("127.0.0.0/8"), "bench loopback"}}),
                  options(), service_, std::make_shared<spdlog::logger>("bench")),
          agent_(config()) {
        if (!redis_address.empty()) {
            redis_options ro;
            ro.address = connect_address::parse(redis_address);
            redis_ = std::make_shared<redis_client>(ro, service_, nullptr);
            tier_ = std::make_shared<shared_route_tier>(redis_, "bench-" + std::to_string(port),
                                                        service_, nullptr);
            router_.share_routes(tier_);
        }
        router_.attach(agent_);
        agent_.start();
        port_ = agent_.bound_addresses().at(0).port;
        if (redis_ && !handlers::routing::test::eventually(
                          [&] { return redis_->connected(redis_link::command); })) {
            fail("no connection to redis-server");
        }
    }
    ~bench_agent() {
        agent_.stop(false);
        agent_.wait();
        service_->join();
    }
    bench_agent(const bench_agent&) = delete;
    bench_agent& operator=(const bench_agent&) = delete;

    [[nodiscard]] fake_haproxy connect() const {
        auto c = fake_haproxy::connect_tcp("127.0.0.1", port_);
        (void)c.handshake(spoa::testing::hello_options::v3());
        return c;
    }
    [[nodiscard]] std::uint64_t resolver_calls() const { return resolver_->calls_.load(); }
    [[nodiscard]] std::uint64_t stores() const { return tier_ ? tier_->stats().stores : 0; }

  private:
    static router_options options() {
        router_options o;
        o.cache.ttl = 60s;
        o.cache.max_entries = 1'000'000;
        return o;
    }
    static agent_config config() {
        agent_config cfg;
        cfg.listeners.push_back(listen_address::parse("127.0.0.1:0"));
        cfg.threads = 1;
        cfg.handle_signals = false;
        cfg.close_linger = 200ms;
        cfg.drain_timeout = 500ms;
        return cfg;
    }

    std::shared_ptr<handlers::service_loop> service_;
    std::shared_ptr<bench_resolver> resolver_;
    std::shared_ptr<redis_client> redis_;
    std::shared_ptr<shared_route_tier> tier_;
    router router_;
    spoa::agent agent_;
    std::uint16_t port_ = 0;
};

message_spec http(const std::string& host) {
    return {std::string(contract::message::http),
            {{contract::arg::host, spop::typed_value::string(host)},
             {contract::arg::path, spop::typed_value::string("/")}}};
}

/// The port an ACK routes to, or 0.
std::int64_t routed_port(const spoa::testing::received_frame& f) {
    std::vector<spop::action> actions;
    if (spop::decode_actions({f.payload.data(), f.payload.size()}, actions) != spop::error::none)
        return 0;
    for (const auto& a : actions) {
        if (a.name == contract::var::port) return a.value.as_int64();
    }
    return 0;
}

std::uint64_t next_stream = 1;

/// Sends one NOTIFY and reads its ACK; the microseconds between, and checks the port.
double one_decision_us(fake_haproxy& c, const std::string& host, std::int64_t port) {
    const auto t0 = clock_type::now();
    c.send_notify(next_stream, 1, http(host));
    next_stream += 2;
    const auto f = c.expect(spop::frame_type::ack, 5s);
    const double us = std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
    if (routed_port(f) != port)
        fail("decision for " + host + " not routed to " + std::to_string(port));
    return us;
}

struct latency {
    double p50 = 0, p99 = 0, mean = 0;
};

latency summarise(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    latency l;
    l.p50 = v[v.size() / 2];
    l.p99 = v[std::min(v.size() - 1, v.size() * 99 / 100)];
    double sum = 0;
    for (double x : v)
        sum += x;
    l.mean = sum / static_cast<double>(v.size());
    return l;
}

/// Misses for `n` new hosts named `<prefix><i>`, one at a time.
latency misses(bench_agent& a, const std::string& prefix, std::size_t n, std::int64_t port) {
    auto c = a.connect();
    std::vector<double> us;
    us.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        us.push_back(one_decision_us(c, prefix + std::to_string(i) + ".bench", port));
    return summarise(std::move(us));
}

void print_latency(const char* what, const latency& l) {
    std::printf("  %-22s p50 %8.1f us   p99 %8.1f us   mean %8.1f us\n", what, l.p50, l.p99,
                l.mean);
}

/// Warm decisions per second for one host already cached: batches of `batch` pipelined
/// NOTIFYs, for `rounds` batches.
double warm_rate(bench_agent& a, std::size_t rounds, std::size_t batch, std::int64_t port) {
    auto c = a.connect();
    (void)one_decision_us(c, "warm.bench", port);  // the miss that fills the first tier
    const auto t0 = clock_type::now();
    for (std::size_t r = 0; r < rounds; ++r) {
        for (std::size_t i = 0; i < batch; ++i) {
            c.send_notify(next_stream, 1, http("warm.bench"));
            next_stream += 2;
        }
        for (std::size_t i = 0; i < batch; ++i) {
            const auto f = c.expect(spop::frame_type::ack, 5s);
            if (r == 0 && routed_port(f) != port) fail("warm decision not routed");
        }
    }
    const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
    return static_cast<double>(rounds * batch) / s;
}

}  // namespace

int main(int argc, char** argv) {
    bool quick = false;
    std::uint64_t plane_us = 1000;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (std::strcmp(argv[i], "--plane-us") == 0 && i + 1 < argc) {
            plane_us = std::strtoull(argv[++i], nullptr, 10);
        } else {
            std::fprintf(stderr, "usage: shared_tier_bench [--quick] [--plane-us N]\n");
            return 2;
        }
    }
    if (handlers::routing::test::redis_server_binary().empty()) {
        std::fprintf(stderr, "skipped: redis-server is not installed\n");
        return 77;
    }
    std::printf("shared_tier_bench (%s build)\n\n", SPOA_BENCH_CONFIG);
    const std::size_t n = quick ? 50 : 2000;
    handlers::routing::test::redis_server server;

    std::printf("1. miss latency, one decision at a time (%zu new hosts each), loopback SPOP\n", n);
    {
        bench_agent local(9001, 0, "");
        print_latency("resolver, no redis", misses(local, "local", n, 9001));
    }
    {
        bench_agent writer(9001, 0, server.address());
        (void)misses(writer, "shared", n, 9001);
        if (!handlers::routing::test::eventually([&] { return writer.stores() == n; }))
            fail("the writer did not store every entry");
        bench_agent reader(9999, 0, server.address());  // its resolver would answer 9999
        print_latency("shared tier hit", misses(reader, "shared", n, 9001));
        if (reader.resolver_calls() != 0) fail("the reader called its resolver");
    }
    const std::string plane = "remote resolver (" + std::to_string(plane_us) + " us)";
    {
        bench_agent remote(9001, plane_us, "");
        print_latency(plane.c_str(), misses(remote, "remote", n, 9001));
    }
    {
        bench_agent cold(9001, plane_us, server.address());
        print_latency("shared tier miss", misses(cold, "cold", n, 9001));
    }

    const std::size_t rounds = quick ? 20 : 4000;
    const std::size_t batch = 64;
    std::printf(
        "\n2. warm decisions/s (first-tier hits, %zu x %zu pipelined NOTIFYs, 1 agent "
        "thread)\n",
        rounds, batch);
    std::vector<double> without, with;
    for (int run = 0; run < (quick ? 1 : 3); ++run) {
        {
            bench_agent a(9001, 0, "");
            without.push_back(warm_rate(a, rounds, batch, 9001));
        }
        {
            bench_agent a(9001, 0, server.address());
            with.push_back(warm_rate(a, rounds, batch, 9001));
        }
    }
    const auto best = [](const std::vector<double>& v) {
        return *std::max_element(v.begin(), v.end());
    };
    std::printf("  %-22s %10.0f /s (best of %zu)\n", "without redis:", best(without),
                without.size());
    std::printf("  %-22s %10.0f /s (best of %zu)\n", "with redis: (shared)", best(with),
                with.size());
    for (std::size_t i = 0; i < without.size(); ++i)
        std::printf("    run %zu: %10.0f  %10.0f\n", i + 1, without[i], with[i]);
    return failures == 0 ? 0 : 1;
}
