/// spoa_loadgen: SPOP load generator for agent benchmarks (a fake HAProxy with raw epoll).
///
/// Load mode (default): opens N connections, does the HELLO handshake announcing pipelining,
/// then keeps K NOTIFY frames in flight per connection. Each NOTIFY carries one message `echo`
/// with five arguments (host string, path string, IPv4 src, INT64 port, small binary), the
/// shape of a realistic HAProxy request check. Every frame in flight on a connection has a
/// unique (stream-id, frame-id): frame-id = slot + 1 (1..K), stream-id odd and increasing, as
/// HAProxy 3.1+ numbers its SPOP streams (protocol/README.md §8). Every ACK is validated: type ACK,
/// flags exactly FIN, ids of a frame in flight, payload decodable by decode_actions and, with
/// --expect echo, exactly the five set-var txn.<arg> = <arg value> that the echo handler writes.
/// Latency is per frame, from the write that carried the NOTIFY to the read that brought its
/// ACK, kept in a log-linear histogram (64 sub-buckets per power of two, < 1.6 % error).
///
/// All frames a connection sends in one loop iteration leave in one write(); reads take up to
/// 256 KiB at once. After the measured duration the generator stops sending, waits for the
/// frames still in flight (every NOTIFY must be answered) and prints one result line:
///
///   spoa_loadgen: connections=16 inflight=32 threads=1 duration_s=5.00 acks=... ack_per_s=...
///     p50_us=... p99_us=... p999_us=... max_us=... errors=0 unanswered=0 acks_total=...
///     lg_cpu_s=... lg_cpu_pct=...
///
/// Idle mode (--idle N): opens N connections, does the handshake on each, prints
/// `idle_ready connections=N`, keeps them open for --hold seconds (0: until SIGINT/SIGTERM) and
/// prints `spoa_loadgen: idle connections=N established=... closed_by_peer=... errors=...`.
///
/// Routing mode (--message route-http): each NOTIFY carries one message `route-http` with the
/// arguments of the shipped HAProxy configuration (host string, path string, IPv4 src; see
/// handlers/include/spoa/handlers/routing/contract.hpp). The host is one of --hosts warm names
/// `w<i>.<--host-suffix>`, taken in turn; with --miss-rate P a fraction P of the requests
/// (exactly: an accumulator, not a coin) uses a name never sent before,
/// `m<n>-<pid>-<thread>.miss.<--host-suffix>`, so each of them is a route cache miss whatever
/// the throughput. Every ACK is validated: either a decision (set-var txn.ip IPV4/IPV6,
/// txn.port 1-65535, txn.resource = the host sent, txn.cache) or a refusal (txn.status set),
/// which is counted apart from the decisions (`refusals=`) and makes the exit status 1 unless
/// --refusals-ok. Decisions are what ack_per_s and the latency histogram count; the result
/// line adds `message=route-http decisions=... refusals=... misses_sent=... cache_hit=...
/// cache_miss=... cache_coalesced=... cache_other=...` (the cache labels the agent answered).
///
/// Host-file mode (--host-file FILE, implies --message route-http; for the stress tests): the
/// hosts come from FILE, grouped in classes, each class drawn with its own weight. Lines:
///
///   weight <class> <integer>      how often the class is drawn, relative to the others
///   host <class> <name>           a host of the class; "{n}" in the name is replaced by a number
///                                 never sent before (so every such request is a new host)
///   # comment
///
/// Classes are interleaved by smooth weighted round-robin and the hosts of a class taken in
/// turn: the sequence is fixed, no coin. Refusals are expected in this mode (pass --refusals-ok).
/// With --counts-out OUT, the end of the run writes one line per (host entry, answer):
/// `<class> <host as written in FILE> <answer> <count>`, answer `ip:port` (IPv6 `[ip]:port`) for a
/// decision and `status:<N>` for a refusal, so a driver can check every answer against the route
/// table it served. Invalid ACKs are errors as always and are not in the file. In the result
/// line, hosts= is the number of host entries and misses_sent= the "{n}" hosts sent.
///
/// --free-port prints a free TCP port on 127.0.0.1 and exits (for scripts).
/// Exit status: 0 when every connection was established and every frame answered correctly,
/// 1 otherwise, 2 for usage errors.

#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_net.hpp"
#include "spoa/protocol/action.hpp"
#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/disconnect.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/hello.hpp"
#include "spoa/protocol/kv_list.hpp"
#include "spoa/protocol/notify.hpp"
#include "spoa/protocol/typed_value.hpp"

namespace {

namespace sp = spoa::protocol;
using spoa::bench::now_ns;

std::atomic<bool> stop_requested{false};

extern "C" void on_signal(int) {
    stop_requested.store(true);
}

// ---- options ----------------------------------------------------------------------------------

enum class expect_mode : std::uint8_t { echo, empty, any, route };
enum class message_kind : std::uint8_t { echo, route_http };

struct options {
    sockaddr_in target{};
    std::string target_text = "127.0.0.1:12345";
    unsigned connections = 16;
    unsigned inflight = 32;
    unsigned threads = 1;
    double warmup_s = 1.0;
    double duration_s = 5.0;
    double drain_s = 3.0;
    expect_mode expect = expect_mode::echo;
    std::size_t idle = 0;
    double hold_s = 0;
    unsigned max_connecting = 256;
    bool quiet = false;
    // --message route-http
    message_kind message = message_kind::echo;
    unsigned hosts = 4;
    double miss_rate = 0;
    std::string host_suffix = "bench.localhost";
    bool refusals_ok = false;
    // --host-file / --counts-out
    std::string host_file;
    std::string counts_out;
};

void usage() {
    std::fprintf(stderr,
                 "usage: spoa_loadgen --target HOST:PORT [--connections N] [--inflight K]\n"
                 "                    [--threads 1|2] [--warmup S] [--duration S]\n"
                 "                    [--expect echo|empty|any|route] [--quiet]\n"
                 "                    [--message echo|route-http] [--hosts N] [--miss-rate P]\n"
                 "                    [--host-suffix S] [--refusals-ok]\n"
                 "                    [--host-file FILE [--counts-out FILE]]\n"
                 "       spoa_loadgen --target HOST:PORT --idle N [--hold S]\n"
                 "       spoa_loadgen --free-port\n");
}

// ---- latency histogram --------------------------------------------------------------------------

/// Log-linear histogram of nanosecond values: exact below 128 ns, then 64 buckets per power of
/// two. Recording is a count-leading-zeros and an increment; merging is a sum.
class latency_histogram {
  public:
    static constexpr unsigned sub_bits = 6;
    static constexpr std::uint64_t sub_count = std::uint64_t{1} << sub_bits;
    static constexpr std::uint64_t linear = sub_count * 2;
    static constexpr std::size_t bucket_count = linear + (64 - sub_bits - 1) * sub_count;

