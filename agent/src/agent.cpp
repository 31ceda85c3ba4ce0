#include "spoa/agent/agent.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include "admin_server.hpp"
#include "handler_table.hpp"
#include "sockets.hpp"
#include "spoa/agent/version.hpp"
#include "worker.hpp"

namespace spoa {
namespace detail {
namespace {

/// POST /log-level?level=debug: spdlog levels are atomics, so the loops see the change on
/// their next line.
admin_response set_log_level(spdlog::logger& logger, const admin_request& req) {
    static constexpr std::array<std::string_view, 7> names{"trace", "debug",    "info", "warn",
                                                           "error", "critical", "off"};
    const auto it = req.query.find("level");
    const std::string_view wanted = it == req.query.end() ? "" : std::string_view(it->second);
    if (std::find(names.begin(), names.end(), wanted) == names.end()) {
        return {400, "text/plain",
                "usage: POST /log-level?level=trace|debug|info|warn|error|critical|off\n"};
    }
    const auto before = spdlog::level::to_string_view(logger.level());
    logger.set_level(spdlog::level::from_str(std::string(wanted)));
    logger.warn("log level {} -> {} (admin endpoint)",
                std::string_view(before.data(), before.size()), wanted);
    return {200, "text/plain", std::string(wanted) + "\n"};
}

}  // namespace

class runtime {
  public:
    explicit runtime(agent_config cfg) : config(std::move(cfg)) {
        if (!config.logger) {
            config.logger = std::make_shared<spdlog::logger>(
                "spoa", std::make_shared<spdlog::sinks::null_sink_mt>());
        }
    }

    ~runtime() {
        stop(false);
        wait();
    }

    void validate() const;
    void start();
    void run();
    void stop(bool drain) noexcept;
    void wait();
    void render_stats(std::string& out) const;
    void reload() noexcept;
    [[nodiscard]] std::vector<admin_route> admin_routes() const;
    [[nodiscard]] admin_response readiness() const;

    agent_config config;
    handler_table handlers;
    metrics_registry metrics;
    std::vector<admin_route> routes;
    /// Fixed before start(); called on the admin thread.
    std::vector<std::function<std::optional<std::string>()>> readiness_checks;
    std::vector<std::function<std::optional<std::string>()>> readiness_notes;  ///< same rule
    std::vector<std::function<void()>> reload_hooks;
    std::mutex reload_mutex;
    shared_context ctx;
    /// Filled by start() before any other thread exists and never resized after: the admin
    /// thread reads it (render_stats) without a lock; each worker's stats are atomics.
    std::vector<std::unique_ptr<worker>> workers;
    std::vector<listen_address> bound;
    std::optional<listen_address> admin_bound;
    std::unique_ptr<admin_server> admin;

