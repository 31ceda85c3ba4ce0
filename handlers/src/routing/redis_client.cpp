#include "spoa/handlers/routing/redis_client.hpp"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <unordered_map>

#include "redis_loop_watch.hpp"
#include "spoa/handlers/routing/invalidation_message.hpp"

namespace spoa::handlers::routing {

std::string_view to_string(redis_error e) noexcept {
    switch (e) {
        case redis_error::unavailable:
            return "unavailable";
        case redis_error::timeout:
            return "timeout";
        case redis_error::overloaded:
            return "overloaded";
        case redis_error::server:
            return "server";
    }
    return "unknown";
}

std::string_view describe(const redis_result& r) noexcept {
    if (!r.error) return "ok";
    return *r.error == redis_error::server ? std::string_view(r.text) : to_string(*r.error);
}

namespace detail {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

/// A connection still failing logs again at most this often (the first failure of a connection
/// that never came up logs at once; after "lost", the next line comes after this period).
constexpr auto log_quiet_period = 30s;

std::uint64_t now_ns() noexcept {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch())
            .count());
}

std::string_view link_name(redis_link l) noexcept {
    return l == redis_link::command ? "command" : "subscriber";
}

redis_result result_of(const redisReply* r) {
    redis_result out;
    switch (r->type) {
        case REDIS_REPLY_ERROR:
            out.error = redis_error::server;
            out.text.assign(r->str, r->len);
            break;
        case REDIS_REPLY_STRING:
        case REDIS_REPLY_STATUS:
            out.text.assign(r->str, r->len);
            break;
        case REDIS_REPLY_INTEGER:
            out.integer = r->integer;
            break;
        case REDIS_REPLY_NIL:
            out.nil = true;
            break;
        default:
            break;  // arrays: no command of ours needs one yet
    }
    return out;
}

std::string_view element_text(const redisReply* r) noexcept {
    if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS) return {};
    return {r->str, r->len};
}

}  // namespace

/// The state of a redis_client: loop thread only, except `counters` (atomics, any thread).
/// Shared: a host name lookup in flight holds it (the lookup may end after the client).
class redis_state : public std::enable_shared_from_this<redis_state> {
  public:
    struct shared_counters {
        std::array<std::atomic<bool>, 2> up{};
        std::atomic<std::uint64_t> connections{0};
        std::atomic<std::uint64_t> reconnects{0};
        std::atomic<std::uint64_t> pending{0};
        std::array<std::atomic<std::uint64_t>, redis_error_count> errors{};
        std::atomic<std::uint64_t> messages{0};
        std::array<std::atomic<std::uint64_t>, 2> health_failures{};
        histogram latency{latency_buckets_seconds()};
    };

    redis_state(const redis_options& opts, handlers::service_loop& loop,
                std::shared_ptr<spdlog::logger> log)
        : opts_(opts),
          loop_(loop),
          log_(std::move(log)),
          lookup_(opts_.lookup ? opts_.lookup : system_host_lookup()),
          rng_(std::random_device{}()) {
        for (auto which : {redis_link::command, redis_link::subscriber}) {
            auto& c = conn(which);
            c.which = which;
            c.owner = this;
            c.backoff = opts_.reconnect_min;
        }
    }
    redis_state(const redis_state&) = delete;
    redis_state& operator=(const redis_state&) = delete;

    void start() {
        // Delivery on the subscription is checked with messages this client publishes to itself
        // (health_check()); the handler is the state's own, which outlives the subscription.
        subscriptions_[heartbeat_channel_] = [this](std::string_view payload) {
            heard_heartbeat_ = std::max(heard_heartbeat_, parse_sequence(payload));
        };
        for (auto& c : conns_)
            connect(c);
        schedule_health_check();
    }