    void record(std::uint64_t ns) noexcept {
        ++counts_[index(ns)];
        ++total_;
        if (ns > max_) max_ = ns;
    }
    void merge(const latency_histogram& o) noexcept {
        for (std::size_t i = 0; i < bucket_count; ++i)
            counts_[i] += o.counts_[i];
        total_ += o.total_;
        if (o.max_ > max_) max_ = o.max_;
    }
    void reset() noexcept {
        counts_.fill(0);
        total_ = 0;
        max_ = 0;
    }
    [[nodiscard]] std::uint64_t total() const noexcept { return total_; }
    [[nodiscard]] std::uint64_t max() const noexcept { return max_; }

    /// The value at quantile q (0..1): the middle of the bucket holding the q-th sample.
    [[nodiscard]] double quantile_ns(double q) const noexcept {
        if (total_ == 0) return 0;
        auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total_)));
        if (rank == 0) rank = 1;
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < bucket_count; ++i) {
            seen += counts_[i];
            if (seen >= rank) {
                const double lo = static_cast<double>(lower_bound(i));
                const double width = static_cast<double>(lower_bound(i + 1) - lower_bound(i));
                const double mid = lo + width / 2;
                return mid > static_cast<double>(max_) ? static_cast<double>(max_) : mid;
            }
        }
        return static_cast<double>(max_);
    }

  private:
    static std::size_t index(std::uint64_t v) noexcept {
        if (v < linear) return static_cast<std::size_t>(v);
        const unsigned e = 63u - static_cast<unsigned>(__builtin_clzll(v));  // >= sub_bits + 1
        const std::uint64_t sub = (v >> (e - sub_bits)) & (sub_count - 1);
        return static_cast<std::size_t>(linear + (e - sub_bits - 1) * sub_count + sub);
    }
    static std::uint64_t lower_bound(std::size_t i) noexcept {
        if (i < linear) return i;
        const std::uint64_t k = i - linear;
        const std::uint64_t e = k / sub_count + sub_bits + 1;
        if (e >= 64) return ~std::uint64_t{0};
        return (std::uint64_t{1} << e) | ((k % sub_count) << (e - sub_bits));
    }

    std::array<std::uint64_t, bucket_count> counts_{};
    std::uint64_t total_ = 0;
    std::uint64_t max_ = 0;
};

// ---- the NOTIFY we send and the ACK we expect ---------------------------------------------------

struct workload {
    sp::byte_buffer payload;         ///< LIST-OF-MESSAGES, the same for every frame
    std::vector<sp::argument> args;  ///< what the echo handler must send back
    sp::byte_buffer hello;           ///< the whole HAPROXY-HELLO frame
    static constexpr std::uint8_t body[16] = {0x00, 0x01, 0x02, 0x03, 0xfe, 0xff, 0x10, 0x20,
                                              0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0};

    workload() {
        args = {
            {"host", sp::typed_value::string("www.example.com")},
            {"path", sp::typed_value::string("/api/v1/items?id=42&sort=desc")},
            {"src", sp::typed_value::ipv4({192, 0, 2, 10})},
            {"port", sp::typed_value::int64(54321)},
            {"body", sp::typed_value::binary(sp::bytes_view(body, sizeof body))},
        };
        sp::encode_message(payload, "echo", args);

        sp::frame_writer w(hello);
        w.begin(sp::frame_type::haproxy_hello, sp::frame_flags::fin, 0, 0);
        sp::encode_kv(hello, "supported-versions", sp::typed_value::string("2.0"));
        sp::encode_kv(hello, "max-frame-size",
                      sp::typed_value::uint32(sp::haproxy_default_max_frame_size));
        sp::encode_kv(hello, "capabilities", sp::typed_value::string("pipelining"));
        sp::encode_kv(hello, "engine-id",
                      sp::typed_value::string("5b0e4b3c-5a4e-4d9b-9c1e-0123456789ab"));
        if (!w.finish(sp::haproxy_default_max_frame_size)) std::abort();
    }

    // --message route-http: one payload per warm host, built once; misses are encoded per frame.
    static constexpr std::string_view route_path = "/api/v1/items?id=42&sort=desc";
    std::vector<std::string> warm_hosts;
    std::vector<sp::byte_buffer> warm_payloads;
    std::string miss_tag;  ///< "-<pid>-": names never sent by an earlier run against the agent

    void setup_route(const options& opt) {
        for (unsigned i = 0; i < opt.hosts; ++i) {
            warm_hosts.push_back("w" + std::to_string(i) + "." + opt.host_suffix);
            warm_payloads.emplace_back();
            encode_route(warm_payloads.back(), warm_hosts.back());
        }
        miss_tag = "-" + std::to_string(static_cast<long>(getpid())) + "-";
    }

    // --host-file: entries and their classes.
    struct host_entry {
        std::string name;         ///< as written in the file ("{n}" unexpanded)
        std::size_t brace = 0;    ///< where "{n}" is, or npos
        std::uint32_t klass = 0;  ///< index in `classes`
    };
    struct host_class {
        std::string name;
        std::int64_t weight = 1;
        std::vector<std::uint32_t> entries;
    };
    std::vector<host_entry> entries;
    std::vector<host_class> classes;

