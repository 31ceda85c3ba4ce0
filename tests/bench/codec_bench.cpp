/// Codec micro-benchmark: decode a realistic NOTIFY, encode the matching ACK, encode the NOTIFY.
///
/// Prints ns/frame (median over repetitions), frames/s and allocations/frame, then PASS/FAIL
/// lines against the codec's targets. Timing never fails the run; allocations while decoding
/// (deterministic) do: exit status 1.
///
///   codec_bench                 full run (7 repetitions of 2,000,000 iterations per operation)
///   codec_bench --quick         smoke run for CI (a few thousand iterations)
///   codec_bench --iterations=N --repetitions=N

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "alloc_counter.hpp"
#include "spoa/protocol/action.hpp"
#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/notify.hpp"
#include "spoa/protocol/typed_value.hpp"

#ifndef SPOA_BENCH_CONFIG
#define SPOA_BENCH_CONFIG "unknown"
#endif

namespace {

namespace sp = spoa::protocol;

/// Makes the compiler believe `value` is read and memory may have changed, so the work that
/// produced it cannot be dropped or hoisted out of the loop.
template <typename T>
inline void escape(T& value) {
    asm volatile("" : : "g"(&value) : "memory");
}

constexpr std::uint64_t stream_id = 12345;
constexpr std::uint64_t frame_id = 1;
constexpr std::uint32_t max_frame_size = sp::haproxy_default_max_frame_size;
constexpr double decode_target_ns = 100.0;

struct options {
    std::uint64_t iterations = 2'000'000;
    int repetitions = 7;
    bool quick = false;
};

struct result {
    std::string_view name;
    std::size_t frame_bytes = 0;
    double median_ns = 0;
    double min_ns = 0;
    double allocs_per_frame = 0;
};

/// Runs `body` `iterations` times per repetition after a warm-up; returns median/min ns per call
/// and allocations per call over all timed repetitions.
template <typename Body>
result measure(std::string_view name, std::size_t frame_bytes, const options& opt, Body&& body) {
    const std::uint64_t warmup = std::max<std::uint64_t>(opt.iterations / 10, 1000);
    for (std::uint64_t i = 0; i < warmup; ++i)
        body();

    std::vector<double> ns_per_frame;
    ns_per_frame.reserve(static_cast<std::size_t>(opt.repetitions));
    std::uint64_t allocs = 0;
    for (int rep = 0; rep < opt.repetitions; ++rep) {
        const std::uint64_t allocs_before = spoa::bench::allocations();
        const auto t0 = std::chrono::steady_clock::now();
        for (std::uint64_t i = 0; i < opt.iterations; ++i)
            body();
        const auto t1 = std::chrono::steady_clock::now();
        allocs += spoa::bench::allocations() - allocs_before;
        const std::chrono::duration<double, std::nano> elapsed = t1 - t0;
        ns_per_frame.push_back(elapsed.count() / static_cast<double>(opt.iterations));
    }
    std::sort(ns_per_frame.begin(), ns_per_frame.end());
    result r;
    r.name = name;
    r.frame_bytes = frame_bytes;
    r.median_ns = ns_per_frame[ns_per_frame.size() / 2];
    r.min_ns = ns_per_frame.front();
    r.allocs_per_frame =
        static_cast<double>(allocs) / (static_cast<double>(opt.iterations) * opt.repetitions);
    return r;
}

[[noreturn]] void die(const char* what) {
    std::fprintf(stderr, "codec_bench: %s\n", what);
    std::exit(1);
}

bool parse_args(int argc, char** argv, options& opt) {
    for (int i = 1; i < argc; ++i) {
        const std::string_view a = argv[i];
        if (a == "--quick") {
            opt.quick = true;
            opt.iterations = 5'000;
            opt.repetitions = 3;
        } else if (a.starts_with("--iterations=")) {
            opt.iterations = std::strtoull(argv[i] + std::strlen("--iterations="), nullptr, 10);
        } else if (a.starts_with("--repetitions=")) {
            opt.repetitions = std::atoi(argv[i] + std::strlen("--repetitions="));
        } else {
            std::fprintf(stderr,
                         "usage: %s [--quick] [--iterations=N] [--repetitions=N]\n"
                         "  default: %llu iterations x %d repetitions per operation\n",
                         argv[0], 2'000'000ULL, 7);
            return false;
        }
    }
    if (opt.iterations == 0 || opt.repetitions <= 0) {
        std::fprintf(stderr, "codec_bench: iterations and repetitions must be positive\n");
        return false;
    }
    return true;
}

/// What a handler would look at: every name, every value (lengths, integers, first bytes).
std::uint64_t touch(std::span<const sp::message_view> messages) noexcept {
    std::uint64_t sum = 0;
    for (const sp::message_view& m : messages) {
        sum += m.name.size();
        for (const sp::argument& a : m.args) {
            sum += a.name.size();
            switch (a.value.type()) {
                case sp::data_type::string:
                case sp::data_type::binary: {
                    const std::string_view s = a.value.as_string();
                    sum += s.size();
                    if (!s.empty()) sum += static_cast<unsigned char>(s.front());
                    break;
                }
                case sp::data_type::ipv4:
                    sum += a.value.address_bytes()[0] + a.value.address_bytes()[3];
                    break;
                case sp::data_type::ipv6:
                    sum += a.value.address_bytes()[15];
                    break;
                default:
                    sum += a.value.as_uint64();
                    break;
            }
        }
    }
    return sum;
}

}  // namespace

