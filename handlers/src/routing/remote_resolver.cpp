#include "spoa/handlers/routing/remote_resolver.hpp"

#include <netinet/in.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <unordered_map>
#include <vector>

#include <msgpack.hpp>

#include "route_msgpack.hpp"

namespace spoa::handlers::routing {
namespace detail {
namespace {

using namespace std::chrono_literals;
using route_msgpack::as_uint;
using route_msgpack::is_str;
using route_msgpack::pack_str;
using route_msgpack::packer;
using route_msgpack::parse_error;
using route_msgpack::parse_route;
using route_msgpack::str;
using route_msgpack::string_sink;

// msgpack-RPC message kinds (https://github.com/msgpack-rpc/msgpack-rpc/blob/master/spec.md).
constexpr std::uint64_t kind_request = 0;
constexpr std::uint64_t kind_response = 1;
constexpr std::uint64_t kind_notification = 2;

// Bounds on what the control plane may send. A message still incomplete after this many bytes
// resets the connection instead of growing the buffer without end.
constexpr std::size_t max_message_bytes = 4 * 1024 * 1024;
constexpr std::size_t read_chunk = 64 * 1024;
// Notifications are best effort: beyond this many queued output bytes they are dropped.
constexpr std::size_t max_queued_notification_bytes = 1024 * 1024;

msgpack::unpack_limit message_limits() {
    // array, map, str, bin, ext, depth
    return {65536, 65536, 1024 * 1024, 1024 * 1024, 1024 * 1024, 16};
}

std::uint64_t now_ns() noexcept {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                          std::chrono::steady_clock::now().time_since_epoch())
                                          .count());
}

void pack_ip(packer& pk, const std::optional<ip_address>& ip) {
    if (ip) {
        pack_str(pk, ip->to_string());
    } else {
        pk.pack_nil();
    }
}

/// `[{id, protocol, path, source, destination, destination_port, sni, service, attributes}]`
std::string encode_context_params(const std::string& id, const resolve_context& ctx) {
    std::string out;
    string_sink sink{&out};
    packer pk(sink);
    pk.pack_array(1);
    pk.pack_map(9);
    pack_str(pk, "id");
    pack_str(pk, id);
    pack_str(pk, "protocol");
    pack_str(pk, to_string(ctx.proto));
    pack_str(pk, "path");
    pack_str(pk, ctx.path);
    pack_str(pk, "source");
    pack_ip(pk, ctx.source);
    pack_str(pk, "destination");
    pack_ip(pk, ctx.destination);
    pack_str(pk, "destination_port");
    pk.pack_uint16(ctx.destination_port);
    pack_str(pk, "sni");
    pack_str(pk, ctx.sni);
    pack_str(pk, "service");
    pack_str(pk, ctx.service);
    pack_str(pk, "attributes");
    pk.pack_map(static_cast<std::uint32_t>(ctx.attributes.size()));
    for (const auto& [k, v] : ctx.attributes) {
        pack_str(pk, k);
        pack_str(pk, v);
    }
    return out;
}

/// `[{id, protocol}]`
std::string encode_id_params(const std::string& id, app_protocol p) {
    std::string out;
    string_sink sink{&out};
    packer pk(sink);
    pk.pack_array(1);
    pk.pack_map(2);
    pack_str(pk, "id");
    pack_str(pk, id);
    pack_str(pk, "protocol");
    pack_str(pk, to_string(p));
    return out;
}

}  // namespace

// ---- the client: everything below runs on the service loop unless said otherwise --------------

/// What a call completes with: a local failure, or the server's (error, result) pair (views into
/// the received message, valid during the completion only).
struct call_outcome {
    const resolve_error* failure = nullptr;
    const msgpack::object* error = nullptr;
    const msgpack::object* result = nullptr;
};

using wake_callback = std::function<void(std::optional<resolve_error>)>;

enum class method_index : std::uint8_t { resolve = 0, wake = 1 };

/// A pending call. Ownership: one std::unique_ptr at a time, moved, never shared: created on the
/// caller's thread by call_method(), moved into a posted task (a `holder`), then into calls_ on the
/// loop, then out of calls_ by whichever of answer / timeout / drop / shutdown comes first; that
/// one completes it, so the others find no entry and the callback runs exactly once. Threads: the
/// caller's until posted, then the loop only (the holder completes it on the caller's thread if
/// the loop refused the task).
struct call {
    method_index method = method_index::resolve;
    std::string params;           ///< msgpack-encoded params array
    resolve_callback on_resolve;  ///< method resolve
    wake_callback on_wake;        ///< method wake
    std::uint64_t started_ns = 0;
    std::uint64_t timer = 0;
    std::uint32_t msgid = 0;
    bool sent = false;
};

enum class link_state : int { connecting, connected, backoff, stopped };

struct method_counters {
    std::atomic<std::uint64_t> calls{0};
    std::atomic<std::uint64_t> errors{0};
    std::atomic<std::uint64_t> timeouts{0};
    histogram latency{latency_buckets_seconds()};
};

/// One connection attempt and, once connected, the connection. Neither copied nor moved; it
/// frees itself in libuv's close callback and keeps the client alive until then.
/// Threads: the loop only. The client points at it (conn_) until close_connection(); libuv
/// callbacks that arrive after that (cancelled connect/writes) see `closing` and do nothing, and
/// a reconnect makes a new object (with a new generation, checked by its connect timer), so no
/// callback of an old connection touches a newer one.
struct connection {
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;
    uv_connect_t connect_req{};
    std::shared_ptr<remote_client> owner;
    // No reference function: strings are copied into the zone, never views into the buffer.
    msgpack::unpacker unpacker{nullptr, nullptr, read_chunk, message_limits()};
    std::size_t partial_bytes = 0;  ///< bytes of the message being received
    std::uint64_t generation = 0;
    std::uint64_t connect_timer = 0;
    std::uint64_t connected_ns = 0;
    std::string target;  ///< remote_client::target_text() when it was opened
    bool got_message = false;
    bool closing = false;