    /// Reads --host-file; false with a message on stderr.
    bool load_host_file(const std::string& path) {
        std::ifstream in(path);
        if (!in) {
            std::fprintf(stderr, "spoa_loadgen: cannot read --host-file %s\n", path.c_str());
            return false;
        }
        auto class_of = [this](const std::string& name) {
            for (std::uint32_t i = 0; i < classes.size(); ++i) {
                if (classes[i].name == name) return i;
            }
            classes.push_back(host_class{name, 1, {}});
            return static_cast<std::uint32_t>(classes.size() - 1);
        };
        std::string line;
        for (unsigned lineno = 1; std::getline(in, line); ++lineno) {
            std::istringstream words(line);
            std::string kind, klass, value, extra;
            if (!(words >> kind) || kind[0] == '#') continue;
            const bool ok = static_cast<bool>(words >> klass >> value) && !(words >> extra);
            if (ok && kind == "weight") {
                char* end = nullptr;
                const long long w = std::strtoll(value.c_str(), &end, 10);
                if (*end == '\0' && w >= 0 && w <= 1'000'000) {
                    classes[class_of(klass)].weight = w;
                    continue;
                }
            } else if (ok && kind == "host") {
                const std::uint32_t k = class_of(klass);
                classes[k].entries.push_back(static_cast<std::uint32_t>(entries.size()));
                entries.push_back(host_entry{value, value.find("{n}"), k});
                continue;
            }
            std::fprintf(stderr,
                         "spoa_loadgen: %s:%u: expected 'weight <class> <0..1000000>' or "
                         "'host <class> <name>'\n",
                         path.c_str(), lineno);
            return false;
        }
        std::int64_t total = 0;
        for (const host_class& k : classes) {
            if (k.weight > 0 && k.entries.empty()) {
                std::fprintf(stderr, "spoa_loadgen: %s: class %s has a weight but no host\n",
                             path.c_str(), k.name.c_str());
                return false;
            }
            total += k.weight;
        }
        if (total == 0) {
            std::fprintf(stderr, "spoa_loadgen: %s: no class with a weight > 0\n", path.c_str());
            return false;
        }
        return true;
    }

    /// Replaces `out` with the LIST-OF-MESSAGES of one route-http for `host`.
    static void encode_route(sp::byte_buffer& out, std::string_view host) {
        out.clear();
        const std::array<sp::argument, 3> route_args{{
            {"host", sp::typed_value::string(host)},
            {"path", sp::typed_value::string(route_path)},
            {"src", sp::typed_value::ipv4({192, 0, 2, 10})},
        }};
        sp::encode_message(out, "route-http", route_args);
    }

    /// Appends one NOTIFY frame (FIN) with these ids.
    void encode_notify(sp::byte_buffer& out, std::uint64_t sid, std::uint64_t fid) const {
        encode_notify(out, sid, fid, payload.view());
    }

    /// Appends one NOTIFY frame (FIN) with these ids and this LIST-OF-MESSAGES.
    static void encode_notify(sp::byte_buffer& out, std::uint64_t sid, std::uint64_t fid,
                              sp::bytes_view body) {
        const std::size_t len = 1 + 4 + sp::varint_size(sid) + sp::varint_size(fid) + body.size();
        std::uint8_t* p = out.prepare(sp::length_prefix_size + len);
        p[0] = static_cast<std::uint8_t>(len >> 24);
        p[1] = static_cast<std::uint8_t>(len >> 16);
        p[2] = static_cast<std::uint8_t>(len >> 8);
        p[3] = static_cast<std::uint8_t>(len);
        p[4] = static_cast<std::uint8_t>(sp::frame_type::notify);
        p[5] = 0;
        p[6] = 0;
        p[7] = 0;
        p[8] = 1;  // FIN
        std::size_t n = 9;
        n += sp::encode_varint(sid, p + n);
        n += sp::encode_varint(fid, p + n);
        std::memcpy(p + n, body.data(), body.size());
        out.commit(n + body.size());
    }
};

// ---- per-thread engine --------------------------------------------------------------------------

enum class conn_state : std::uint8_t { connecting, hello_sent, running, closed };

struct connection {
    int fd = -1;
    conn_state state = conn_state::connecting;
    std::uint32_t max_frame_size = sp::haproxy_default_max_frame_size;
    std::vector<std::uint64_t> slot_sid;   ///< stream-id in flight in each slot, 0 = free
    std::vector<std::uint64_t> slot_sent;  ///< when its NOTIFY was written
    std::vector<std::uint32_t> free_slots;
    std::vector<std::string> slot_host;     ///< route-http: the host each slot's NOTIFY carries
    std::vector<std::uint32_t> slot_entry;  ///< --host-file: the entry each slot's host came from
    std::uint64_t next_sid = 1;
    std::size_t outstanding = 0;
    sp::byte_buffer out;
    std::size_t out_off = 0;  ///< bytes of `out` already written
    sp::byte_buffer partial;  ///< an ACK cut by a read boundary
    bool want_out = false;    ///< EPOLLOUT registered
    bool dirty = false;
};

struct shared_state {
    const options* opt = nullptr;
    const workload* work = nullptr;
    std::barrier<>* ready = nullptr;
    std::uint64_t start_ns = 0;  ///< written by thread 0 before the second barrier phase
    std::atomic<std::uint64_t> established{0};
    std::atomic<std::uint64_t> error_lines{0};
    double cpu_at_start = 0;
    double cpu_at_end = 0;
};

struct thread_result {
    latency_histogram hist;
    std::uint64_t acks = 0;        ///< received during the measured window
    std::uint64_t acks_total = 0;  ///< every valid ACK, warm-up and drain included
    std::uint64_t sent_total = 0;
    std::uint64_t errors = 0;
    std::uint64_t unanswered = 0;
    std::uint64_t closed_by_peer = 0;
    std::uint64_t established = 0;
    // route-http
    std::uint64_t refusals = 0;     ///< ACKs with txn.status (any time)
    std::uint64_t misses_sent = 0;  ///< NOTIFYs with a never-seen host
    std::uint64_t cache_hit = 0;    ///< decisions by txn.cache label (any time)
    std::uint64_t cache_miss = 0;
    std::uint64_t cache_coalesced = 0;
    std::uint64_t cache_other = 0;
    /// --host-file: (entry, answer) -> ACKs; answer "ip:port" or "status:<N>".
    std::map<std::pair<std::uint32_t, std::string>, std::uint64_t> answers;
};

class engine {
  public:
    engine(shared_state& shared, unsigned index, unsigned connections)
        : sh_(shared), opt_(*shared.opt), work_(*shared.work), index_(index), wanted_(connections) {
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        read_buf_.resize(256 * 1024);
        events_.resize(1024);
    }
    ~engine() {
        for (auto& c : conns_) {
            if (c->fd >= 0) ::close(c->fd);
        }
        if (ep_ >= 0) ::close(ep_);
    }
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    thread_result& result() noexcept { return res_; }

    void run() {
        handshake();
        sh_.ready->arrive_and_wait();  // every thread has its connections
        if (index_ == 0 && opt_.idle != 0) {
            std::printf("idle_ready connections=%llu\n",
                        static_cast<unsigned long long>(sh_.established.load()));
            std::fflush(stdout);
        }
        if (index_ == 0) {
            sh_.start_ns = now_ns();
            sh_.cpu_at_start = spoa::bench::process_cpu_s();
        }
        sh_.ready->arrive_and_wait();  // start_ns is published
        if (opt_.idle != 0) {
            hold();
        } else {
            load();
        }
    }