    /// Idempotent: closes both connections (their pending commands complete `unavailable`).
    void stop() {
        if (stopped_) return;
        stopped_ = true;
        cancel(health_timer_);
        for (auto& c : conns_) {
            cancel(c.timer);
            if (auto* ac = std::exchange(c.ctx, nullptr)) redisAsyncFree(ac);
            counters.up[index(c.which)] = false;
        }
        // Every command was in a hiredis queue and has just been answered with NULL; this is a
        // guard for one that was not.
        auto left = std::move(pending_);
        for (auto& [id, p] : left) {
            cancel(p.timer);
            finish(p.done, failed(redis_error::unavailable));
        }
        // No message comes any more: the handlers (and whatever they hold, which may hold this
        // client) are released now rather than with the last reference to this state.
        subscriptions_.clear();
        on_resubscribed_ = nullptr;
    }

    void send(std::vector<std::string> args, redis_client::completion done) {
        auto& c = conn(redis_link::command);
        if (c.state != phase::up || c.ctx == nullptr)
            return finish(done, failed(redis_error::unavailable));
        if (in_flight_ >= opts_.max_pending) return finish(done, failed(redis_error::overloaded));
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (const auto& a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        const std::uint64_t id = next_id_++;
        if (redisAsyncCommandArgv(c.ctx, on_command_reply, to_priv(id),
                                  static_cast<int>(argv.size()), argv.data(),
                                  lens.data()) != REDIS_OK) {
            return finish(done, failed(redis_error::unavailable));
        }
        counters.pending = ++in_flight_;
        const auto timer = loop_.start_timer(
            static_cast<std::uint64_t>(opts_.command_timeout.count()), [this, id] { expire(id); });
        pending_.emplace(id, pending_command{std::move(done), timer, now_ns()});
    }

    void add_subscription(std::string channel, redis_client::message_handler fn) {
        if (stopped_) return;
        auto [it, fresh] = subscriptions_.insert_or_assign(std::move(channel), std::move(fn));
        auto& c = conn(redis_link::subscriber);
        if (fresh && c.state == phase::up) send_subscribe(c, it->first);
    }

    void set_resubscribed(std::function<void()> fn) {
        if (!stopped_) on_resubscribed_ = std::move(fn);
    }

    shared_counters counters;

  private:
    static std::uint64_t parse_sequence(std::string_view text) noexcept {
        std::uint64_t n = 0;
        for (const char ch : text) {
            if (ch < '0' || ch > '9') return 0;
            n = n * 10 + static_cast<std::uint64_t>(ch - '0');
        }
        return n;
    }

    void schedule_health_check() {
        health_timer_ =
            loop_.start_timer(static_cast<std::uint64_t>(opts_.ping_interval.count()), [this] {
                health_timer_ = 0;
                if (stopped_) return;
                health_check();
                schedule_health_check();
            });
    }

    /// Every ping_interval, while the command connection is up: a PING on it (no answer within
    /// command_timeout: the connection is dropped and made again), and a heartbeat PUBLISHed to
    /// this client's own channel, which the subscription must deliver: a subscription the server
    /// no longer has (no receiver) or that delivers nothing by the next check (a dead path with
    /// an open socket) is dropped and made again, and its owner resynchronises.
    void health_check() {
        auto& cmd = conn(redis_link::command);
        auto& sub = conn(redis_link::subscriber);
        if (cmd.state != phase::up) return;
        while (!owed_heartbeats_.empty() && owed_heartbeats_.front().first <= heard_heartbeat_)
            owed_heartbeats_.pop_front();
        if (sub.state == phase::up && !owed_heartbeats_.empty() &&
            steady::now() >= owed_heartbeats_.front().second) {
            owed_heartbeats_.clear();
            counters.health_failures[index(redis_link::subscriber)]++;
            drop(sub, "heartbeat not delivered on the subscription");
        }
        // Any answer proves the command connection alive, however slow: it is dropped only
        // when it owes answers and none came for a whole interval plus a command timeout, and
        // an idle one is asked a PING so that it owes one.
        const auto silence = steady::now() - last_answer_;
        if (in_flight_ > 0 && silence > opts_.ping_interval + opts_.command_timeout) {
            counters.health_failures[index(redis_link::command)]++;
            drop(cmd,
                 "no answer from the server for " +
                     std::to_string(
                         std::chrono::duration_cast<std::chrono::milliseconds>(silence).count()) +
                     " ms");
            return;
        }
        if (in_flight_ == 0 && silence >= opts_.ping_interval) send({"PING"}, nullptr);
        if (sub.state != phase::up || sub.unconfirmed != 0) return;
        const auto seq = ++sent_heartbeat_;
        send({"PUBLISH", heartbeat_channel_, std::to_string(seq)},
             [this, seq, attempt = sub.attempts](redis_result r) {
                 auto& c = conn(redis_link::subscriber);
                 if (r.error || c.attempts != attempt || c.state != phase::up) return;
                 if (r.integer == 0) {
                     counters.health_failures[index(redis_link::subscriber)]++;
                     drop(c, "the server has no subscription from this connection");
                     return;
                 }
                 // Owed by the subscription from now on (a few at most: a late one drops it).
                 if (seq > heard_heartbeat_)
                     owed_heartbeats_.emplace_back(
                         seq, steady::now() + opts_.ping_interval + opts_.command_timeout);
             });
    }

    enum class phase : std::uint8_t { waiting, connecting, up, stopped };

    /// One hiredis context and its reconnect state.
    struct connection {
        redis_link which = redis_link::command;
        redis_state* owner = nullptr;
        redisAsyncContext* ctx = nullptr;  ///< the live context; null between attempts
        phase state = phase::waiting;
        std::uint64_t timer = 0;  ///< connect timeout or reconnect delay
        unsigned handshake_left = 0;
        std::chrono::milliseconds backoff{};
        std::uint64_t attempts = 0;
        std::uint64_t failures = 0;  ///< failed attempts since it was last up
        steady::time_point last_log{};
        bool was_up = false;         ///< came up at least once (its next SUBSCRIBEs resubscribe)
        bool resubscribing = false;  ///< the SUBSCRIBEs in flight follow a lost connection
        unsigned unconfirmed = 0;    ///< SUBSCRIBEs not yet confirmed since it came up
    };
    struct pending_command {
        redis_client::completion done;
        std::uint64_t timer = 0;
        std::uint64_t started_ns = 0;
    };

    static std::size_t index(redis_link l) noexcept { return l == redis_link::command ? 0 : 1; }
    connection& conn(redis_link l) noexcept { return conns_[index(l)]; }
    static void* to_priv(std::uint64_t id) noexcept {
        return reinterpret_cast<void*>(static_cast<std::uintptr_t>(id));
    }
    static redis_result failed(redis_error e) {
        redis_result r;
        r.error = e;
        return r;
    }
    void cancel(std::uint64_t& timer) noexcept {
        if (timer != 0) loop_.cancel_timer(std::exchange(timer, 0));
    }

    void finish(redis_client::completion& done, redis_result r) noexcept {
        if (r.error) counters.errors[static_cast<std::size_t>(*r.error)]++;
        if (!done) return;
        try {
            done(std::move(r));
        } catch (...) {
            // A completion's failure is its own; the client goes on.
        }
    }

    void connect(connection& c) {
        if (stopped_) return;
        if (c.attempts++ > 0) counters.reconnects++;
        c.state = phase::connecting;
        // The whole attempt (name lookup, connect, AUTH/SELECT) has connect_timeout.
        c.timer = loop_.start_timer(static_cast<std::uint64_t>(opts_.connect_timeout.count()),
                                    [this, &c] {
                                        c.timer = 0;
                                        drop(c, "connect timeout");
                                    });
        const auto& a = opts_.address;
        if (a.type == connect_address::kind::unix_socket) {
            open(c, redisAsyncConnectUnix(a.path.c_str()));
        } else if (const auto ip = a.numeric_host()) {
            open(c, redisAsyncConnect(ip->to_string().c_str(), a.port));
        } else {
            look_up(c);
        }
    }

    /// hiredis would resolve a name with a blocking getaddrinfo on the service loop: the name
    /// is looked up on libuv's thread pool at every attempt (so a moved server is followed),
    /// and the first address is connected to.
    void look_up(connection& c) {
        const auto attempt = c.attempts;
        lookup_->lookup(loop_.loop(), opts_.address.host,
                        [self = shared_from_this(), &c, attempt](host_lookup_result r) {
                            // A timeout or stop() may have ended this attempt meanwhile.
                            if (self->stopped_ || c.attempts != attempt ||
                                c.state != phase::connecting || c.ctx != nullptr) {
                                return;
                            }
                            if (r.addresses.empty()) {
                                return self->retry(c, "cannot resolve " + self->opts_.address.host +
                                                          ": " + r.error);
                            }
                            self->open(c, redisAsyncConnect(r.addresses.front().to_string().c_str(),
                                                            self->opts_.address.port));
                        });
    }

    /// Watches a new hiredis context on the loop (or retries if it failed at once).
    void open(connection& c, redisAsyncContext* ac) {
        if (ac == nullptr) return retry(c, "out of memory");
        if (ac->err != 0) {
            std::string why = ac->errstr;
            redisAsyncFree(ac);
            return retry(c, why);
        }
        ac->data = &c;
        if (watch_on_loop(ac, loop_.loop()) != REDIS_OK) {
            redisAsyncFree(ac);
            return retry(c, "cannot watch the socket on the service loop");
        }
        redisAsyncSetConnectCallback(ac, on_connect);
        redisAsyncSetDisconnectCallback(ac, on_disconnect);
        c.ctx = ac;
    }

    /// Ends the live context from outside hiredis's callbacks (a timer) and retries.
    void drop(connection& c, const std::string& why) {
        if (auto* ac = std::exchange(c.ctx, nullptr)) redisAsyncFree(ac);
        retry(c, why);
    }

    /// After a failed attempt or a lost connection: logs (rate-limited) and waits the back-off.
    void retry(connection& c, const std::string& why) {
        cancel(c.timer);
        const bool was_up = c.state == phase::up;
        counters.up[index(c.which)] = false;
        if (stopped_) return;
        c.state = phase::waiting;
        const auto now = steady::now();
        if (was_up) {
            // A connection that worked: one line, and the back-off starts over.
            log(spdlog::level::warn, "redis {} connection to {} lost: {}", c, why);
            c.backoff = opts_.reconnect_min;
            c.failures = 0;
            c.last_log = now;
        } else if (++c.failures, now - c.last_log >= log_quiet_period) {
            log(spdlog::level::warn,
                "redis {} connection to {}: {} (" + std::to_string(c.failures) +
                    " failed attempts)",
                c, why);
            c.last_log = now;
        }
        c.timer = loop_.start_timer(static_cast<std::uint64_t>(next_delay(c).count()), [this, &c] {
            c.timer = 0;
            connect(c);
        });
    }

    template <typename... Args>
    void log(spdlog::level::level_enum level, const std::string& fmt, const connection& c,
             const Args&... args) const {
        if (!log_) return;
        log_->log(level, fmt::runtime(fmt), link_name(c.which), opts_.address.to_string(), args...);
    }

    /// Equal jitter: a random delay in [b/2, b], then the back-off doubles up to its maximum.
    std::chrono::milliseconds next_delay(connection& c) {
        const auto b = std::max<std::int64_t>(c.backoff.count(), 1);
        c.backoff = std::min(c.backoff * 2, opts_.reconnect_max);
        std::uniform_int_distribution<std::int64_t> pick(b / 2, b);
        return std::chrono::milliseconds(pick(rng_));
    }

    void connected(connection& c) {
        std::vector<std::vector<std::string>> steps;
        if (!opts_.password.empty()) {
            if (opts_.user.empty()) {
                steps.push_back({"AUTH", opts_.password});
            } else {
                steps.push_back({"AUTH", opts_.user, opts_.password});
            }
        }
        if (c.which == redis_link::command && opts_.database != 0)
            steps.push_back({"SELECT", std::to_string(opts_.database)});
        // Up only once the server answers: a stopped server's kernel still accepts connections.
        steps.push_back({"PING"});
        c.handshake_left = static_cast<unsigned>(steps.size());
        for (const auto& step : steps) {
            std::vector<const char*> argv;
            std::vector<std::size_t> lens;
            for (const auto& a : step) {
                argv.push_back(a.data());
                lens.push_back(a.size());
            }
            (void)redisAsyncCommandArgv(c.ctx, on_handshake_reply, nullptr,
                                        static_cast<int>(argv.size()), argv.data(), lens.data());
        }
    }

    void up(connection& c) {
        cancel(c.timer);
        if (c.which == redis_link::command) last_answer_ = steady::now();
        c.state = phase::up;
        c.backoff = opts_.reconnect_min;
        counters.connections++;
        counters.up[index(c.which)] = true;
        log(spdlog::level::info, "redis {} connection to {} up{}", c,
            c.failures > 0 ? " after " + std::to_string(c.failures) + " failed attempts" : "");
        c.failures = 0;
        if (c.which == redis_link::subscriber) {
            c.resubscribing = c.was_up;
            c.was_up = true;
            c.unconfirmed = 0;
            for (const auto& [channel, fn] : subscriptions_)
                send_subscribe(c, channel);
        }
    }

    void send_subscribe(connection& c, const std::string& channel) {
        const char* argv[] = {"SUBSCRIBE", channel.data()};
        const std::size_t lens[] = {9, channel.size()};
        if (redisAsyncCommandArgv(c.ctx, on_pubsub_reply, nullptr, 2, argv, lens) == REDIS_OK)
            ++c.unconfirmed;
    }

    void answered(std::uint64_t id, const redisReply* reply) {
        counters.pending = --in_flight_;
        if (reply != nullptr) last_answer_ = steady::now();
        auto it = pending_.find(id);
        if (it == pending_.end()) return;  // timed out already: the late answer is ignored
        auto p = std::move(it->second);
        pending_.erase(it);
        cancel(p.timer);
        counters.latency.observe(static_cast<double>(now_ns() - p.started_ns) / 1e9);
        finish(p.done, reply != nullptr ? result_of(reply) : failed(redis_error::unavailable));
    }

    void expire(std::uint64_t id) {
        auto it = pending_.find(id);
        if (it == pending_.end()) return;
        auto p = std::move(it->second);
        pending_.erase(it);
        counters.latency.observe(static_cast<double>(now_ns() - p.started_ns) / 1e9);
        finish(p.done, failed(redis_error::timeout));
    }

    void pubsub(connection& c, const redisReply* r) {
        if (r->type != REDIS_REPLY_ARRAY || r->elements < 3) return;
        const auto kind = element_text(r->element[0]);
        if (kind == "message") {
            counters.messages++;
            const auto it = subscriptions_.find(std::string(element_text(r->element[1])));
            if (it == subscriptions_.end() || !it->second) return;
            try {
                it->second(element_text(r->element[2]));
            } catch (...) {
                // A handler's failure is its own; the subscription goes on.
            }
        } else if (kind == "subscribe" && c.unconfirmed > 0 && --c.unconfirmed == 0) {
            // A channel added while up is no resubscription: only the set sent by up() after
            // a lost connection is.
            const bool again = std::exchange(c.resubscribing, false);
            if (again && on_resubscribed_) {
                try {
                    on_resubscribed_();
                } catch (...) {
                }
            }
        }
    }

    // hiredis callbacks: ac->data is the connection, which outlives its contexts (stop() frees
    // them before the state goes).
    static connection& of(const redisAsyncContext* ac) noexcept {
        return *static_cast<connection*>(ac->data);
    }
    static void on_connect(const redisAsyncContext* ac, int status) noexcept {
        auto& c = of(ac);
        if (c.ctx != ac) return;
        if (status != REDIS_OK) {
            c.ctx = nullptr;  // hiredis frees it after this callback
            c.owner->retry(c, ac->errstr);
            return;
        }
        c.owner->connected(c);
    }
    static void on_disconnect(const redisAsyncContext* ac, int status) noexcept {
        auto& c = of(ac);
        if (c.ctx != ac) return;  // one we dropped ourselves
        c.ctx = nullptr;
        c.owner->retry(c, status == REDIS_OK ? std::string("closed") : std::string(ac->errstr));
    }
    static void on_handshake_reply(redisAsyncContext* ac, void* reply, void*) noexcept {
        auto& c = of(ac);
        if (reply == nullptr || c.ctx != ac) return;  // lost: on_disconnect retries
        const auto* r = static_cast<const redisReply*>(reply);
        if (r->type == REDIS_REPLY_ERROR) {
            c.ctx = nullptr;
            redisAsyncFree(ac);  // deferred by hiredis until this callback returns
            c.owner->retry(c, "handshake refused: " + std::string(r->str, r->len));
            return;
        }
        if (--c.handshake_left == 0) c.owner->up(c);
    }
    static void on_command_reply(redisAsyncContext* ac, void* reply, void* priv) noexcept {
        of(ac).owner->answered(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(priv)),
                               static_cast<const redisReply*>(reply));
    }
    static void on_pubsub_reply(redisAsyncContext* ac, void* reply, void*) noexcept {
        auto& c = of(ac);
        if (reply == nullptr || c.ctx != ac) return;
        c.owner->pubsub(c, static_cast<const redisReply*>(reply));
    }