    std::mutex mutex;
    std::condition_variable exited_cv;
    unsigned running = 0;
    bool started = false;
    bool joined = false;
    std::atomic<bool> draining{false};
    std::atomic<bool> serving{false};    ///< every loop thread has been started
    uv_async_t* control_wake = nullptr;  ///< set while run() drives the signal loop
};

void runtime::validate() const {
    if (config.listeners.empty()) throw std::invalid_argument("no listen address configured");
    if (config.max_frame_size < protocol::min_max_frame_size ||
        config.max_frame_size > (1u << 24)) {
        throw std::invalid_argument("max-frame-size must be within [256, 16777216]");
    }
    if (config.max_inflight_per_connection == 0) {
        throw std::invalid_argument("max in-flight frames per connection must be at least 1");
    }
    if (config.handler_deadline.count() <= 0) {
        throw std::invalid_argument("handler deadline must be positive");
    }
    if (config.max_connections == 0)
        throw std::invalid_argument("max connections must be at least 1");
    if (config.admin && !config.admin->is_local() && config.admin_token.empty() &&
        !config.admin_public) {
        throw std::invalid_argument(
            "the admin endpoint " + config.admin->to_string() +
            " is reachable from other hosts and can invalidate routes: give it a token "
            "(--admin-token-file), or say that it is meant to be open (--admin-public)");
    }
}

std::vector<admin_route> runtime::admin_routes() const {
    std::vector<admin_route> all = routes;
    all.push_back({"GET", "/healthz",
                   [this](const admin_request&) {
                       if (draining.load()) return admin_response{503, "text/plain", "draining\n"};
                       return admin_response{200, "text/plain", "ok\n"};
                   },
                   true});
    all.push_back({"GET", "/readyz", [this](const admin_request&) { return readiness(); }, true});
    all.push_back({"GET", "/metrics", [this](const admin_request&) {
                       return admin_response{200, "text/plain; version=0.0.4", metrics.render()};
                   }});
    all.push_back({"GET", "/log-level", [this](const admin_request&) {
                       const auto level = spdlog::level::to_string_view(config.logger->level());
                       return admin_response{200, "text/plain",
                                             std::string(level.data(), level.size()) + "\n"};
                   }});
    all.push_back({"POST", "/log-level", [this](const admin_request& req) {
                       return set_log_level(*config.logger, req);
                   }});
    return all;
}

admin_response runtime::readiness() const {
    std::string reasons;
    const auto add = [&reasons](std::string_view why) {
        reasons += "not ready: ";
        reasons += why;
        reasons += "\n";
    };
    if (draining.load()) add("draining");
    if (!serving.load()) add("loop threads not started");
    for (const auto& check : readiness_checks) {
        try {
            if (auto why = check()) add(*why);
        } catch (const std::exception& e) {
            add(std::string("readiness check failed: ") + e.what());
        }
    }
    if (!reasons.empty()) return {503, "text/plain", reasons};
    std::string body = "ready\n";
    for (const auto& note : readiness_notes) {
        try {
            if (auto what = note()) body += "degraded: " + *what + "\n";
        } catch (const std::exception& e) {
            body += std::string("degraded: readiness note failed: ") + e.what() + "\n";
        }
    }
    return {200, "text/plain", body};
}

void runtime::start() {
    if (started) return;
    validate();
    // Writes to a socket the peer closed must return EPIPE, not kill the process.
    ::signal(SIGPIPE, SIG_IGN);
    const unsigned threads =
        config.threads != 0 ? config.threads : std::max(1u, std::thread::hardware_concurrency());
    ctx.config = &config;
    ctx.handlers = &handlers;
    ctx.log = config.logger.get();
    ctx.session.capabilities.max_frame_size = config.max_frame_size;
    ctx.session.capabilities.pipelining = config.pipelining;
    ctx.session.capabilities.async = false;  // ACKs always go back on the NOTIFY's connection
    ctx.session.capabilities.fragmentation = config.fragmentation;
    ctx.session.max_reassembled_size = config.max_reassembled_size;

    // The workers exist (not yet running) before the admin thread starts: it reads `workers`
    // for /metrics as soon as it serves, and the vector is never resized after this.
    for (unsigned i = 0; i < threads; ++i)
        workers.push_back(std::make_unique<worker>(ctx, i));
    metrics.add_collector([this](std::string& out) { render_stats(out); });

    // Every socket is opened here, before any thread runs, so that bind errors reach the caller.
    std::vector<std::vector<listener_socket>> per_worker(threads);
    auto close_all = [&] {
        for (auto& v : per_worker) {
            for (auto& l : v)
                ::close(l.fd);
        }
    };
    try {
        for (const auto& addr : config.listeners) {
            if (addr.type == listen_address::kind::tcp) {
                listen_address actual = addr;
                for (unsigned i = 0; i < threads; ++i) {
                    const int fd = open_tcp_listener(actual, true);
                    if (i == 0) actual.port = bound_port(fd);
                    per_worker[i].push_back({fd, connection::transport::tcp});
                }
                bound.push_back(actual);
            } else {
                const int fd = open_unix_listener(addr, config.unix_socket);
                // One Unix socket shared by every loop: each has its own descriptor of it.
                for (unsigned i = 0; i < threads; ++i) {
                    const int dup_fd = i + 1 == threads ? fd : ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
                    per_worker[i].push_back({dup_fd, connection::transport::unix_socket});
                }
                bound.push_back(addr);
            }
        }
        if (config.admin) {
            listen_address actual = *config.admin;
            const int fd = open_tcp_listener(actual, false);
            actual.port = bound_port(fd);
            admin = std::make_unique<admin_server>(fd, admin_routes(), config.admin_token);
            admin_bound = actual;
        }
    } catch (...) {
        close_all();
        // Remove only the socket files this start() created (those in `bound`): a listener that
        // failed because another live agent owns its path must not delete that agent's socket.
        for (const auto& addr : bound) {
            if (addr.type == listen_address::kind::unix_socket) ::unlink(addr.path.c_str());
        }
        bound.clear();
        workers.clear();
        throw;
    }
    running = threads;
    started = true;
    for (unsigned i = 0; i < threads; ++i) {
        workers[i]->start(std::move(per_worker[i]), [this] {
            std::lock_guard lock(mutex);
            if (--running == 0) {
                exited_cv.notify_all();
                if (control_wake) uv_async_send(control_wake);
            }
        });
    }
    serving.store(true);
    std::string where;
    for (const auto& b : bound)
        where += (where.empty() ? "" : ", ") + b.to_string();
    config.logger->info("spoa-agent {} listening on {} with {} thread(s), max-frame-size {}{}",
                        version(), where, threads, config.max_frame_size,
                        admin_bound ? ", admin on http://" + admin_bound->to_string() : "");
}

void runtime::stop(bool drain) noexcept {
    if (!started) return;
    if (drain) {
        draining.store(true);
        ctx.draining.store(true);
    }
    for (auto& w : workers)
        w->request_stop(drain);
}

void runtime::wait() {
    if (!started || joined) return;
    {
        std::unique_lock lock(mutex);
        exited_cv.wait(lock, [this] { return running == 0; });
    }
    for (auto& w : workers)
        w->join();
    admin.reset();
    for (const auto& addr : config.listeners) {
        if (addr.type == listen_address::kind::unix_socket) ::unlink(addr.path.c_str());
    }
    joined = true;
    config.logger->info("spoa-agent stopped");
}

void runtime::run() {
    if (!config.handle_signals) {
        start();
        wait();
        return;
    }
    // The calling thread watches the signals: first SIGTERM/SIGINT drains, the second stops now.
    uv_loop_t loop;
    uv_loop_init(&loop);
    loop.data = this;
    uv_signal_t sigterm;
    uv_signal_t sigint;
    uv_signal_t sighup;
    uv_async_t done;
    int signals_seen = 0;
    struct control {
        runtime* rt;
        int* seen;
    } ctl{this, &signals_seen};
    const auto on_signal = [](uv_signal_t* h, int signum) noexcept {
        auto* c = static_cast<control*>(h->data);
        if (++*c->seen == 1) {
            c->rt->stop(true);  // first: whoever reads the line below sees /healthz failing
            c->rt->config.logger->info("signal {}: draining (send it again to stop at once)",
                                       signum);
        } else {
            c->rt->config.logger->warn("signal {} again: stopping now", signum);
            c->rt->stop(false);
        }
    };
    uv_signal_init(&loop, &sigterm);
    uv_signal_init(&loop, &sigint);
    sigterm.data = sigint.data = &ctl;
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_init(&loop, &sighup);
    sighup.data = this;
    uv_signal_start(
        &sighup, [](uv_signal_t* h, int) noexcept { static_cast<runtime*>(h->data)->reload(); },
        SIGHUP);
    // The signal handlers are in place before start() says "listening": a SIGTERM sent as soon
    // as the agent is reachable must drain it, not kill it (the default action). libuv holds
    // such a signal until uv_run below, when stop() applies to the started agent.
    try {
        start();
    } catch (...) {
        for (uv_signal_t* h : {&sigterm, &sigint, &sighup})
            uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
        throw;
    }
    uv_async_init(&loop, &done, [](uv_async_t* h) noexcept { uv_stop(h->loop); });
    {
        std::lock_guard lock(mutex);
        control_wake = &done;
        if (running == 0) uv_async_send(&done);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    {
        std::lock_guard lock(mutex);
        control_wake = nullptr;
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&sigterm), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigint), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sighup), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&done), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    wait();
}