  private:
    // -- errors ---------------------------------------------------------------------------------

    __attribute__((format(printf, 2, 3))) void error(const char* fmt, ...) {
        ++res_.errors;
        if (sh_.error_lines.fetch_add(1) >= 10) return;
        std::va_list ap;
        va_start(ap, fmt);
        std::fprintf(stderr, "spoa_loadgen: error: ");
        std::vfprintf(stderr, fmt, ap);
        std::fputc('\n', stderr);
        va_end(ap);
    }

    void close_conn(connection& c) {
        if (c.state == conn_state::closed) return;
        if (c.state == conn_state::connecting) --connecting_;
        if (c.state != conn_state::running) ++failed_;
        c.state = conn_state::closed;
        res_.unanswered += c.outstanding;
        c.outstanding = 0;
        epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
        ::close(c.fd);
        c.fd = -1;
    }

    // -- connecting and handshake -----------------------------------------------------------------

    bool start_connect() {
        auto c = std::make_unique<connection>();
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            error("socket: %s", std::strerror(errno));
            return false;
        }
        const int rc =
            connect(c->fd, reinterpret_cast<const sockaddr*>(&opt_.target), sizeof opt_.target);
        if (rc != 0 && errno != EINPROGRESS) {
            error("connect %s: %s", opt_.target_text.c_str(), std::strerror(errno));
            ::close(c->fd);
            return false;
        }
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.ptr = c.get();
        epoll_ctl(ep_, EPOLL_CTL_ADD, c->fd, &ev);
        if (opt_.idle == 0) {
            c->slot_sid.assign(opt_.inflight, 0);
            c->slot_sent.assign(opt_.inflight, 0);
            if (opt_.message == message_kind::route_http) c->slot_host.resize(opt_.inflight);
            if (!opt_.host_file.empty()) c->slot_entry.assign(opt_.inflight, 0);
            for (std::uint32_t i = opt_.inflight; i-- > 0;)
                c->free_slots.push_back(i);
        }
        conns_.push_back(std::move(c));
        ++connecting_;
        return true;
    }

    void on_connected(connection& c) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            error("connect %s: %s", opt_.target_text.c_str(), std::strerror(err));
            close_conn(c);
            return;
        }
        --connecting_;
        spoa::bench::set_nodelay(c.fd);
        c.state = conn_state::hello_sent;
        c.out.append(work_.hello.view());
        set_events(c, EPOLLIN);
        flush(c);
    }

    void handshake() {
        const std::uint64_t deadline = now_ns() + 10'000'000'000ull + wanted_ * 2'000'000ull;
        while (established_ + failed_ < wanted_) {
            while (started_ < wanted_ && connecting_ < opt_.max_connecting) {
                ++started_;
                if (!start_connect()) ++failed_;
            }
            if (now_ns() > deadline || stop_requested.load()) {
                error("handshake: only %llu of %u connections established in time",
                      static_cast<unsigned long long>(established_), wanted_);
                break;
            }
            poll(100);
        }
        res_.established = established_;
    }

    void on_agent_hello(connection& c, const sp::frame& f) {
        if (f.type == sp::frame_type::agent_disconnect) {
            sp::disconnect_info info;
            (void)sp::parse_disconnect(f.payload, info);
            error("handshake refused: AGENT-DISCONNECT status %u '%.*s'", info.status,
                  static_cast<int>(info.message.size()), info.message.data());
            close_conn(c);
            return;
        }
        if (f.type != sp::frame_type::agent_hello || f.flags != sp::frame_flags::fin ||
            f.stream_id != 0 || f.frame_id != 0) {
            error("handshake: expected AGENT-HELLO, got frame type %u",
                  static_cast<unsigned>(f.type));
            close_conn(c);
            return;
        }
        sp::kv_reader kv(f.payload);
        bool version = false;
        bool pipelining = false;
        std::uint64_t mfs = 0;
        while (!kv.done()) {
            std::string_view key;
            sp::typed_value v;
            if (kv.next(key, v) != sp::error::none) {
                error("handshake: undecodable AGENT-HELLO");
                close_conn(c);
                return;
            }
            if (key == "version" && v.type() == sp::data_type::string) {
                version = v.as_string() == "2.0";
            } else if (key == "max-frame-size" && v.is_integer()) {
                mfs = v.as_uint64();
            } else if (key == "capabilities" && v.type() == sp::data_type::string) {
                pipelining = sp::has_capability(v.as_string(), "pipelining");
            }
        }
        if (!version || mfs < sp::min_max_frame_size || mfs > sp::haproxy_default_max_frame_size ||
            (!pipelining && opt_.inflight > 1 && opt_.idle == 0)) {
            error("handshake: bad AGENT-HELLO (version ok=%d max-frame-size=%llu pipelining=%d)",
                  version ? 1 : 0, static_cast<unsigned long long>(mfs), pipelining ? 1 : 0);
            close_conn(c);
            return;
        }
        c.max_frame_size = static_cast<std::uint32_t>(mfs);
        c.state = conn_state::running;
        ++established_;
        sh_.established.fetch_add(1);
    }

    // -- the loop
    // -----------------------------------------------------------------------------------

    void set_events(connection& c, std::uint32_t events) {
        epoll_event ev{};
        ev.events = events;
        ev.data.ptr = &c;
        epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
        c.want_out = (events & EPOLLOUT) != 0;
    }

    /// One epoll_wait and the events it returned; then every dirty connection is refilled (when
    /// `sending_`) and flushed with one write.
    void poll(int timeout_ms) {
        const int n = epoll_wait(ep_, events_.data(), static_cast<int>(events_.size()), timeout_ms);
        for (int i = 0; i < n; ++i) {
            auto& c = *static_cast<connection*>(events_[static_cast<std::size_t>(i)].data.ptr);
            const std::uint32_t ev = events_[static_cast<std::size_t>(i)].events;
            if (c.state == conn_state::closed) continue;
            if (c.state == conn_state::connecting) {
                on_connected(c);
                continue;
            }
            if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) on_readable(c);
            if (c.state != conn_state::closed && (ev & EPOLLOUT) != 0) flush(c);
        }
        if (dirty_.empty()) return;
        const std::uint64_t now = now_ns();
        for (connection* c : dirty_) {
            c->dirty = false;
            if (c->state != conn_state::running) continue;
            if (sending_) refill(*c, now);
            if (!c->want_out) flush(*c);
        }
        dirty_.clear();
    }

    void mark_dirty(connection& c) {
        if (c.dirty) return;
        c.dirty = true;
        dirty_.push_back(&c);
    }

    void refill(connection& c, std::uint64_t now) {
        while (!c.free_slots.empty()) {
            const std::uint32_t slot = c.free_slots.back();
            c.free_slots.pop_back();
            const std::uint64_t sid = c.next_sid;
            c.next_sid += 2;
            c.slot_sid[slot] = sid;
            c.slot_sent[slot] = now;
            ++c.outstanding;
            ++res_.sent_total;
            if (opt_.message == message_kind::route_http) {
                encode_route_notify(c, slot, sid);
                continue;
            }
            work_.encode_notify(c.out, sid, slot + 1);
        }
    }

    /// route-http: a warm host in turn, or (a --miss-rate fraction) a host never sent before.
    void encode_route_notify(connection& c, std::uint32_t slot, std::uint64_t sid) {
        std::string& host = c.slot_host[slot];
        if (!work_.entries.empty()) {
            const std::uint32_t e = next_entry();
            c.slot_entry[slot] = e;
            const workload::host_entry& entry = work_.entries[e];
            host = entry.name;
            if (entry.brace != std::string::npos) {
                // Unique across threads and runs: counter, thread, pid.
                host.replace(entry.brace, 3,
                             std::to_string(next_miss_++) + "-" + std::to_string(index_) +
                                 work_.miss_tag.substr(0, work_.miss_tag.size() - 1));
                ++res_.misses_sent;
            }
            workload::encode_route(scratch_, host);
            workload::encode_notify(c.out, sid, slot + 1, scratch_.view());
            return;
        }
        miss_credit_ += opt_.miss_rate;
        if (miss_credit_ >= 1.0) {
            miss_credit_ -= 1.0;
            ++res_.misses_sent;
            host.assign("m").append(std::to_string(next_miss_++)).append(work_.miss_tag);
            host.append(std::to_string(index_)).append(".miss.").append(opt_.host_suffix);
            workload::encode_route(scratch_, host);
            workload::encode_notify(c.out, sid, slot + 1, scratch_.view());
            return;
        }
        const std::size_t i = next_warm_++ % work_.warm_hosts.size();
        host = work_.warm_hosts[i];
        workload::encode_notify(c.out, sid, slot + 1, work_.warm_payloads[i].view());
    }

    /// --host-file: the next entry. Classes by smooth weighted round-robin (each class gains its
    /// weight, the richest is drawn and pays the total), so a class of weight w gets exactly w
    /// of every `total` draws, spread out; within a class, its hosts in turn.
    std::uint32_t next_entry() {
        const auto& classes = work_.classes;
        if (class_credit_.empty()) {
            class_credit_.assign(classes.size(), 0);
            class_next_.assign(classes.size(), 0);
        }
        std::int64_t total = 0;
        std::size_t best = 0;
        for (std::size_t k = 0; k < classes.size(); ++k) {
            class_credit_[k] += classes[k].weight;
            total += classes[k].weight;
            if (class_credit_[k] > class_credit_[best]) best = k;
        }
        class_credit_[best] -= total;
        const auto& list = classes[best].entries;
        return list[class_next_[best]++ % list.size()];
    }

    void flush(connection& c) {
        while (c.out_off < c.out.size()) {
            const ssize_t n =
                ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
            if (n > 0) {
                c.out_off += static_cast<std::size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!c.want_out) set_events(c, EPOLLIN | EPOLLOUT);
                return;
            }
            error("write: %s", std::strerror(errno));
            close_conn(c);
            return;
        }
        c.out.clear();
        c.out_off = 0;
        if (c.want_out) set_events(c, EPOLLIN);
    }

    void on_readable(connection& c) {
        for (;;) {
            const ssize_t n = ::recv(c.fd, read_buf_.data(), read_buf_.size(), 0);
            if (n > 0) {
                const std::uint64_t now = now_ns();
                consume(c, sp::bytes_view(read_buf_.data(), static_cast<std::size_t>(n)), now);
                // A short read drained the socket: skip the read that would say EAGAIN.
                if (static_cast<std::size_t>(n) < read_buf_.size() ||
                    c.state == conn_state::closed) {
                    return;
                }
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
            // EOF or reset: the agent closed on us. Expected only at the very end.
            ++res_.closed_by_peer;
            if (!finished_) {
                if (n == 0) {
                    error("connection closed by the agent (%zu frames in flight)", c.outstanding);
                } else {
                    error("read: %s", std::strerror(errno));
                }
            }
            close_conn(c);
            return;
        }
    }

    void consume(connection& c, sp::bytes_view data, std::uint64_t now) {
        if (!c.partial.empty()) {
            c.partial.append(data);
            const std::size_t used = parse(c, c.partial.view(), now);
            if (c.state == conn_state::closed) return;
            c.partial.consume_front(used);
            return;
        }
        const std::size_t used = parse(c, data, now);
        if (c.state == conn_state::closed) return;
        if (used < data.size()) c.partial.append(data.subspan(used));
    }

    std::size_t parse(connection& c, sp::bytes_view data, std::uint64_t now) {
        std::size_t off = 0;
        while (off < data.size()) {
            sp::frame f;
            const auto r = sp::decode_frame(data.subspan(off), c.max_frame_size, f);
            if (r.status == sp::decode_status::need_more) break;
            if (r.status == sp::decode_status::error) {
                error("undecodable frame from the agent: %s",
                      std::string(sp::to_string(r.err)).c_str());
                close_conn(c);
                return off;
            }
            off += r.size;
            if (c.state == conn_state::hello_sent) {
                on_agent_hello(c, f);
            } else {
                on_ack(c, f, now);
            }
            if (c.state == conn_state::closed) return off;
        }
        return off;
    }

    void on_ack(connection& c, const sp::frame& f, std::uint64_t now) {
        if (f.type == sp::frame_type::agent_disconnect) {
            sp::disconnect_info info;
            (void)sp::parse_disconnect(f.payload, info);
            error("AGENT-DISCONNECT status %u '%.*s'", info.status,
                  static_cast<int>(info.message.size()), info.message.data());
            close_conn(c);
            return;
        }
        if (f.type != sp::frame_type::ack) {
            error("expected ACK, got frame type %u", static_cast<unsigned>(f.type));
            return;
        }
        if (f.flags != sp::frame_flags::fin) {
            error("ACK sid=%llu fid=%llu with flags 0x%x (want FIN only)",
                  static_cast<unsigned long long>(f.stream_id),
                  static_cast<unsigned long long>(f.frame_id), f.flags);
            return;
        }
        const std::uint64_t slot = f.frame_id - 1;  // frame-id 0 wraps to a huge slot
        if (slot >= c.slot_sid.size() || c.slot_sid[slot] == 0 || c.slot_sid[slot] != f.stream_id) {
            error("ACK sid=%llu fid=%llu matches no frame in flight",
                  static_cast<unsigned long long>(f.stream_id),
                  static_cast<unsigned long long>(f.frame_id));
            return;
        }
        const std::uint64_t sent = c.slot_sent[slot];
        c.slot_sid[slot] = 0;
        c.free_slots.push_back(static_cast<std::uint32_t>(slot));
        --c.outstanding;
        mark_dirty(c);
        if (opt_.expect == expect_mode::route) {
            const bool counting = !c.slot_entry.empty();
            const route_answer a = check_route(f, c.slot_host[slot], counting ? &answer_ : nullptr);
            if (a == route_answer::invalid) return;
            if (counting) ++res_.answers[{c.slot_entry[slot], answer_}];
            if (a == route_answer::refusal) {
                ++res_.acks_total;  // answered, but not a decision: neither rate nor latency
                return;
            }
        } else if (!check_actions(f)) {
            return;
        }
        ++res_.acks_total;
        if (measuring_) {
            ++res_.acks;
            res_.hist.record(now - sent);
        }
    }

    bool check_actions(const sp::frame& f) {
        if (const sp::error e = sp::decode_actions(f.payload, actions_); e != sp::error::none) {
            error("ACK sid=%llu: undecodable actions: %s",
                  static_cast<unsigned long long>(f.stream_id),
                  std::string(sp::to_string(e)).c_str());
            return false;
        }
        switch (opt_.expect) {
            case expect_mode::any:
                return true;
            case expect_mode::empty:
                if (actions_.empty()) return true;
                error("ACK sid=%llu: %zu actions, want none",
                      static_cast<unsigned long long>(f.stream_id), actions_.size());
                return false;
            case expect_mode::echo:
            case expect_mode::route:  // checked by check_route
                break;
        }
        const auto& args = work_.args;
        bool ok = actions_.size() == args.size();
        for (std::size_t i = 0; ok && i < args.size(); ++i) {
            const sp::action& a = actions_[i];
            ok = a.type == sp::action_type::set_var && a.scope == sp::var_scope::txn &&
                 a.name == args[i].name && a.value == args[i].value;
        }
        if (!ok) {
            error("ACK sid=%llu: %zu actions, not the 5 set-var txn.<arg> the echo handler writes",
                  static_cast<unsigned long long>(f.stream_id), actions_.size());
        }
        return ok;
    }

    enum class route_answer : std::uint8_t { invalid, decision, refusal };

    /// route-http: a decision (ip, port, resource = the host sent, cache) or a refusal (status).
    route_answer check_route(const sp::frame& f, std::string_view host,
                             std::string* answer = nullptr) {
        const auto sid = static_cast<unsigned long long>(f.stream_id);
        if (const sp::error e = sp::decode_actions(f.payload, actions_); e != sp::error::none) {
            error("ACK sid=%llu: undecodable actions: %s", sid,
                  std::string(sp::to_string(e)).c_str());
            return route_answer::invalid;
        }
        const sp::action* ip = nullptr;
        const sp::action* port = nullptr;
        const sp::action* resource = nullptr;
        const sp::action* cache = nullptr;
        const sp::action* status = nullptr;
        const sp::action* reason = nullptr;
        for (const sp::action& a : actions_) {
            if (a.type != sp::action_type::set_var || a.scope != sp::var_scope::txn) continue;
            if (a.name == "ip") ip = &a;
            if (a.name == "port") port = &a;
            if (a.name == "resource") resource = &a;
            if (a.name == "cache") cache = &a;
            if (a.name == "status") status = &a;
            if (a.name == "reason") reason = &a;
        }
        if (status) {
            ++res_.refusals;
            if (refusal_lines_++ < 3) {
                const std::string_view why = reason && reason->value.type() == sp::data_type::string
                                                 ? reason->value.as_string()
                                                 : std::string_view("?");
                std::fprintf(stderr, "spoa_loadgen: refusal for %.*s: status %lld '%.*s'\n",
                             static_cast<int>(host.size()), host.data(),
                             status->value.is_integer()
                                 ? static_cast<long long>(status->value.as_int64())
                                 : -1LL,
                             static_cast<int>(why.size()), why.data());
            }
            if (answer) {
                answer->assign("status:");
                answer->append(status->value.is_integer() ? std::to_string(status->value.as_int64())
                                                          : std::string("?"));
            }
            return route_answer::refusal;
        }
        const bool ip_ok = ip && (ip->value.type() == sp::data_type::ipv4 ||
                                  ip->value.type() == sp::data_type::ipv6);
        const bool port_ok = port && port->value.is_integer() && port->value.as_int64() >= 1 &&
                             port->value.as_int64() <= 65535;
        const bool resource_ok = resource && resource->value.type() == sp::data_type::string &&
                                 resource->value.as_string() == host;
        const bool cache_ok = cache && cache->value.type() == sp::data_type::string;
        if (!ip_ok || !port_ok || !resource_ok || !cache_ok) {
            error(
                "ACK sid=%llu for %.*s: not a routing decision (ip %s, port %s, resource %s, "
                "cache %s; %zu actions)",
                sid, static_cast<int>(host.size()), host.data(), ip_ok ? "ok" : "bad",
                port_ok ? "ok" : "bad", resource_ok ? "ok" : "bad", cache_ok ? "ok" : "bad",
                actions_.size());
            return route_answer::invalid;
        }
        if (answer) format_endpoint(*answer, ip->value, port->value.as_int64());
        const std::string_view label = cache->value.as_string();
        if (label == "hit") {
            ++res_.cache_hit;
        } else if (label == "miss") {
            ++res_.cache_miss;
        } else if (label == "coalesced") {
            ++res_.cache_coalesced;
        } else {
            ++res_.cache_other;
        }
        return route_answer::decision;
    }

    /// "a.b.c.d:port" or "[v6]:port", the form the stress driver compares with its route table.
    static void format_endpoint(std::string& out, const sp::typed_value& ip, std::int64_t port) {
        char text[INET6_ADDRSTRLEN] = "?";
        if (ip.type() == sp::data_type::ipv4) {
            const auto a = ip.as_ipv4();
            inet_ntop(AF_INET, a.data(), text, sizeof text);
            out.assign(text);
        } else {
            const auto a = ip.as_ipv6();
            inet_ntop(AF_INET6, a.data(), text, sizeof text);
            out.assign("[").append(text).append("]");
        }
        out.append(":").append(std::to_string(port));
    }

    // -- phases
    // -------------------------------------------------------------------------------------

    void load() {
        const std::uint64_t start = sh_.start_ns;
        const auto warm = static_cast<std::uint64_t>(opt_.warmup_s * 1e9);
        const auto dur = static_cast<std::uint64_t>(opt_.duration_s * 1e9);
        const std::uint64_t measure_start = start + warm;
        const std::uint64_t measure_end = measure_start + dur;
        const std::uint64_t drain_end =
            measure_end + static_cast<std::uint64_t>(opt_.drain_s * 1e9);
        sending_ = true;
        for (auto& c : conns_) {
            if (c->state == conn_state::running) mark_dirty(*c);
        }
        measuring_ = warm == 0;
        if (measuring_ && index_ == 0) sh_.cpu_at_start = spoa::bench::process_cpu_s();
        for (;;) {
            std::uint64_t now = now_ns();
            if (!measuring_ && sending_ && now >= measure_start) {
                measuring_ = true;
                res_.acks = 0;
                res_.hist.reset();
                if (index_ == 0) sh_.cpu_at_start = spoa::bench::process_cpu_s();
            }
            if (sending_ && now >= measure_end) {
                sending_ = false;
                measuring_ = false;
                if (index_ == 0) sh_.cpu_at_end = spoa::bench::process_cpu_s();
            }
            if (stop_requested.load() && sending_) {
                error("interrupted");
                sending_ = false;
                measuring_ = false;
            }
            if (!sending_ && (outstanding() == 0 || now >= drain_end)) break;
            const std::uint64_t next =
                sending_ ? (measuring_ ? measure_end : measure_start) : drain_end;
            const std::uint64_t wait_ms = next > now ? (next - now) / 1'000'000 + 1 : 0;
            poll(static_cast<int>(wait_ms < 100 ? wait_ms : 100));
        }
        finished_ = true;
        for (auto& c : conns_) {
            res_.unanswered += c->outstanding;
            c->outstanding = 0;
        }
        if (res_.unanswered != 0) {
            error("%llu frames never answered", static_cast<unsigned long long>(res_.unanswered));
        }
    }

    void hold() {
        const std::uint64_t end = opt_.hold_s > 0
                                      ? sh_.start_ns + static_cast<std::uint64_t>(opt_.hold_s * 1e9)
                                      : ~std::uint64_t{0};
        while (!stop_requested.load() && now_ns() < end)
            poll(50);
        finished_ = true;
    }

    [[nodiscard]] std::size_t outstanding() const noexcept {
        std::size_t n = 0;
        for (const auto& c : conns_)
            n += c->outstanding;
        return n;
    }

    shared_state& sh_;
    const options& opt_;
    const workload& work_;
    unsigned index_;
    unsigned wanted_;
    int ep_ = -1;
    std::vector<std::unique_ptr<connection>> conns_;
    std::vector<connection*> dirty_;
    std::vector<std::uint8_t> read_buf_;
    std::vector<epoll_event> events_;
    std::vector<sp::action> actions_;
    thread_result res_;
    sp::byte_buffer scratch_;                 ///< route-http: a miss's LIST-OF-MESSAGES
    double miss_credit_ = 0;                  ///< route-http: --miss-rate accumulator
    std::uint64_t next_miss_ = 0;             ///< route-http: miss host counter
    std::uint64_t next_warm_ = 0;             ///< route-http: warm host counter
    std::vector<std::int64_t> class_credit_;  ///< --host-file: weighted round-robin state
    std::vector<std::uint64_t> class_next_;   ///< --host-file: next host of each class
    std::string answer_;                      ///< --host-file: the answer being counted
    std::uint64_t refusal_lines_ = 0;
    std::uint64_t started_ = 0;
    std::uint64_t failed_ = 0;
    std::uint64_t connecting_ = 0;
    std::uint64_t established_ = 0;
    bool sending_ = false;
    bool measuring_ = false;
    bool finished_ = false;
};