    redis_options opts_;
    handlers::service_loop& loop_;
    std::shared_ptr<spdlog::logger> log_;
    std::shared_ptr<host_lookup> lookup_;
    std::minstd_rand rng_;
    std::array<connection, 2> conns_{};
    std::unordered_map<std::uint64_t, pending_command> pending_;
    std::uint64_t next_id_ = 1;
    std::uint64_t in_flight_ = 0;  ///< commands Redis owes an answer (timed-out ones included)
    std::map<std::string, redis_client::message_handler> subscriptions_;
    std::function<void()> on_resubscribed_;
    bool stopped_ = false;
    // Health checks (health_check()):
    std::string heartbeat_channel_ = opts_.key_prefix + "heartbeat:" + random_agent_id();
    std::uint64_t health_timer_ = 0;
    std::uint64_t sent_heartbeat_ = 0;
    std::uint64_t heard_heartbeat_ = 0;
    steady::time_point last_answer_{};  ///< the command connection's latest answer
    /// Heartbeats Redis accepted and the subscription has not delivered: (sequence, deadline).
    std::deque<std::pair<std::uint64_t, steady::time_point>> owed_heartbeats_;
};

}  // namespace detail

namespace {

/// A command on its way to the loop: if the loop has stopped, post() destroys the task on the
/// caller's thread, and the completion still runs once (`unavailable`).
struct posted_command {
    std::vector<std::string> args;
    redis_client::completion done;
    posted_command(std::vector<std::string> a, redis_client::completion d)
        : args(std::move(a)), done(std::move(d)) {}
    posted_command(const posted_command&) = delete;
    posted_command& operator=(const posted_command&) = delete;
    ~posted_command() {
        if (!done) return;
        redis_result r;
        r.error = redis_error::unavailable;
        try {
            done(std::move(r));
        } catch (...) {
        }
    }
};

}  // namespace