void runtime::reload() noexcept {
    std::lock_guard lock(reload_mutex);
    config.logger->info("reload requested");
    for (auto& hook : reload_hooks) {
        try {
            hook();
        } catch (const std::exception& e) {
            config.logger->error("reload hook failed: {}", e.what());
        }
    }
}

void runtime::render_stats(std::string& out) const {
    namespace prom = spoa::prometheus;
    auto sum = [this](auto&& get) {
        std::uint64_t total = 0;
        for (const auto& w : workers)
            total += get(w->stats());
        return total;
    };
    prom::header(out, "spoa_build_info", "Agent version.", "gauge");
    prom::sample(out, "spoa_build_info", "version=\"" + std::string(version()) + "\"",
                 std::uint64_t{1});
    prom::header(out, "spoa_threads", "Loop threads.", "gauge");
    prom::sample(out, "spoa_threads", "", static_cast<std::uint64_t>(workers.size()));
    prom::header(out, "spoa_connections_active", "Open SPOP connections.", "gauge");
    prom::sample(out, "spoa_connections_active", "",
                 sum([](const worker_stats& s) { return s.active.value(); }));
    prom::header(out, "spoa_connections_accepted_total", "Accepted SPOP connections.", "counter");
    prom::sample(out, "spoa_connections_accepted_total", "",
                 sum([](const worker_stats& s) { return s.accepted.value(); }));
    prom::header(out, "spoa_connections_closed_total", "Closed SPOP connections.", "counter");
    prom::sample(out, "spoa_connections_closed_total", "",
                 sum([](const worker_stats& s) { return s.closed.value(); }));
    prom::header(out, "spoa_inflight_frames", "NOTIFY frames waiting for async handlers.", "gauge");
    prom::sample(out, "spoa_inflight_frames", "",
                 sum([](const worker_stats& s) { return s.inflight.value(); }));

    static constexpr const char* in_names[] = {"UNSET", "HAPROXY-HELLO", "HAPROXY-DISCONNECT",
                                               "NOTIFY"};
    prom::header(out, "spoa_frames_received_total", "Frames received, by type.", "counter");
    for (std::size_t i = 0; i < std::size(in_names); ++i) {
        prom::sample(out, "spoa_frames_received_total", std::string("type=\"") + in_names[i] + "\"",
                     sum([i](const worker_stats& s) { return s.frames_in[i].value(); }));
    }
    static constexpr const char* out_names[] = {"AGENT-HELLO", "AGENT-DISCONNECT", "ACK"};
    prom::header(out, "spoa_frames_sent_total", "Frames sent, by type.", "counter");
    for (std::size_t i = 0; i < std::size(out_names); ++i) {
        prom::sample(out, "spoa_frames_sent_total", std::string("type=\"") + out_names[i] + "\"",
                     sum([i](const worker_stats& s) { return s.frames_out[i].value(); }));
    }
    prom::header(out, "spoa_messages_total", "SPOE messages received, by name.", "counter");
    for (std::size_t h = 0; h <= handlers.size(); ++h) {
        std::string name;
        if (h < handlers.named()) {
            name = handlers.at(h).name;
        } else if (h < handlers.size()) {
            name = "*";  // the catch-all handler
        } else {
            name = "(no handler)";
        }
        prom::sample(out, "spoa_messages_total", "message=\"" + prom::escape(name) + "\"",
                     sum([h](const worker_stats& s) { return s.messages[h].value(); }));
    }
    // Each family's samples follow its own header: the text format wants them grouped.
    prom::header(out, "spoa_errors_total",
                 "AGENT-DISCONNECT frames sent, by SPOP status code (0 = normal close).",
                 "counter");
    for (std::uint32_t st = 0; st < 100; ++st) {
        const auto sent = sum([st](const worker_stats& s) { return s.sent_status[st].value(); });
        if (sent != 0 || st == 0) {
            prom::sample(
                out, "spoa_errors_total",
                "status=\"" + std::to_string(st) + "\",reason=\"" +
                    std::string(protocol::to_string(static_cast<protocol::status_code>(st))) + "\"",
                sent);
        }
    }
    prom::header(out, "spoa_peer_disconnects_total",
                 "HAPROXY-DISCONNECT frames received, by status.", "counter");
    for (std::uint32_t st = 0; st < 100; ++st) {
        const auto peer = sum([st](const worker_stats& s) { return s.peer_status[st].value(); });
        if (peer != 0 || st == 0) {
            prom::sample(out, "spoa_peer_disconnects_total",
                         "status=\"" + std::to_string(st) + "\"", peer);
        }
    }
    static constexpr const char* limit_names[] = {
        "max_connections", "inflight",         "write_high_water", "idle_timeout",
        "hello_timeout",   "handler_deadline", "drain_timeout"};
    prom::header(out, "spoa_limit_events_total", "Limits and timeouts that were hit.", "counter");
    for (std::size_t i = 0; i < std::size(limit_names); ++i) {
        prom::sample(out, "spoa_limit_events_total",
                     std::string("limit=\"") + limit_names[i] + "\"",
                     sum([i](const worker_stats& s) { return s.limits[i].value(); }));
    }
    prom::header(out, "spoa_handler_exceptions_total", "Handler calls that threw.", "counter");
    prom::sample(out, "spoa_handler_exceptions_total", "",
                 sum([](const worker_stats& s) { return s.handler_exceptions.value(); }));
    prom::header(out, "spoa_actions_refused_total",
                 "Actions refused (ACK too big or bad variable name).", "counter");
    prom::sample(out, "spoa_actions_refused_total", "",
                 sum([](const worker_stats& s) { return s.actions_refused.value(); }));
    prom::header(out, "spoa_async_late_total",
                 "Async completions that arrived after their frame was answered.", "counter");
    prom::sample(out, "spoa_async_late_total", "",
                 sum([](const worker_stats& s) { return s.async_late.value(); }));

    // One histogram over all loops: bucket counts add up.
    const auto bounds = latency_buckets_seconds();
    prom::header(out, "spoa_frame_duration_seconds",
                 "Time from NOTIFY decoded to ACK written, per frame.", "histogram");
    std::uint64_t cumulative = 0;
    double total_sum = 0;
    char le[64];
    for (std::size_t i = 0; i <= bounds.size(); ++i) {
        cumulative += sum([i](const worker_stats& s) { return s.handler_latency.bucket(i); });
        if (i < bounds.size()) {
            std::snprintf(le, sizeof le, "le=\"%.9g\"", bounds[i]);
        } else {
            std::snprintf(le, sizeof le, "le=\"+Inf\"");
        }
        prom::sample(out, "spoa_frame_duration_seconds_bucket", le, cumulative);
    }
    for (const auto& w : workers)
        total_sum += w->stats().handler_latency.sum();
    prom::sample(out, "spoa_frame_duration_seconds_sum", "", total_sum);
    prom::sample(out, "spoa_frame_duration_seconds_count", "", cumulative);
}

}  // namespace detail