int free_port() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        std::perror("spoa_loadgen: free port");
        return 1;
    }
    std::printf("%u\n", static_cast<unsigned>(ntohs(a.sin_port)));
    ::close(fd);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    spoa::bench::arg_parser args(argc, argv);
    if (args.flag("--help") || args.flag("-h")) {
        usage();
        return 0;
    }
    if (args.flag("--free-port")) return free_port();

    options opt;
    args.get("--target", opt.target_text);
    args.get("--connections", opt.connections);
    args.get("--inflight", opt.inflight);
    args.get("--threads", opt.threads);
    args.get("--warmup", opt.warmup_s);
    args.get("--duration", opt.duration_s);
    args.get("--drain", opt.drain_s);
    args.get("--idle", opt.idle);
    args.get("--hold", opt.hold_s);
    args.get("--max-connecting", opt.max_connecting);
    opt.quiet = args.flag("--quiet");
    std::string message = "echo";
    args.get("--message", message);
    if (message == "echo") {
        opt.message = message_kind::echo;
    } else if (message == "route-http") {
        opt.message = message_kind::route_http;
    } else {
        usage();
        return 2;
    }
    args.get("--hosts", opt.hosts);
    args.get("--miss-rate", opt.miss_rate);
    args.get("--host-suffix", opt.host_suffix);
    opt.refusals_ok = args.flag("--refusals-ok");
    args.get("--host-file", opt.host_file);
    args.get("--counts-out", opt.counts_out);
    if (!opt.host_file.empty()) opt.message = message_kind::route_http;
    if (!opt.counts_out.empty() && opt.host_file.empty()) {
        std::fprintf(stderr, "spoa_loadgen: --counts-out needs --host-file\n");
        return 2;
    }
    std::string expect = opt.message == message_kind::route_http ? "route" : "echo";
    args.get("--expect", expect);
    if (expect == "route") {
        opt.expect = expect_mode::route;
    } else if (expect == "echo") {
        opt.expect = expect_mode::echo;
    } else if (expect == "empty") {
        opt.expect = expect_mode::empty;
    } else if (expect == "any") {
        opt.expect = expect_mode::any;
    } else {
        usage();
        return 2;
    }
    if (const auto extra = args.unused(); !extra.empty()) {
        std::fprintf(stderr, "spoa_loadgen: unknown argument '%s'\n", extra.front().c_str());
        usage();
        return 2;
    }
    if (!spoa::bench::parse_endpoint(opt.target_text, opt.target)) {
        std::fprintf(stderr, "spoa_loadgen: bad --target '%s'\n", opt.target_text.c_str());
        return 2;
    }
    if (opt.threads < 1 || opt.threads > 64 || opt.inflight < 1 || opt.inflight > 1u << 20 ||
        opt.duration_s <= 0 || opt.warmup_s < 0 || opt.max_connecting < 1) {
        usage();
        return 2;
    }
    if ((opt.message == message_kind::route_http) != (opt.expect == expect_mode::route) &&
        opt.expect != expect_mode::any) {
        std::fprintf(stderr, "spoa_loadgen: --expect %s does not fit --message %s\n",
                     expect.c_str(), message.c_str());
        return 2;
    }
    if (opt.message == message_kind::route_http &&
        (opt.hosts < 1 || opt.miss_rate < 0 || opt.miss_rate > 1 || opt.host_suffix.empty())) {
        usage();
        return 2;
    }
    const std::size_t total_conns = opt.idle != 0 ? opt.idle : opt.connections;
    if (total_conns < opt.threads) opt.threads = static_cast<unsigned>(total_conns);

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    workload work;
    if (opt.message == message_kind::route_http) work.setup_route(opt);
    if (!opt.host_file.empty() && !work.load_host_file(opt.host_file)) return 2;
    std::barrier<> ready(opt.threads);
    shared_state shared;
    shared.opt = &opt;
    shared.work = &work;
    shared.ready = &ready;

    std::vector<std::unique_ptr<engine>> engines;
    for (unsigned t = 0; t < opt.threads; ++t) {
        const auto share = static_cast<unsigned>(total_conns / opt.threads +
                                                 (t < total_conns % opt.threads ? 1 : 0));
        engines.push_back(std::make_unique<engine>(shared, t, share));
    }
    std::vector<std::thread> threads;
    for (unsigned t = 1; t < opt.threads; ++t)
        threads.emplace_back([&engines, t] { engines[t]->run(); });
    engines[0]->run();
    for (auto& th : threads)
        th.join();

    thread_result total;
    for (auto& e : engines) {
        const thread_result& r = e->result();
        total.hist.merge(r.hist);
        total.acks += r.acks;
        total.acks_total += r.acks_total;
        total.sent_total += r.sent_total;
        total.errors += r.errors;
        total.unanswered += r.unanswered;
        total.closed_by_peer += r.closed_by_peer;
        total.established += r.established;
        total.refusals += r.refusals;
        total.misses_sent += r.misses_sent;
        total.cache_hit += r.cache_hit;
        total.cache_miss += r.cache_miss;
        total.cache_coalesced += r.cache_coalesced;
        total.cache_other += r.cache_other;
        for (const auto& [key, n] : r.answers)
            total.answers[key] += n;
    }

    if (opt.idle != 0) {
        std::printf(
            "spoa_loadgen: idle connections=%zu established=%llu closed_by_peer=%llu errors=%llu\n",
            opt.idle, static_cast<unsigned long long>(total.established),
            static_cast<unsigned long long>(total.closed_by_peer),
            static_cast<unsigned long long>(total.errors));
        return total.errors == 0 && total.established == opt.idle ? 0 : 1;
    }

    const double cpu =
        shared.cpu_at_end > shared.cpu_at_start ? shared.cpu_at_end - shared.cpu_at_start : 0.0;
    std::printf(
        "spoa_loadgen: target=%s connections=%u inflight=%u threads=%u warmup_s=%.2f "
        "duration_s=%.2f acks=%llu ack_per_s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f "
        "max_us=%.1f errors=%llu unanswered=%llu established=%llu acks_total=%llu "
        "sent_total=%llu lg_cpu_s=%.3f lg_cpu_pct=%.0f\n",
        opt.target_text.c_str(), opt.connections, opt.inflight, opt.threads, opt.warmup_s,
        opt.duration_s, static_cast<unsigned long long>(total.acks),
        static_cast<double>(total.acks) / opt.duration_s, total.hist.quantile_ns(0.50) / 1e3,
        total.hist.quantile_ns(0.99) / 1e3, total.hist.quantile_ns(0.999) / 1e3,
        static_cast<double>(total.hist.max()) / 1e3, static_cast<unsigned long long>(total.errors),
        static_cast<unsigned long long>(total.unanswered),
        static_cast<unsigned long long>(total.established),
        static_cast<unsigned long long>(total.acks_total),
        static_cast<unsigned long long>(total.sent_total), cpu, 100.0 * cpu / opt.duration_s);
    if (opt.message == message_kind::route_http) {
        // A second line; the first keeps its meaning (acks and ack_per_s count decisions, the
        // latency histogram too; refusals are only in acks_total).
        std::printf(
            "spoa_loadgen: message=route-http hosts=%u miss_rate=%g decisions=%llu "
            "decisions_per_s=%.0f refusals=%llu misses_sent=%llu cache_hit=%llu cache_miss=%llu "
            "cache_coalesced=%llu cache_other=%llu\n",
            work.entries.empty() ? opt.hosts : static_cast<unsigned>(work.entries.size()),
            opt.miss_rate, static_cast<unsigned long long>(total.acks),
            static_cast<double>(total.acks) / opt.duration_s,
            static_cast<unsigned long long>(total.refusals),
            static_cast<unsigned long long>(total.misses_sent),
            static_cast<unsigned long long>(total.cache_hit),
            static_cast<unsigned long long>(total.cache_miss),
            static_cast<unsigned long long>(total.cache_coalesced),
            static_cast<unsigned long long>(total.cache_other));
    }
    if (!opt.counts_out.empty()) {
        // Written whatever the outcome: a failed run's answers are what the driver reports.
        std::ofstream out(opt.counts_out, std::ios::trunc);
        for (const auto& [key, n] : total.answers) {
            const auto& entry = work.entries[key.first];
            out << work.classes[entry.klass].name << ' ' << entry.name << ' ' << key.second << ' '
                << n << '\n';
        }
        out.flush();
        if (!out) {
            std::fprintf(stderr, "spoa_loadgen: cannot write --counts-out %s\n",
                         opt.counts_out.c_str());
            return 1;
        }
    }
    const bool ok = total.errors == 0 && total.unanswered == 0 &&
                    total.established == opt.connections && total.acks_total == total.sent_total &&
                    (total.refusals == 0 || opt.refusals_ok);
    return ok ? 0 : 1;
}
