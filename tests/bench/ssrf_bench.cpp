/// ssrf_bench: the cost of SSRF validation per routing cache miss, in nanoseconds.
///
/// 1. ssrf_policy::check(ip, port) per address, for the blocklist policy (the default ranges)
///    and the allowlist policy of haproxy/routing.example.yaml, on addresses that pass, that
///    are refused (the refusal builds its reason string), and IPv6 forms embedding IPv4.
/// 2. endpoint_checker::check of a route with N IP-literal endpoints (N = 1, 4, 16, 64), as the
///    router runs it on a miss: on the service loop, with an endpoint_health (every checked
///    endpoint gets its health state, as in spoa-agent); the literal case completes inside the
///    call. The cost of copying the input route (the checker takes it by value) is measured
///    apart and reported; "check" excludes it.
/// 3. endpoint_checker::check of a route with one host-name endpoint ("localhost", resolved by
///    uv_getaddrinfo on libuv's thread pool from /etc/hosts), one check at a time: the latency a
///    miss pays for a name, compared with the same route given as an IP literal.
///
///   ssrf_bench [--quick]
///
/// --quick: few iterations (a functional smoke run for ctest: every check must succeed).
/// Exit status 1 if a check that must pass is refused or one that must be refused passes.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "spoa/handlers/routing/endpoint_checker.hpp"
#include "spoa/handlers/routing/endpoint_health.hpp"
#include "spoa/handlers/routing/ssrf.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace {

using namespace spoa::handlers::routing;
using spoa::ip_address;
using clock_type = std::chrono::steady_clock;

int failures = 0;

void fail(const char* what) {
    std::fprintf(stderr, "ssrf_bench: FAIL: %s\n", what);
    ++failures;
}

double ns_since(clock_type::time_point t0, std::size_t n) {
    return static_cast<double>(
               std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t0)
                   .count()) /
           static_cast<double>(n);
}

/// Keeps the optimiser from dropping a result.
template <typename T>
void keep(const T& v) {
    asm volatile("" : : "g"(&v) : "memory");
}

ssrf_policy example_allowlist() {
    std::vector<named_range> allowed;
    for (const char* c :
         {"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"}) {
        allowed.push_back({*cidr::parse(c), "configured allow"});
    }
    return ssrf_policy::allowlist(std::move(allowed));
}

struct address_case {
    const char* text;
    bool pass_blocklist;
    bool pass_allowlist;
};

void bench_policy(std::size_t iterations) {
    const ssrf_policy block = ssrf_policy::blocklist();
    const ssrf_policy allow = example_allowlist();
    const address_case cases[] = {
        {"10.1.2.3", false, true},            // RFC 1918: the normal platform backend
        {"127.0.0.1", false, true},           // loopback
        {"93.184.215.14", true, false},       // public IPv4
        {"169.254.169.254", false, false},    // cloud metadata: never allowed
        {"2606:4700::1111", true, false},     // public IPv6
        {"fd12:3456::1", false, true},        // ULA
        {"::ffff:10.1.2.3", false, true},     // IPv4-mapped, judged as 10.1.2.3
        {"2002:a9fe:a9fe::1", false, false},  // 6to4 embedding 169.254.169.254
    };
    std::printf("ssrf_policy::check(ip, port), ns per call (%zu calls each)\n", iterations);
    std::printf("%-20s | %10s %-7s | %10s %-7s\n", "address", "blocklist", "result", "allowlist",
                "result");
    for (const auto& c : cases) {
        const ip_address ip = *ip_address::parse(c.text);
        double ns[2];
        bool passed[2];
        const ssrf_policy* policies[2] = {&block, &allow};
        for (int p = 0; p < 2; ++p) {
            passed[p] = !policies[p]->check(ip, 8080).has_value();
            const auto t0 = clock_type::now();
            for (std::size_t i = 0; i < iterations; ++i) {
                auto r = policies[p]->check(ip, 8080);
                keep(r);
            }
            ns[p] = ns_since(t0, iterations);
        }
        if (passed[0] != c.pass_blocklist || passed[1] != c.pass_allowlist) {
            fail((std::string("unexpected verdict for ") + c.text).c_str());
        }
        std::printf("%-20s | %10.1f %-7s | %10.1f %-7s\n", c.text, ns[0],
                    passed[0] ? "pass" : "refused", ns[1], passed[1] ? "pass" : "refused");
    }
    std::printf("(a refusal builds its reason string: that is most of its cost)\n\n");
}

route literal_route(std::size_t n) {
    route r;
    for (std::size_t i = 0; i < n; ++i) {
        r.endpoints.push_back(
            {"10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1),
             static_cast<std::uint16_t>(8000 + i)});
    }
    r.metadata["tenant"] = "alpha";
    return r;
}

/// Runs `fn` on the service loop and waits for it.
template <typename Fn>
auto on_loop(spoa::handlers::service_loop& loop, Fn fn) {
    std::promise<decltype(fn())> done;
    auto fut = done.get_future();
    loop.post([&](uv_loop_t*) { done.set_value(fn()); });
    return fut.get();
}

