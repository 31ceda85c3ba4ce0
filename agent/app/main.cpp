// spoa-agent: the ready-to-run agent. The one place that wires the built-in handlers into the
// agent library.

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <future>
#include <iostream>

#include "spoa/agent/agent.hpp"
#include "spoa/agent/version.hpp"
#include "spoa/handlers/examples.hpp"
#include "spoa/handlers/routing/chain_resolver.hpp"
#include "spoa/handlers/routing/feedback_log.hpp"
#include "spoa/handlers/routing/remote_resolver.hpp"
#include "spoa/handlers/routing/router.hpp"
#include "spoa/handlers/routing/routing_config.hpp"
#include "spoa/handlers/routing/static_resolver.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace {

std::chrono::milliseconds ms(long v) {
    return std::chrono::milliseconds(v);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"spoa-agent: HAProxy SPOE agent (SPOP 2.0)", "spoa-agent"};
    app.set_version_flag("--version", std::string("spoa-agent ") + spoa::version());

    std::vector<std::string> listen;
    unsigned threads = 0;
    std::uint32_t max_frame_size = 16380;
    std::string log_level = "info";
    std::string admin;
    std::vector<std::string> examples;
    std::size_t max_connections = 100000;
    std::size_t max_inflight = 256;
    long idle_timeout = 600000;
    long hello_timeout = 5000;
    long deadline = 1000;
    long drain_timeout = 10000;
    long drain_grace = 0;
    bool no_fragmentation = false;
    std::size_t max_reassembly = 1024 * 1024;
    std::string unix_mode;
    std::string unix_owner;
    std::string unix_group;
    std::string routing_config_path;
    bool check_config = false;

    app.add_option("-l,--listen", listen,
                   "Address to serve SPOP on: host:port, [v6]:port or unix:/path (repeatable)")
        ->default_str("127.0.0.1:12345");
    app.add_option("-t,--threads", threads, "Loop threads (0 = one per core)")->default_val(0);
    app.add_option("--max-frame-size", max_frame_size,
                   "Largest frame we accept and announce, in bytes")
        ->check(CLI::Range(256u, 16777216u))
        ->default_val(16380);
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
        ->default_val("info");
    app.add_option("--admin", admin, "Admin HTTP endpoint host:port (/healthz, /metrics)");
    std::string names;
    for (auto n : spoa::handlers::example_names())
        names += (names.empty() ? "" : ", ") + std::string(n);
    app.add_option("--example", examples, "Enable an example handler: " + names + " (repeatable)");
    app.add_option("--max-connections", max_connections, "Connections accepted at once")
        ->default_val(100000);
    app.add_option("--max-inflight", max_inflight,
                   "Unanswered NOTIFY frames per connection before reading pauses")
        ->check(CLI::PositiveNumber)
        ->default_val(256);
    app.add_option("--idle-timeout", idle_timeout,
                   "Close connections idle this long, ms (0 = never)")
        ->default_val(600000);
    app.add_option("--hello-timeout", hello_timeout, "Time allowed for HAPROXY-HELLO, ms")
        ->check(CLI::PositiveNumber)
        ->default_val(5000);
    app.add_option("--deadline", deadline,
                   "Answer a frame after this many ms even if handlers are not done; keep it "
                   "below HAProxy's timeout processing")
        ->check(CLI::PositiveNumber)
        ->default_val(1000);
    app.add_option("--drain-timeout", drain_timeout, "Longest graceful drain on SIGTERM, ms")
        ->default_val(10000);
    app.add_option("--drain-grace", drain_grace,
                   "On SIGTERM, keep serving this many ms while failing health checks before "
                   "draining (set to spop-check fall x inter)")
        ->check(CLI::NonNegativeNumber)
        ->default_val(0);
    app.add_flag("--no-fragmentation", no_fragmentation,
                 "Do not announce fragmentation (HAProxy 2.6 then refuses oversized NOTIFYs)");
    app.add_option("--max-reassembly", max_reassembly, "Cap on a reassembled NOTIFY payload, bytes")
        ->default_val(1024 * 1024);
    app.add_option("--unix-mode", unix_mode, "Mode of Unix listening sockets, octal (e.g. 0660)");
    app.add_option("--unix-owner", unix_owner, "Owner (user name or uid) of Unix sockets");
    app.add_option("--unix-group", unix_group, "Group (name or gid) of Unix sockets");

    app.add_option("-c,--config", routing_config_path,
                   "Routing configuration (YAML): enables route-http, route-pg, route-tcp, "
                   "route-tls; SIGHUP reloads its routes")
        ->check(CLI::ExistingFile);
    app.add_flag("--check", check_config, "Validate the configuration and exit");

    CLI11_PARSE(app, argc, argv);

    auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto logger = std::make_shared<spdlog::logger>("spoa", sink);
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%t] %v");
    logger->set_level(spdlog::level::from_str(log_level));
    logger->flush_on(spdlog::level::warn);

    spoa::agent_config cfg;
    try {
        if (listen.empty()) listen.push_back("127.0.0.1:12345");
        for (const auto& l : listen)
            cfg.listeners.push_back(spoa::listen_address::parse(l));
        if (!admin.empty()) cfg.admin = spoa::listen_address::parse(admin);
        if (!unix_mode.empty())
            cfg.unix_socket.mode = static_cast<unsigned>(std::stoul(unix_mode, nullptr, 8));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "spoa-agent: %s\n", e.what());
        return 2;
    }
    cfg.unix_socket.owner = unix_owner;
    cfg.unix_socket.group = unix_group;
    cfg.threads = threads;
    cfg.max_frame_size = max_frame_size;
    cfg.max_connections = max_connections;
    cfg.max_inflight_per_connection = max_inflight;
    cfg.idle_timeout = ms(idle_timeout);
    cfg.hello_timeout = ms(hello_timeout);
    cfg.handler_deadline = ms(deadline);
    cfg.drain_timeout = ms(drain_timeout);
    cfg.drain_grace = ms(drain_grace);
    cfg.fragmentation = !no_fragmentation;
    cfg.max_reassembled_size = max_reassembly;
    cfg.logger = logger;

    // Routing: the resolver, the cache and the checks run on their own service loop.
    std::shared_ptr<spoa::handlers::service_loop> service;
    std::shared_ptr<spoa::routing::static_resolver> static_routes;
    std::shared_ptr<spoa::routing::remote_resolver> remote;
    std::unique_ptr<spoa::routing::router> router;
    std::unique_ptr<spoa::routing::feedback_log> feedback;
    try {
        if (!routing_config_path.empty()) {
            auto rc = spoa::routing::load_routing_config(routing_config_path);
            static_routes = std::make_shared<spoa::routing::static_resolver>(routing_config_path);
            if (check_config) {
                std::printf("%s: OK (%zu routes)\n", routing_config_path.c_str(),
                            static_routes->table()->size());
                return 0;
            }
            service = std::make_shared<spoa::handlers::service_loop>();
            // resolver.type: static (the file's routes), remote (the control plane), or chain
            // (the file's routes first, the control plane for the ids they do not know).
            std::shared_ptr<spoa::routing::resolver> active = static_routes;
            using kind = spoa::routing::routing_config::resolver_kind;
            if (rc.resolver != kind::static_routes) {
                remote =
                    std::make_shared<spoa::routing::remote_resolver>(*rc.remote, service, logger);
                if (rc.resolver == kind::remote) {
                    active = remote;
                } else {
                    active = std::make_shared<spoa::routing::chain_resolver>(static_routes, remote);
                }
            }
            router = std::make_unique<spoa::routing::router>(active, rc.ssrf, rc.router, service,
                                                             logger);
            if (remote) {
                // Control-plane pushes run on the service loop, which ends before the router.
                remote->set_invalidation_handler(
                    [r = router.get()](std::string id, std::optional<spoa::routing::protocol> p) {
                        r->invalidate(id, p);
                    });
            }
            if (rc.feedback_listen) {
                // Passive health signals: HAProxy's log lines over UDP. Bound on the service
                // loop; a bind error stops the start like any other configuration error.
                feedback = std::make_unique<spoa::routing::feedback_log>(*service, *router, *active,
                                                                         logger);
                std::promise<std::string> bound;
                service->post([&](uv_loop_t*) {
                    try {
                        feedback->listen(*rc.feedback_listen);
                        bound.set_value({});
                    } catch (const std::exception& e) {
                        bound.set_value(e.what());
                    }
                });
                if (auto err = bound.get_future().get(); !err.empty())
                    throw std::runtime_error(err);
            }
        } else if (check_config) {
            throw std::runtime_error(
                "--check needs --config FILE (there is nothing else to check)");
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "spoa-agent: %s\n", e.what());
        return 2;
    }

    try {
        spoa::agent agent(cfg);
        if (router) {
            router->attach(agent);
            if (remote) {
                agent.metrics().add_collector(
                    [remote](std::string& out) { remote->render_metrics(out); });
            }
            agent.on_reload([&] {
                if (auto err = static_routes->reload()) {
                    logger->error("reload of {} failed, keeping the current routes: {}",
                                  routing_config_path, *err);
                } else {
                    logger->info("reloaded {} ({} routes)", routing_config_path,
                                 static_routes->table()->size());
                    router->cache().clear();
                }
            });
        }
        for (const auto& name : examples) {
            if (!spoa::handlers::register_example(agent, name)) {
                std::fprintf(stderr, "spoa-agent: unknown example '%s' (known: %s)\n", name.c_str(),
                             names.c_str());
                return 2;
            }
        }
        if (examples.empty() && !router) {
            logger->warn(
                "no handler enabled: every message is answered without variables "
                "(try --example echo)");
        }
        agent.run();
        // The service loop's tasks use the router and the agent's metrics (histograms): end
        // it while both still exist. Answers it completes now find their connections gone.
        if (service) service->join();
    } catch (const std::exception& e) {
        logger->critical("{}", e.what());
        if (service) service->join();
        return 1;
    }
    feedback.reset();
    router.reset();
    return 0;
}