const char* version() noexcept {
    return SPOA_VERSION_STRING;
}

agent::agent(agent_config config) : rt_(std::make_unique<detail::runtime>(std::move(config))) {}
agent::~agent() = default;

agent& agent::on(std::string name, sync_handler handler) {
    if (rt_->started) throw std::logic_error("handlers must be registered before start()");
    rt_->handlers.add(std::move(name), std::move(handler));
    return *this;
}
agent& agent::on_async(std::string name, async_handler handler) {
    if (rt_->started) throw std::logic_error("handlers must be registered before start()");
    rt_->handlers.add(std::move(name), std::move(handler));
    return *this;
}
agent& agent::on_any(sync_handler handler) {
    if (rt_->started) throw std::logic_error("handlers must be registered before start()");
    rt_->handlers.set_fallback(std::move(handler));
    return *this;
}
agent& agent::on_any_async(async_handler handler) {
    if (rt_->started) throw std::logic_error("handlers must be registered before start()");
    rt_->handlers.set_fallback(std::move(handler));
    return *this;
}
agent& agent::admin_route(std::string method, std::string path, admin_handler handler) {
    if (rt_->started) throw std::logic_error("admin routes must be added before start()");
    rt_->routes.push_back({std::move(method), std::move(path), std::move(handler)});
    return *this;
}