void bench_checker_literal(spoa::handlers::service_loop& loop, std::size_t iterations) {
    endpoint_health health(loop, health_options{}, breaker_options{}, nullptr);
    endpoint_checker checker(loop, example_allowlist(), &health);
    std::printf(
        "endpoint_checker::check, IP-literal endpoints (allowlist, with endpoint health "
        "states), on the service loop\n");
    std::printf("%9s | %12s %12s %14s %12s\n", "endpoints", "check ns", "ns/endpoint",
                "route copy ns", "iterations");
    for (const std::size_t n : {1, 4, 16, 64}) {
        const route input = literal_route(n);
        const std::size_t iters = std::max<std::size_t>(iterations / n, 50);
        struct result {
            double copy_ns;
            double check_ns;
            bool ok;
        };
        const result res = on_loop(loop, [&] {
            result out{0, 0, true};
            // The copy alone (the router moves the resolver's route in; a benchmark must copy).
            auto t0 = clock_type::now();
            for (std::size_t i = 0; i < iters; ++i) {
                route copy = input;
                keep(copy);
            }
            out.copy_ns = ns_since(t0, iters);
            std::size_t checked = 0;
            t0 = clock_type::now();
            for (std::size_t i = 0; i < iters; ++i) {
                checker.check(
                    input, [&](std::shared_ptr<checked_route> c, std::optional<resolve_error> err) {
                        if (err || !c || c->endpoints.size() != n) out.ok = false;
                        ++checked;
                    });
            }
            out.check_ns = ns_since(t0, iters) - out.copy_ns;
            if (checked != iters) out.ok = false;  // literals complete inside the call
            return out;
        });
        if (!res.ok) fail("a literal route was refused or did not complete synchronously");
        std::printf("%9zu | %12.0f %12.1f %14.0f %12zu\n", n, res.check_ns,
                    res.check_ns / static_cast<double>(n), res.copy_ns, iters);
    }
    std::printf("\n");
}

/// One check at a time, each started from the previous one's completion: mean latency.
double sequential_checks(spoa::handlers::service_loop& loop, endpoint_checker& checker,
                         const route& input, std::size_t count, bool& ok) {
    struct state {
        endpoint_checker* checker;
        const route* input;
        std::size_t left;
        bool ok = true;
        std::promise<void> done;
        void next() {
            if (left == 0) {
                done.set_value();
                return;
            }
            --left;
            checker->check(
                *input, [this](std::shared_ptr<checked_route> c, std::optional<resolve_error> e) {
                    if (e || !c || c->endpoints.empty()) ok = false;
                    next();
                });
        }
    };
    state s{&checker, &input, count, true, {}};
    auto fut = s.done.get_future();
    const auto t0 = clock_type::now();
    loop.post([&s](uv_loop_t*) { s.next(); });
    fut.get();
    ok = s.ok;
    return ns_since(t0, count);
}

void bench_checker_names(spoa::handlers::service_loop& loop, std::size_t count) {
    // 127.0.0.1 for "localhost" on this machine; ::1 too where /etc/hosts says so.
    std::vector<named_range> allowed{{*cidr::parse("127.0.0.0/8"), "allow"},
                                     {*cidr::parse("::1/128"), "allow"}};
    endpoint_health health(loop, health_options{}, breaker_options{}, nullptr);
    endpoint_checker checker(loop, ssrf_policy::allowlist(std::move(allowed)), &health);
    route literal;
    literal.endpoints.push_back({"127.0.0.1", 9001});
    route named;
    named.endpoints.push_back({"localhost", 9001});
    bool ok_literal = true;
    bool ok_named = true;
    (void)sequential_checks(loop, checker, named, 10, ok_named);  // warm the thread pool
    const double lit = sequential_checks(loop, checker, literal, count, ok_literal);
    const double name = sequential_checks(loop, checker, named, count, ok_named);
    if (!ok_literal || !ok_named) fail("a localhost / 127.0.0.1 route was refused");
    std::printf(
        "endpoint_checker::check, one endpoint, one check at a time (%zu checks, mean latency "
        "from the call to its completion on the service loop)\n",
        count);
    std::printf("  127.0.0.1:9001  %10.0f ns\n", lit);
    std::printf("  localhost:9001  %10.0f ns  (uv_getaddrinfo on the libuv thread pool)\n", name);
    std::printf("  a host name adds %.1f us per miss and per endpoint name\n", (name - lit) / 1e3);
}

}  // namespace

int main(int argc, char** argv) {
    bool quick = false;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else {
            std::fprintf(stderr, "usage: ssrf_bench [--quick]\n");
            return 2;
        }
    }
#ifdef SPOA_BENCH_CONFIG
    std::printf("ssrf_bench (%s build)\n\n", SPOA_BENCH_CONFIG);
#endif
    bench_policy(quick ? 1000 : 2'000'000);
    auto loop = std::make_shared<spoa::handlers::service_loop>();
    bench_checker_literal(*loop, quick ? 200 : 200'000);
    bench_checker_names(*loop, quick ? 20 : 5000);
    loop->join();
    if (failures != 0) {
        std::printf("ssrf_bench: %d check(s) FAILED\n", failures);
        return 1;
    }
    return 0;
}