    explicit connection(std::shared_ptr<remote_client> o) : h{}, owner(std::move(o)) {}
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;
};

/// Owned by libuv from uv_write() to its callback (loop thread), which deletes it.
struct write_req {
    uv_write_t req{};
    std::string data;
};

/// The resolver's engine. Ownership: shared by the resolver, by every task and `holder` posted to
/// the loop and by the open connection; timers and at_stop hold only weak references. It thus
/// outlives the resolver until the loop has failed the calls and closed the connection.
/// Threads: the "any thread" methods touch only atomics, the handler mutex and loop_.post();
/// everything else (calls_, conn_, timers, backoff) is the loop thread's alone. `loop_` is a
/// reference: the resolver holds the service loop, and after the resolver is gone the client only
/// runs on the loop thread, which the service loop outlives.
class remote_client : public std::enable_shared_from_this<remote_client> {
  public:
    remote_client(remote_resolver_options opts, handlers::service_loop& loop,
                  std::shared_ptr<spdlog::logger> log)
        : opts_(std::move(opts)),
          loop_(loop),
          log_(std::move(log)),
          rng_(std::random_device{}()),
          backoff_(opts_.reconnect_min) {
        if (opts_.reconnect_min < 1ms) opts_.reconnect_min = 1ms;
        if (opts_.reconnect_max < opts_.reconnect_min) opts_.reconnect_max = opts_.reconnect_min;
        backoff_ = opts_.reconnect_min;
        connect_timeout_ = std::max<std::chrono::milliseconds>(opts_.call_timeout, 1000ms);
        if (!opts_.lookup) opts_.lookup = system_host_lookup();
        lookup_in_flight_.assign(opts_.addresses.size(), 0);
    }

    // ---- any thread ----

    void start() {
        std::weak_ptr<remote_client> w = weak_from_this();
        loop_.at_stop([w] {
            if (auto s = w.lock()) s->shutdown("the service loop is stopping");
        });
        loop_.post([self = shared_from_this()](uv_loop_t*) { self->connect(); });
    }

    void stop() {
        {
            // Waits for a push being handled on the loop: none runs once the resolver is gone.
            std::lock_guard lock(handler_mutex_);
            on_invalidate_ = nullptr;
        }
        loop_.post([self = shared_from_this()](uv_loop_t*) {
            self->shutdown("the resolver was destroyed");
        });
    }

    void set_invalidation_handler(remote_resolver::invalidation_handler fn) {
        std::lock_guard lock(handler_mutex_);
        on_invalidate_ = std::move(fn);
    }

    /// Starts a call; its callback runs exactly once (maybe right here, on the caller's thread).
    void call_method(method_index m, std::string params, resolve_callback on_resolve,
                     wake_callback on_wake) {
        auto c = std::make_unique<call>();
        c->method = m;
        c->params = std::move(params);
        c->on_resolve = std::move(on_resolve);
        c->on_wake = std::move(on_wake);
        c->started_ns = now_ns();
        counters(m).calls.fetch_add(1, std::memory_order_relaxed);
        pending_.fetch_add(1, std::memory_order_relaxed);
        const auto st = state_.load(std::memory_order_acquire);
        if (st == link_state::backoff || st == link_state::stopped) {
            fail(std::move(c), error_code::unavailable,
                 st == link_state::stopped ? "control plane unreachable (resolver stopped)"
                                           : "control plane unreachable");
            return;
        }
        if (pending_.load(std::memory_order_relaxed) > opts_.max_pending) {
            fail(std::move(c), error_code::unavailable, "too many pending control-plane calls");
            return;
        }
        // If the loop drops the task (it is stopping), the holder still completes the call.
        struct holder {
            std::shared_ptr<remote_client> self;
            std::unique_ptr<call> c;
            holder(std::shared_ptr<remote_client> s, std::unique_ptr<call> cc)
                : self(std::move(s)), c(std::move(cc)) {}
            holder(const holder&) = delete;
            holder& operator=(const holder&) = delete;
            ~holder() {
                if (c) self->fail(std::move(c), error_code::unavailable, "the agent is stopping");
            }
        };
        auto h = std::make_shared<holder>(shared_from_this(), std::move(c));
        loop_.post([h](uv_loop_t*) { h->self->submit(std::move(h->c)); });
    }