redis_client::redis_client(redis_options opts, std::shared_ptr<handlers::service_loop> service,
                           std::shared_ptr<spdlog::logger> log)
    : opts_(std::move(opts)),
      service_(std::move(service)),
      state_(std::make_shared<detail::redis_state>(opts_, *service_, std::move(log))) {
    std::weak_ptr<detail::redis_state> weak = state_;
    service_->at_stop([weak] {
        if (auto s = weak.lock()) s->stop();
    });
    service_->post([s = state_](uv_loop_t*) { s->start(); });
}

redis_client::~redis_client() {
    service_->post([s = std::move(state_)](uv_loop_t*) { s->stop(); });
}

void redis_client::command(std::vector<std::string> args, completion done) {
    auto cmd = std::make_shared<posted_command>(std::move(args), std::move(done));
    service_->post([s = state_, cmd](uv_loop_t*) {
        s->send(std::move(cmd->args), std::exchange(cmd->done, nullptr));
    });
}

void redis_client::subscribe(std::string channel, message_handler fn) {
    service_->post([s = state_, channel = std::move(channel), fn = std::move(fn)](uv_loop_t*) {
        s->add_subscription(channel, fn);
    });
}

void redis_client::on_resubscribed(std::function<void()> fn) {
    service_->post([s = state_, fn = std::move(fn)](uv_loop_t*) { s->set_resubscribed(fn); });
}