agent& agent::readiness_check(std::function<std::optional<std::string>()> not_ready) {
    if (rt_->started) throw std::logic_error("readiness checks must be added before start()");
    rt_->readiness_checks.push_back(std::move(not_ready));
    return *this;
}

agent& agent::readiness_note(std::function<std::optional<std::string>()> degraded) {
    if (rt_->started) throw std::logic_error("readiness notes must be added before start()");
    rt_->readiness_notes.push_back(std::move(degraded));
    return *this;
}

agent& agent::on_reload(std::function<void()> hook) {
    std::lock_guard lock(rt_->reload_mutex);
    rt_->reload_hooks.push_back(std::move(hook));
    return *this;
}
void agent::reload() {
    rt_->reload();
}

metrics_registry& agent::metrics() noexcept {
    return rt_->metrics;
}
const agent_config& agent::config() const noexcept {
    return rt_->config;
}
void agent::start() {
    rt_->start();
}
void agent::run() {
    rt_->run();
}
void agent::stop(bool drain) noexcept {
    rt_->stop(drain);
}
void agent::wait() {
    rt_->wait();
}
std::vector<listen_address> agent::bound_addresses() const {
    return rt_->bound;
}
std::optional<listen_address> agent::admin_address() const {
    return rt_->admin_bound;
}

}  // namespace spoa