    /// Best effort: sent if connected, else dropped and counted.
    void notify(std::string method, std::string params) {
        if (state_.load(std::memory_order_acquire) != link_state::connected) {
            notifications_dropped_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        loop_.post(
            [self = shared_from_this(), method = std::move(method),
             params = std::move(params)](uv_loop_t*) { self->send_notification(method, params); });
    }

    [[nodiscard]] remote_resolver_stats snapshot() const {
        remote_resolver_stats s;
        s.connected = state_.load(std::memory_order_relaxed) == link_state::connected;
        s.connections = connections_.load(std::memory_order_relaxed);
        s.reconnects = reconnects_.load(std::memory_order_relaxed);
        s.pending = pending_.load(std::memory_order_relaxed);
        s.invalidations = invalidations_.load(std::memory_order_relaxed);
        s.protocol_errors = protocol_errors_.load(std::memory_order_relaxed);
        s.notifications_sent = notifications_sent_.load(std::memory_order_relaxed);
        s.notifications_dropped = notifications_dropped_.load(std::memory_order_relaxed);
        const auto fill = [](const method_counters& m) {
            return remote_call_stats{m.calls.load(std::memory_order_relaxed),
                                     m.errors.load(std::memory_order_relaxed),
                                     m.timeouts.load(std::memory_order_relaxed)};
        };
        s.resolve = fill(methods_[0]);
        s.wake = fill(methods_[1]);
        std::lock_guard lock(status_mutex_);
        s.address = peer_address_;
        s.peer = peer_;
        return s;
    }

    /// The configured addresses, comma-separated (the metrics' `address` label, log lines).
    [[nodiscard]] std::string addresses_text() const {
        std::string out;
        for (const auto& a : opts_.addresses) {
            if (!out.empty()) out += ',';
            out += a.to_string();
        }
        return out;
    }

    [[nodiscard]] bool connected() const noexcept {
        return state_.load(std::memory_order_relaxed) == link_state::connected;
    }
    [[nodiscard]] const method_counters& counters(method_index m) const noexcept {
        return methods_[static_cast<std::size_t>(m)];
    }
    [[nodiscard]] method_counters& counters(method_index m) noexcept {
        return methods_[static_cast<std::size_t>(m)];
    }
    [[nodiscard]] const remote_resolver_options& options() const noexcept { return opts_; }

  private:
    static constexpr std::string_view method_name(method_index m) noexcept {
        return m == method_index::resolve ? "resolve" : "wake";
    }

    /// Completes a call (any thread for calls that never reached the loop, else the loop).
    void complete(std::unique_ptr<call> c, const call_outcome& o, bool observe_latency) {
        if (c->timer != 0) {
            loop_.cancel_timer(c->timer);
            c->timer = 0;
        }
        pending_.fetch_sub(1, std::memory_order_relaxed);
        auto& m = counters(c->method);
        if (observe_latency)
            m.latency.observe(static_cast<double>(now_ns() - c->started_ns) * 1e-9);
        // Counted before the callback runs, so that whoever it wakes sees the stats.
        try {
            if (c->method == method_index::resolve) {
                resolve_result r = to_resolve_result(o);
                if (!std::holds_alternative<route>(r))
                    m.errors.fetch_add(1, std::memory_order_relaxed);
                c->on_resolve(std::move(r));
            } else {
                std::optional<resolve_error> e = to_wake_result(o);
                if (e) m.errors.fetch_add(1, std::memory_order_relaxed);
                c->on_wake(std::move(e));
            }
        } catch (const std::exception& e) {
            log_->error("control plane {} callback threw: {}", method_name(c->method), e.what());
        } catch (...) {
            log_->error("control plane {} callback threw", method_name(c->method));
        }
    }

    resolve_result to_resolve_result(const call_outcome& o) {
        if (o.failure) return *o.failure;
        if (o.error->type != msgpack::type::NIL) return parse_error(*o.error);
        route r;
        if (auto problem = parse_route(*o.result, r); !problem.empty()) {
            log_->warn("control plane at {} sent a malformed resolve result: {}", peer_text(),
                       problem);
            return resolve_error{
                error_code::internal, "control plane sent a malformed route: " + problem, {}};
        }
        return r;
    }

    static std::optional<resolve_error> to_wake_result(const call_outcome& o) {
        if (o.failure) return *o.failure;
        if (o.error->type != msgpack::type::NIL) return parse_error(*o.error);
        return std::nullopt;  // the result carries nothing we need (nil is expected)
    }

    void fail(std::unique_ptr<call> c, error_code code, std::string reason) {
        const resolve_error e{code, std::move(reason), {}};
        complete(std::move(c), call_outcome{&e, nullptr, nullptr}, false);
    }

    // ---- loop thread from here on ----

    void submit(std::unique_ptr<call> c) {
        const auto st = state_.load(std::memory_order_relaxed);
        if (st == link_state::backoff || st == link_state::stopped) {
            fail(std::move(c), error_code::unavailable, "control plane unreachable");
            return;
        }
        std::uint32_t id = next_msgid_;
        while (id == 0 || calls_.count(id) != 0)
            ++id;
        next_msgid_ = id + 1;
        c->msgid = id;
        std::weak_ptr<remote_client> w = weak_from_this();
        c->timer =
            loop_.start_timer(static_cast<std::uint64_t>(opts_.call_timeout.count()), [w, id] {
                if (auto s = w.lock()) s->on_call_timeout(id);
            });
        call* raw = c.get();
        calls_.emplace(id, std::move(c));
        // While connecting, the call waits in calls_ and is written once connected.
        if (st == link_state::connected) send_call(*raw);
    }

    void on_call_timeout(std::uint32_t id) {
        const auto it = calls_.find(id);
        if (it == calls_.end()) return;
        auto c = std::move(it->second);
        calls_.erase(it);
        c->timer = 0;  // it has fired
        counters(c->method).timeouts.fetch_add(1, std::memory_order_relaxed);
        const resolve_error e{error_code::timeout,
                              "control plane did not answer " +
                                  std::string(method_name(c->method)) + " within " +
                                  std::to_string(opts_.call_timeout.count()) + " ms",
                              {}};
        complete(std::move(c), call_outcome{&e, nullptr, nullptr}, true);
    }

    void send_call(call& c) {
        // One message, one contiguous write: [0, msgid, method, params].
        std::string out;
        out.reserve(16 + c.params.size());
        string_sink sink{&out};
        packer pk(sink);
        pk.pack_array(4);
        pk.pack_uint8(static_cast<std::uint8_t>(kind_request));
        pk.pack_uint32(c.msgid);
        pack_str(pk, method_name(c.method));
        out += c.params;
        c.sent = true;
        write(std::move(out));
    }

    void send_notification(const std::string& method, const std::string& params) {
        if (state_.load(std::memory_order_relaxed) != link_state::connected || !conn_ ||
            uv_stream_get_write_queue_size(&conn_->h.stream) > max_queued_notification_bytes) {
            notifications_dropped_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        std::string out;
        string_sink sink{&out};
        packer pk(sink);
        pk.pack_array(3);
        pk.pack_uint8(static_cast<std::uint8_t>(kind_notification));
        pack_str(pk, method);
        out += params;
        notifications_sent_.fetch_add(1, std::memory_order_relaxed);
        write(std::move(out));
    }

    void write(std::string bytes) {
        if (!conn_ || conn_->closing) return;
        auto* w = new write_req;
        w->data = std::move(bytes);
        uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
        const int rc =
            uv_write(&w->req, &conn_->h.stream, &buf, 1, [](uv_write_t* req, int status) noexcept {
                auto* wr = reinterpret_cast<write_req*>(req);
                auto* c = static_cast<connection*>(req->handle->data);
                delete wr;
                if (status < 0 && !c->closing)
                    c->owner->drop(std::string("write failed: ") + uv_strerror(status));
            });
        if (rc != 0) {
            delete w;
            drop(std::string("write failed: ") + uv_strerror(rc));
        }
    }

    // ---- connection lifecycle ----

    /// Starts a round over the addresses (see "Addresses" in remote_resolver.hpp), from entry_.
    void connect() {
        if (state_.load(std::memory_order_relaxed) == link_state::stopped || conn_ ||
            waiting_lookup_)
            return;
        reconnect_timer_ = 0;
        state_.store(link_state::connecting, std::memory_order_release);
        round_tried_ = 0;
        round_errors_.clear();
        try_entry();
    }

    /// Tries opts_.addresses[entry_]: a name is looked up first (again at every attempt).
    void try_entry() {
        if (attempts_++ > 0) reconnects_.fetch_add(1, std::memory_order_relaxed);
        const connect_address& a = opts_.addresses[entry_];
        candidates_.clear();
        candidate_ = 0;
        if (a.type == connect_address::kind::unix_socket) {
            open_connection();
        } else if (const auto ip = a.numeric_host()) {
            candidates_.push_back(*ip);
            open_connection();
        } else {
            start_lookup();
        }
    }

    void start_lookup() {
        const std::size_t entry = entry_;
        waiting_lookup_ = true;
        std::weak_ptr<remote_client> w = weak_from_this();
        lookup_timer_ =
            loop_.start_timer(static_cast<std::uint64_t>(connect_timeout_.count()), [w, entry] {
                auto s = w.lock();
                if (!s || !s->waiting_lookup_ || s->entry_ != entry) return;
                s->lookup_timer_ = 0;
                s->waiting_lookup_ = false;
                s->entry_failed(s->opts_.addresses[entry].to_string() + ": name lookup timed out");
            });
        // A lookup that timed out before may still run (a stuck DNS server): wait for that one
        // rather than start another, so stuck lookups cannot pile up in libuv's thread pool.
        if (lookup_in_flight_[entry]) return;
        lookup_in_flight_[entry] = true;
        // Last statement: `done` may run before lookup() returns.
        opts_.lookup->lookup(loop_.loop(), opts_.addresses[entry].host,
                             [w, entry, keep = opts_.lookup](host_lookup_result r) {
                                 if (auto s = w.lock()) s->on_lookup(entry, std::move(r));
                             });
    }

    void on_lookup(std::size_t entry, host_lookup_result r) {
        lookup_in_flight_[entry] = false;
        // An attempt that gave up on this lookup (timed out, stopped) has moved on.
        if (state_.load(std::memory_order_relaxed) == link_state::stopped || !waiting_lookup_ ||
            entry_ != entry)
            return;
        waiting_lookup_ = false;
        if (lookup_timer_ != 0) {
            loop_.cancel_timer(lookup_timer_);
            lookup_timer_ = 0;
        }
        const connect_address& a = opts_.addresses[entry];
        if (r.addresses.empty()) {
            entry_failed(a.to_string() + ": cannot resolve " + a.host + ": " +
                         (r.error.empty() ? std::string("no address") : r.error));
            return;
        }
        candidates_ = std::move(r.addresses);
        candidate_ = 0;
        log_->debug("control plane name {} resolved to {} address(es)", a.host, candidates_.size());
        open_connection();
    }

    /// Text of what an attempt connects to: the configured address, and the resolved one for a
    /// name ("cp.internal:7001 (10.0.0.5:7001)").
    [[nodiscard]] std::string target_text() const {
        const connect_address& a = opts_.addresses[entry_];
        if (a.type == connect_address::kind::unix_socket || a.numeric_host()) return a.to_string();
        return a.to_string() + " (" + to_string(candidates_[candidate_], a.port) + ")";
    }

    /// Connects to the current candidate (or socket path) of entry_.
    void open_connection() {
        const connect_address& a = opts_.addresses[entry_];
        auto* c = new connection(shared_from_this());
        c->generation = ++generation_;
        c->target = target_text();
        conn_ = c;
        int rc = 0;
        if (a.type == connect_address::kind::unix_socket) {
            rc = uv_pipe_init(loop_.loop(), &c->h.pipe, 0);
            c->h.handle.data = c;
            if (rc == 0)
                uv_pipe_connect(&c->connect_req, &c->h.pipe, a.path.c_str(), on_connect_cb);
        } else {
            rc = uv_tcp_init(loop_.loop(), &c->h.tcp);
            c->h.handle.data = c;
            sockaddr_storage addr{};
            to_sockaddr(candidates_[candidate_], a.port, addr);
            if (rc == 0) uv_tcp_nodelay(&c->h.tcp, 1);
            if (rc == 0)
                rc = uv_tcp_connect(&c->connect_req, &c->h.tcp, reinterpret_cast<sockaddr*>(&addr),
                                    on_connect_cb);
        }
        if (rc != 0) {
            if (c->h.handle.type == UV_UNKNOWN_HANDLE) {
                // init failed: there is no handle to close.
                conn_ = nullptr;
                const std::string target = c->target;
                delete c;
                next_candidate(target + ": cannot connect: " + uv_strerror(rc));
                return;
            }
            drop(std::string("cannot connect: ") + uv_strerror(rc));
            return;
        }
        std::weak_ptr<remote_client> w = weak_from_this();
        const std::uint64_t gen = c->generation;
        c->connect_timer =
            loop_.start_timer(static_cast<std::uint64_t>(connect_timeout_.count()), [w, gen] {
                auto s = w.lock();
                if (!s || !s->conn_ || s->conn_->generation != gen) return;
                s->conn_->connect_timer = 0;
                if (s->state_.load(std::memory_order_relaxed) == link_state::connecting)
                    s->drop("connect timed out");
            });
    }

    static void to_sockaddr(const ip_address& ip, std::uint16_t port, sockaddr_storage& out) {
        if (ip.is_v4()) {
            auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
            v4->sin_family = AF_INET;
            v4->sin_port = htons(port);
            std::memcpy(&v4->sin_addr, ip.data(), 4);
        } else {
            auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons(port);
            std::memcpy(&v6->sin6_addr, ip.data(), 16);
        }
    }

    /// The attempt on one resolved address failed: the next one the name gave, else the next
    /// entry of the list.
    void next_candidate(const std::string& failure) {
        log_->debug("control plane attempt failed: {}", failure);
        note_round_error(failure);
        ++candidate_;
        if (candidate_ < candidates_.size()) {
            open_connection();
            return;
        }
        entry_failed({});
    }

    /// opts_.addresses[entry_] failed (`failure` not yet noted when not empty): the next entry,
    /// or the back-off once every entry of this round failed.
    void entry_failed(const std::string& failure) {
        if (!failure.empty()) {
            log_->debug("control plane attempt failed: {}", failure);
            note_round_error(failure);
        }
        ++round_tried_;
        entry_ = (entry_ + 1) % opts_.addresses.size();
        if (round_tried_ < opts_.addresses.size()) {
            try_entry();
            return;
        }
        round_failed();
    }

    /// Every address failed: calls fail fast until the back-off timer starts the next round,
    /// from the first address of the list.
    void round_failed() {
        state_.store(link_state::backoff, std::memory_order_release);
        log_attempt_failure(round_errors_);
        // The reason reaches HAProxy (txn.route.reason) and maybe clients: no internal
        // addresses in it, those are in the log line.
        fail_all("control plane unreachable");
        entry_ = 0;
        schedule_reconnect();
    }

    /// Keeps the round's reasons for the log line and the calls' error, bounded in size.
    void note_round_error(const std::string& failure) {
        constexpr std::size_t max_round_errors = 1024;
        if (round_errors_.size() >= max_round_errors) return;
        if (!round_errors_.empty()) round_errors_ += "; ";
        round_errors_ += failure;
        if (round_errors_.size() > max_round_errors) {
            round_errors_.resize(max_round_errors);
            round_errors_ += "...";
        }
    }

    static void on_connect_cb(uv_connect_t* req, int status) noexcept {
        auto* c = static_cast<connection*>(req->handle->data);
        if (c->closing) return;  // closed meanwhile (UV_ECANCELED)
        try {
            c->owner->on_connected(*c, status);
        } catch (const std::exception& e) {
            c->owner->log_->error("control plane connect handling failed: {}", e.what());
        }
    }

    void on_connected(connection& c, int status) {
        if (c.connect_timer != 0) {
            loop_.cancel_timer(c.connect_timer);
            c.connect_timer = 0;
        }
        if (status < 0) {
            drop(std::string("cannot connect: ") + uv_strerror(status));
            return;
        }
        const int rc = uv_read_start(&c.h.stream, on_alloc_cb, on_read_cb);
        if (rc != 0) {
            drop(std::string("cannot read: ") + uv_strerror(rc));
            return;
        }
        c.connected_ns = now_ns();
        connections_.fetch_add(1, std::memory_order_relaxed);
        set_peer(opts_.addresses[entry_].to_string(), c.target);
        state_.store(link_state::connected, std::memory_order_release);
        log_->info("connected to the control plane at {}", c.target);
        failure_logged_ = false;
        // Calls made while connecting: send them now, oldest first.
        std::vector<call*> waiting;
        for (auto& [id, cl] : calls_)
            if (!cl->sent) waiting.push_back(cl.get());
        std::sort(waiting.begin(), waiting.end(),
                  [](const call* a, const call* b) { return a->started_ns < b->started_ns; });
        for (call* cl : waiting) {
            if (!conn_ || conn_->closing) break;
            send_call(*cl);
        }
    }

    static void on_alloc_cb(uv_handle_t* h, std::size_t /*suggested*/, uv_buf_t* buf) noexcept {
        auto* c = static_cast<connection*>(h->data);
        try {
            c->unpacker.reserve_buffer(read_chunk);
            *buf = uv_buf_init(c->unpacker.buffer(),
                               static_cast<unsigned>(c->unpacker.buffer_capacity()));
        } catch (...) {
            *buf = uv_buf_init(nullptr, 0);  // read_cb gets UV_ENOBUFS
        }
    }

    static void on_read_cb(uv_stream_t* s, ssize_t nread, const uv_buf_t* /*buf*/) noexcept {
        auto* c = static_cast<connection*>(s->data);
        if (c->closing) return;
        auto owner = c->owner;  // the client must outlive this callback
        try {
            owner->on_read(*c, nread);
        } catch (const std::exception& e) {
            owner->log_->error("control plane read handling failed: {}", e.what());
            if (!c->closing) owner->drop("internal error while reading");
        }
    }

    void on_read(connection& c, ssize_t nread) {
        if (nread == 0) return;
        if (nread < 0) {
            drop(nread == UV_EOF
                     ? std::string("closed by the control plane")
                     : std::string("read failed: ") + uv_strerror(static_cast<int>(nread)));
            return;
        }
        c.unpacker.buffer_consumed(static_cast<std::size_t>(nread));
        c.partial_bytes += static_cast<std::size_t>(nread);
        msgpack::object_handle oh;
        for (;;) {
            bool got = false;
            try {
                got = c.unpacker.next(oh);
            } catch (const std::exception& e) {
                protocol_error(std::string("undecodable msgpack: ") + e.what());
                return;
            }
            if (!got) break;
            c.partial_bytes = c.unpacker.nonparsed_size();
            c.got_message = true;
            if (auto problem = handle_message(oh.get()); !problem.empty()) {
                protocol_error(problem);
                return;
            }
            // A completion may have dropped the connection (it is closing, not freed yet).
            if (c.closing) return;
        }
        if (c.partial_bytes > max_message_bytes) protocol_error("message larger than 4 MiB");
    }

    void protocol_error(const std::string& problem) {
        protocol_errors_.fetch_add(1, std::memory_order_relaxed);
        log_->warn("malformed message from the control plane at {} ({}): resetting the connection",
                   peer_text(), problem);
        drop("malformed message: " + problem);
    }

    /// One decoded message; returns the problem, empty when fine.
    std::string handle_message(const msgpack::object& o) {
        if (o.type != msgpack::type::ARRAY || o.via.array.size == 0)
            return "not a msgpack-RPC array";
        const auto& a = o.via.array;
        const auto kind = as_uint(a.ptr[0]);
        if (!kind) return "message type is not an integer";
        if (*kind == kind_response) {
            if (a.size != 4) return "response is not [1, msgid, error, result]";
            const auto msgid = as_uint(a.ptr[1]);
            if (!msgid || *msgid > UINT32_MAX) return "response msgid is not a 32-bit integer";
            const auto it = calls_.find(static_cast<std::uint32_t>(*msgid));
            if (it == calls_.end() || !it->second->sent) {
                // Most likely the answer to a call that timed out.
                log_->debug("control plane answered unknown msgid {}", *msgid);
                return {};
            }
            auto c = std::move(it->second);
            calls_.erase(it);
            complete(std::move(c), call_outcome{nullptr, &a.ptr[2], &a.ptr[3]}, true);
            return {};
        }
        if (*kind == kind_notification) {
            if (a.size != 3) return "notification is not [2, method, params]";
            if (!is_str(a.ptr[1])) return "notification method is not a string";
            if (a.ptr[2].type != msgpack::type::ARRAY)
                return "notification params are not an array";
            return handle_notification(str(a.ptr[1]), a.ptr[2].via.array);
        }
        if (*kind == kind_request) {
            // The agent serves no methods; answer so a server waiting for a reply is not stuck.
            if (a.size != 4) return "request is not [0, msgid, method, params]";
            const auto msgid = as_uint(a.ptr[1]);
            if (!msgid || *msgid > UINT32_MAX) return "request msgid is not a 32-bit integer";
            if (!is_str(a.ptr[2])) return "request method is not a string";
            std::string out;
            string_sink sink{&out};
            packer pk(sink);
            pk.pack_array(4);
            pk.pack_uint8(static_cast<std::uint8_t>(kind_response));
            pk.pack_uint32(static_cast<std::uint32_t>(*msgid));
            pack_str(pk, "the agent serves no method '" + std::string(str(a.ptr[2])) + "'");
            pk.pack_nil();
            write(std::move(out));
            return {};
        }
        return "unknown message type " + std::to_string(*kind);
    }

    std::string handle_notification(std::string_view method, const msgpack::object_array& params) {
        if (method != "invalidate") {
            log_->debug("ignoring control plane notification '{}'", method);
            return {};
        }
        if (params.size < 1 || params.size > 2)
            return "invalidate params are not [id] or [id, protocol]";
        if (!is_str(params.ptr[0]) || params.ptr[0].via.str.size == 0)
            return "invalidate id is not a non-empty string";
        std::optional<app_protocol> p;
        if (params.size == 2 && params.ptr[1].type != msgpack::type::NIL) {
            if (!is_str(params.ptr[1])) return "invalidate protocol is not a string";
            p = parse_app_protocol(str(params.ptr[1]));
            if (!p)
                return "invalidate protocol '" + std::string(str(params.ptr[1])) + "' is unknown";
        }
        invalidations_.fetch_add(1, std::memory_order_relaxed);
        // Held during the call: set_invalidation_handler() and the destructor must not return
        // while the old handler still runs (its captures may be freed right after). Recursive,
        // so the handler itself may replace the handler or drop the resolver. The call uses a
        // copy because replacing on_invalidate_ would destroy the closure that is running.
        std::lock_guard lock(handler_mutex_);
        const remote_resolver::invalidation_handler handler = on_invalidate_;
        if (!handler) return {};
        try {
            handler(std::string(str(params.ptr[0])), p);
        } catch (const std::exception& e) {
            log_->error("invalidation handler threw: {}", e.what());
        } catch (...) {
            log_->error("invalidation handler threw");
        }
        return {};
    }

    /// The connection, or the attempt in progress, failed: see "Addresses" in the header for
    /// what is tried next.
    void drop(const std::string& reason) {
        const auto st = state_.load(std::memory_order_relaxed);
        if (st == link_state::stopped || !conn_) return;
        if (st != link_state::connected) {
            const std::string target = conn_->target;
            close_connection();
            next_candidate(target + ": " + reason);
            return;
        }
        // A connection that worked for a while starts over: back-off reset, and a whole new
        // round from the next address (the one lost is tried last). One that failed at once
        // counts as a failed attempt of the current round, so a control plane that accepts and
        // closes at once is retried with the back-off, not in a busy loop.
        const bool healthy =
            conn_->got_message ||
            (conn_->connected_ns != 0 && now_ns() - conn_->connected_ns >= 1'000'000'000);
        const std::string target = conn_->target;
        close_connection();
        set_peer({}, {});
        state_.store(link_state::connecting, std::memory_order_release);
        log_->warn("lost the control plane at {}: {}", target, reason);
        fail_all("control plane connection lost: " + reason);
        if (state_.load(std::memory_order_relaxed) == link_state::stopped) return;
        if (healthy) {
            backoff_ = opts_.reconnect_min;
            round_tried_ = 0;
            round_errors_.clear();
            entry_ = (entry_ + 1) % opts_.addresses.size();
            try_entry();
            return;
        }
        entry_failed(target + ": connection lost: " + reason);
    }

    void log_attempt_failure(const std::string& reason) {
        // One warning per outage, then debug: a down control plane must not flood the log.
        if (!failure_logged_) {
            failure_logged_ = true;
            log_->warn("control plane at {} unreachable ({}); retrying with backoff up to {} ms",
                       addresses_text(), reason, opts_.reconnect_max.count());
        } else {
            log_->debug("control plane at {} still unreachable: {}", addresses_text(), reason);
        }
    }

    void set_peer(std::string address, std::string peer) {
        std::lock_guard lock(status_mutex_);
        peer_address_ = std::move(address);
        peer_ = std::move(peer);
    }

    /// What is connected (loop thread), for log lines.
    [[nodiscard]] std::string peer_text() const { return conn_ ? conn_->target : std::string(); }

    void close_connection() {
        connection* c = conn_;
        conn_ = nullptr;
        if (!c) return;
        if (c->connect_timer != 0) {
            loop_.cancel_timer(c->connect_timer);
            c->connect_timer = 0;
        }
        c->closing = true;
        uv_close(&c->h.handle,
                 [](uv_handle_t* h) noexcept { delete static_cast<connection*>(h->data); });
    }

    void fail_all(const std::string& reason) {
        auto calls = std::move(calls_);
        calls_.clear();
        for (auto& [id, c] : calls)
            fail(std::move(c), error_code::unavailable, reason);
    }

    void schedule_reconnect() {
        if (state_.load(std::memory_order_relaxed) == link_state::stopped || reconnect_timer_ != 0)
            return;
        // Equal jitter: a random delay in [backoff/2, backoff], then the backoff doubles.
        const auto base = backoff_.count();
        std::uniform_int_distribution<long long> dist(base / 2, base);
        const auto delay = std::max<long long>(1, dist(rng_));
        backoff_ = std::min(backoff_ * 2, opts_.reconnect_max);
        std::weak_ptr<remote_client> w = weak_from_this();
        reconnect_timer_ = loop_.start_timer(static_cast<std::uint64_t>(delay), [w] {
            if (auto s = w.lock()) {
                s->reconnect_timer_ = 0;
                s->connect();
            }
        });
    }

    void shutdown(const char* why) {
        if (state_.load(std::memory_order_relaxed) == link_state::stopped) return;
        state_.store(link_state::stopped, std::memory_order_release);
        if (reconnect_timer_ != 0) {
            loop_.cancel_timer(reconnect_timer_);
            reconnect_timer_ = 0;
        }
        if (lookup_timer_ != 0) {
            loop_.cancel_timer(lookup_timer_);
            lookup_timer_ = 0;
        }
        waiting_lookup_ = false;
        set_peer({}, {});
        close_connection();
        fail_all(std::string("control plane unreachable: ") + why);
    }

    remote_resolver_options opts_;
    handlers::service_loop& loop_;
    std::shared_ptr<spdlog::logger> log_;
    std::chrono::milliseconds connect_timeout_{1000};

    // Shared with other threads.
    std::atomic<link_state> state_{link_state::connecting};
    std::atomic<std::uint64_t> pending_{0};
    std::atomic<std::uint64_t> connections_{0};
    std::atomic<std::uint64_t> reconnects_{0};
    std::atomic<std::uint64_t> invalidations_{0};
    std::atomic<std::uint64_t> protocol_errors_{0};
    std::atomic<std::uint64_t> notifications_sent_{0};
    std::atomic<std::uint64_t> notifications_dropped_{0};
    method_counters methods_[2];
    /// Guards the two strings below (written on the loop, read by stats and metrics).
    mutable std::mutex status_mutex_;
    std::string peer_address_;  ///< the configured address connected to; empty when not
    std::string peer_;          ///< target_text() of the connection
    /// Guards on_invalidate_ and is held while it runs (see handle_notification).
    std::recursive_mutex handler_mutex_;
    remote_resolver::invalidation_handler on_invalidate_;

    // Loop thread only.
    std::mt19937_64 rng_;
    std::chrono::milliseconds backoff_;
    connection* conn_ = nullptr;
    std::uint64_t generation_ = 0;
    std::uint64_t attempts_ = 0;
    std::uint64_t reconnect_timer_ = 0;
    bool failure_logged_ = false;
    // The round over opts_.addresses (see "Addresses" in remote_resolver.hpp).
    std::size_t entry_ = 0;               ///< the address tried or connected
    std::size_t round_tried_ = 0;         ///< addresses of this round that failed
    std::string round_errors_;            ///< their reasons, bounded (note_round_error)
    std::vector<ip_address> candidates_;  ///< what entry_'s host stands for
    std::size_t candidate_ = 0;           ///< the one tried or connected
    bool waiting_lookup_ = false;         ///< the attempt waits for entry_'s lookup
    std::uint64_t lookup_timer_ = 0;      ///< bounds that wait
    std::vector<char> lookup_in_flight_;  ///< per address: a lookup has not returned yet
    std::uint32_t next_msgid_ = 1;
    std::unordered_map<std::uint32_t, std::unique_ptr<call>> calls_;
};

}  // namespace detail

// ---- remote_resolver
// -----------------------------------------------------------------------------

using detail::method_index;

remote_resolver::remote_resolver(remote_resolver_options opts,
                                 std::shared_ptr<handlers::service_loop> service,
                                 std::shared_ptr<spdlog::logger> log)
    : service_(std::move(service)) {
    if (!service_) throw std::invalid_argument("remote_resolver needs a service loop");
    if (opts.addresses.empty())
        throw std::invalid_argument("remote_resolver needs at least one control plane address");
    if (!log)
        log = std::make_shared<spdlog::logger>("remote_resolver",
                                               std::make_shared<spdlog::sinks::null_sink_mt>());
    client_ = std::make_shared<detail::remote_client>(std::move(opts), *service_, std::move(log));
    client_->start();
}

remote_resolver::~remote_resolver() {
    client_->stop();
}

void remote_resolver::resolve(const std::string& id, const resolve_context& ctx,
                              resolve_callback done) {
    client_->call_method(method_index::resolve, detail::encode_context_params(id, ctx),
                         std::move(done), nullptr);
}

void remote_resolver::wake(const std::string& id, const resolve_context& ctx,
                           std::function<void(std::optional<resolve_error>)> done) {
    client_->call_method(method_index::wake, detail::encode_id_params(id, ctx.proto), nullptr,
                         std::move(done));
}

void remote_resolver::on_connect(const std::string& id, const resolve_context& ctx) {
    client_->notify("connect", detail::encode_context_params(id, ctx));
}

void remote_resolver::on_disconnect(const std::string& id, const disconnect_report& r) {
    std::string out;
    detail::string_sink sink{&out};
    detail::packer pk(sink);
    pk.pack_array(1);
    pk.pack_map(4);
    detail::pack_str(pk, "id");
    detail::pack_str(pk, id);
    detail::pack_str(pk, "bytes_in");
    pk.pack_uint64(r.bytes_in);
    detail::pack_str(pk, "bytes_out");
    pk.pack_uint64(r.bytes_out);
    detail::pack_str(pk, "duration_ms");
    pk.pack_int64(r.duration.count());
    client_->notify("disconnect", std::move(out));
}

void remote_resolver::track_activity(const std::string& id, app_protocol p) {
    client_->notify("activity", detail::encode_id_params(id, p));
}

resolver_stats remote_resolver::stats() const {
    const auto s = client_->snapshot();
    return {s.resolve.calls, s.resolve.errors, s.invalidations};
}

void remote_resolver::set_invalidation_handler(invalidation_handler fn) {
    client_->set_invalidation_handler(std::move(fn));
}

bool remote_resolver::connected() const noexcept {
    return client_->connected();
}

std::uint64_t remote_resolver::reconnects() const noexcept {
    return client_->snapshot().reconnects;
}

remote_resolver_stats remote_resolver::remote_stats() const {
    return client_->snapshot();
}

const histogram& remote_resolver::call_latency(std::string_view method) const {
    return client_->counters(method == "wake" ? method_index::wake : method_index::resolve).latency;
}

void remote_resolver::render_metrics(std::string& out) const {
    namespace prom = spoa::prometheus;
    const auto s = client_->snapshot();
    const std::string addr = "address=\"" + prom::escape(client_->addresses_text()) + "\"";
    prom::header(out, "spoa_control_plane_connected",
                 "1 when the connection to the control plane is up.", "gauge");
    prom::sample(out, "spoa_control_plane_connected", addr,
                 static_cast<std::int64_t>(s.connected ? 1 : 0));
    prom::header(out, "spoa_control_plane_peer",
                 "1 for the address connected to (connected_to: the configured entry, peer: what "
                 "it resolved to); no sample while disconnected.",
                 "gauge");
    if (s.connected && !s.address.empty()) {
        prom::sample(out, "spoa_control_plane_peer",
                     addr + ",connected_to=\"" + prom::escape(s.address) + "\",peer=\"" +
                         prom::escape(s.peer) + "\"",
                     static_cast<std::int64_t>(1));
    }
    prom::header(out, "spoa_control_plane_connections_total",
                 "Connections established to the control plane.", "counter");
    prom::sample(out, "spoa_control_plane_connections_total", addr, s.connections);
    prom::header(out, "spoa_control_plane_reconnects_total",
                 "Connection attempts after the first one.", "counter");
    prom::sample(out, "spoa_control_plane_reconnects_total", addr, s.reconnects);
    prom::header(out, "spoa_control_plane_pending_calls", "Calls waiting for an answer.", "gauge");
    prom::sample(out, "spoa_control_plane_pending_calls", addr,
                 static_cast<std::int64_t>(s.pending));
    prom::header(out, "spoa_control_plane_invalidations_total",
                 "invalidate notifications pushed by the control plane.", "counter");
    prom::sample(out, "spoa_control_plane_invalidations_total", addr, s.invalidations);
    prom::header(out, "spoa_control_plane_protocol_errors_total",
                 "Malformed messages from the control plane (each resets the connection).",
                 "counter");
    prom::sample(out, "spoa_control_plane_protocol_errors_total", addr, s.protocol_errors);
    prom::header(out, "spoa_control_plane_notifications_total",
                 "Notifications sent (activity, connect, disconnect).", "counter");
    prom::sample(out, "spoa_control_plane_notifications_total", addr, s.notifications_sent);
    prom::header(out, "spoa_control_plane_notifications_dropped_total",
                 "Notifications dropped: not connected or the write queue was full.", "counter");
    prom::sample(out, "spoa_control_plane_notifications_dropped_total", addr,
                 s.notifications_dropped);

    const std::pair<const char*, const remote_call_stats*> methods[] = {{"resolve", &s.resolve},
                                                                        {"wake", &s.wake}};
    prom::header(out, "spoa_control_plane_calls_total", "Calls made, by method.", "counter");
    for (const auto& [m, st] : methods)
        prom::sample(out, "spoa_control_plane_calls_total",
                     addr + ",method=\"" + std::string(m) + "\"", st->calls);
    prom::header(out, "spoa_control_plane_call_errors_total",
                 "Calls that completed with an error, by method.", "counter");
    for (const auto& [m, st] : methods)
        prom::sample(out, "spoa_control_plane_call_errors_total",
                     addr + ",method=\"" + std::string(m) + "\"", st->errors);
    prom::header(out, "spoa_control_plane_call_timeouts_total",
                 "Calls not answered within the call timeout, by method.", "counter");
    for (const auto& [m, st] : methods)
        prom::sample(out, "spoa_control_plane_call_timeouts_total",
                     addr + ",method=\"" + std::string(m) + "\"", st->timeouts);
    prom::header(out, "spoa_control_plane_call_seconds",
                 "Round trip of answered or timed-out calls, by method.", "histogram");
    for (const auto& [m, st] : methods)
        prom::write_histogram(out, "spoa_control_plane_call_seconds",
                              addr + ",method=\"" + std::string(m) + "\"", call_latency(m));
}

}  // namespace spoa::handlers::routing