int main(int argc, char** argv) {
    options opt;
    if (!parse_args(argc, argv, opt)) return 2;

    // The allocation check is only meaningful if the replaced operator new is really in use.
    {
        const std::uint64_t before = spoa::bench::allocations();
        auto* probe = new std::vector<int>(100);
        escape(probe);
        delete probe;
        if (spoa::bench::allocations() - before < 2) die("allocation counter is not active");
    }

    // --- The NOTIFY HAProxy would send for `spoe-message route-http args host=... ...`. ---
    std::array<std::uint8_t, 256> body{};
    for (std::size_t i = 0; i < body.size(); ++i)
        body[i] = static_cast<std::uint8_t>(i * 31 + 7);
    const std::array<sp::argument, 5> args{{
        {"host", sp::typed_value::string("tenant-42.apps.example.com")},
        {"path", sp::typed_value::string("/api/v1/orders?limit=20")},
        {"src", sp::typed_value::ipv4({203, 0, 113, 7})},
        {"port", sp::typed_value::int64(443)},
        {"body", sp::typed_value::binary(sp::bytes_view(body))},
    }};
    auto write_notify = [&](sp::byte_buffer& out) {
        sp::frame_writer w(out);
        w.begin(sp::frame_type::notify, sp::frame_flags::fin, stream_id, frame_id);
        sp::encode_message(out, "route-http", args);
        return w.finish(max_frame_size);
    };
    sp::byte_buffer notify_frame;
    if (!write_notify(notify_frame)) die("NOTIFY does not fit max-frame-size");
    const sp::bytes_view notify_bytes = notify_frame.view();

    // --- The ACK the agent answers with. ---
    const sp::typed_value ack_ip = sp::typed_value::ipv4({10, 1, 2, 3});
    const sp::typed_value ack_port = sp::typed_value::int64(8443);
    const sp::typed_value ack_backend = sp::typed_value::string("pool-a");
    auto write_ack = [&](sp::byte_buffer& out) {
        sp::ack_writer w(out, stream_id, frame_id, max_frame_size);
        bool ok = w.set_var(sp::var_scope::txn, "ip", ack_ip);
        ok = w.set_var(sp::var_scope::txn, "port", ack_port) && ok;
        ok = w.set_var(sp::var_scope::txn, "backend", ack_backend) && ok;
        w.finish();
        return ok;
    };

    // --- Check once that what we time is right, so the numbers describe working code. ---
    sp::notify_decoder decoder;
    std::uint64_t expected_touch = 0;
    {
        sp::frame f;
        const sp::frame_decode_result r = sp::decode_frame(notify_bytes, max_frame_size, f);
        if (r.status != sp::decode_status::ok || r.size != notify_bytes.size()) {
            die("NOTIFY frame does not decode");
        }
        if (f.type != sp::frame_type::notify || f.stream_id != stream_id ||
            f.frame_id != frame_id || !f.fin()) {
            die("NOTIFY header does not round-trip");
        }
        if (decoder.decode(f.payload) != sp::error::none) die("NOTIFY payload does not decode");
        const auto msgs = decoder.messages();
        if (msgs.size() != 1 || msgs[0].name != "route-http" || msgs[0].args.size() != 5) {
            die("NOTIFY message does not round-trip");
        }
        for (std::size_t i = 0; i < args.size(); ++i) {
            if (msgs[0].args[i].name != args[i].name || !(msgs[0].args[i].value == args[i].value)) {
                die("NOTIFY argument does not round-trip");
            }
        }
        expected_touch = touch(msgs);

        sp::byte_buffer ack;
        if (!write_ack(ack)) die("ACK action refused");
        sp::frame af;
        if (sp::decode_frame(ack.view(), max_frame_size, af).status != sp::decode_status::ok ||
            af.type != sp::frame_type::ack) {
            die("ACK frame does not decode");
        }
        std::vector<sp::action> actions;
        if (sp::decode_actions(af.payload, actions) != sp::error::none || actions.size() != 3 ||
            actions[2].name != "backend" || actions[2].value.as_string() != "pool-a") {
            die("ACK payload does not round-trip");
        }
    }

    std::printf("codec_bench (build config: %s)%s\n", SPOA_BENCH_CONFIG,
                opt.quick ? "  [--quick: smoke run, timings not meaningful]" : "");
    if (std::string_view(SPOA_BENCH_CONFIG) == "Debug") {
        std::printf(
            "note: spoa::protocol is not optimised in Debug; use RelWithDebInfo/Release "
            "for meaningful timings\n");
    }
    std::printf("NOTIFY: %zu bytes (stream-id %llu, frame-id %llu, 1 message, 5 args)\n",
                notify_bytes.size(), static_cast<unsigned long long>(stream_id),
                static_cast<unsigned long long>(frame_id));
    std::printf("%llu iterations x %d repetitions per operation, median reported\n\n",
                static_cast<unsigned long long>(opt.iterations), opt.repetitions);

    std::vector<result> results;
    bool bad_value = false;

    // decode_frame alone: header parsing cost, for the breakdown.
    results.push_back(measure("decode_frame (header only)", notify_bytes.size(), opt, [&] {
        sp::frame f;
        const sp::frame_decode_result r = sp::decode_frame(notify_bytes, max_frame_size, f);
        escape(r);
        escape(f);
    }));

    // decode_frame + notify_decoder::decode + touching every argument.
    const result decode = measure("decode NOTIFY (+ touch args)", notify_bytes.size(), opt, [&] {
        sp::frame f;
        const sp::frame_decode_result r = sp::decode_frame(notify_bytes, max_frame_size, f);
        std::uint64_t sum = static_cast<std::uint64_t>(r.status);
        if (decoder.decode(f.payload) == sp::error::none) sum += touch(decoder.messages());
        bad_value |= sum != expected_touch;
        escape(sum);
    });
    results.push_back(decode);

    sp::byte_buffer out;
    (void)write_ack(out);
    const std::size_t ack_bytes = out.size();
    results.push_back(measure("encode ACK (3 set-var)", ack_bytes, opt, [&] {
        out.clear();
        (void)write_ack(out);
        escape(out);
    }));

    results.push_back(measure("encode NOTIFY", notify_bytes.size(), opt, [&] {
        out.clear();
        (void)write_notify(out);
        escape(out);
    }));

    if (bad_value) die("decoded arguments changed during the timed loop");

    std::printf("%-30s %7s %10s %10s %14s %13s\n", "operation", "bytes", "ns/frame", "min ns",
                "frames/s", "allocs/frame");
    std::printf("%-30s %7s %10s %10s %14s %13s\n", "------------------------------", "-----",
                "--------", "------", "--------", "------------");
    for (const result& r : results) {
        std::printf("%-30.*s %7zu %10.1f %10.1f %14.0f %13.4g\n", static_cast<int>(r.name.size()),
                    r.name.data(), r.frame_bytes, r.median_ns, r.min_ns, 1e9 / r.median_ns,
                    r.allocs_per_frame);
    }
    std::printf("\n");

    const bool alloc_ok = decode.allocs_per_frame == 0;
    std::printf("%s decode NOTIFY allocations/frame = %.4g (target 0)\n",
                alloc_ok ? "PASS" : "FAIL", decode.allocs_per_frame);
    if (opt.quick) {
        std::printf("INFO decode NOTIFY %.1f ns/frame (target < %.0f ns; not judged in --quick)\n",
                    decode.median_ns, decode_target_ns);
    } else {
        std::printf(
            "%s decode NOTIFY %.1f ns/frame (target < %.0f ns; timing never fails the "
            "run)\n",
            decode.median_ns < decode_target_ns ? "PASS" : "FAIL", decode.median_ns,
            decode_target_ns);
    }
    return alloc_ok ? 0 : 1;
}