bool redis_client::connected(redis_link which) const noexcept {
    return state_->counters.up[which == redis_link::command ? 0 : 1].load();
}

redis_stats redis_client::stats() const {
    const auto& c = state_->counters;
    redis_stats s;
    s.command_connected = c.up[0].load();
    s.subscriber_connected = c.up[1].load();
    s.connections = c.connections.load();
    s.reconnects = c.reconnects.load();
    s.pending = c.pending.load();
    for (std::size_t i = 0; i < redis_error_count; ++i)
        s.errors[i] = c.errors[i].load();
    s.messages = c.messages.load();
    s.health_failures[0] = c.health_failures[0].load();
    s.health_failures[1] = c.health_failures[1].load();
    return s;
}

void redis_client::render_metrics(std::string& out) const {
    namespace prom = prometheus;
    const auto s = stats();
    prom::header(out, "spoa_redis_connected", "1 while the Redis connection is up", "gauge");
    prom::sample(out, "spoa_redis_connected", "connection=\"command\"",
                 std::int64_t{s.command_connected});
    prom::sample(out, "spoa_redis_connected", "connection=\"subscriber\"",
                 std::int64_t{s.subscriber_connected});
    prom::header(out, "spoa_redis_connections_total", "Redis connections that came up", "counter");
    prom::sample(out, "spoa_redis_connections_total", "", s.connections);
    prom::header(out, "spoa_redis_reconnects_total", "Redis connection attempts after the first",
                 "counter");
    prom::sample(out, "spoa_redis_reconnects_total", "", s.reconnects);
    prom::header(out, "spoa_redis_pending_commands", "Redis commands waiting for an answer",
                 "gauge");
    prom::sample(out, "spoa_redis_pending_commands", "", static_cast<std::int64_t>(s.pending));
    prom::header(out, "spoa_redis_command_errors_total", "Redis commands that failed, by reason",
                 "counter");
    for (std::size_t i = 0; i < redis_error_count; ++i) {
        const auto reason = to_string(static_cast<redis_error>(i));
        prom::sample(out, "spoa_redis_command_errors_total",
                     "reason=\"" + std::string(reason) + "\"", s.errors[i]);
    }
    prom::header(out, "spoa_redis_command_seconds", "Redis command round trip (or timeout)",
                 "histogram");
    prom::write_histogram(out, "spoa_redis_command_seconds", "", state_->counters.latency);
    prom::header(out, "spoa_redis_messages_total", "Messages received on subscribed channels",
                 "counter");
    prom::sample(out, "spoa_redis_messages_total", "", s.messages);
    prom::header(out, "spoa_redis_health_check_failures_total",
                 "Connections dropped by a health check (PING unanswered, heartbeat not delivered)",
                 "counter");
    prom::sample(out, "spoa_redis_health_check_failures_total", "connection=\"command\"",
                 s.health_failures[0]);
    prom::sample(out, "spoa_redis_health_check_failures_total", "connection=\"subscriber\"",
                 s.health_failures[1]);
}

}  // namespace spoa::handlers::routing
