// spoa-agent: parses the command line and starts the agent, with the example handlers asked for
// and the routing service when a routing file is given.

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>

#include "command_line.hpp"
#include "health_probe.hpp"
#include "spoa/agent/agent.hpp"
#include "spoa/agent/log_event.hpp"
#include "spoa/agent/version.hpp"
#include "spoa/handlers/examples.hpp"
#include "spoa/handlers/routing/service.hpp"

namespace {

using namespace std::chrono_literals;

std::shared_ptr<spdlog::logger> make_logger(const std::string& level, const std::string& format) {
    auto logger =
        std::make_shared<spdlog::logger>("spoa", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    if (format == "json") {
        spoa::set_log_format(spoa::log_format::json);
        logger->set_formatter(spoa::json_log_formatter());
    } else {
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%t] %v");
    }
    logger->set_level(spdlog::level::from_str(level));
    logger->flush_on(spdlog::level::warn);
    return logger;
}

int usage_error(const std::string& what) {
    std::fprintf(stderr, "spoa-agent: %s\n", what.c_str());
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"spoa-agent: HAProxy SPOE agent (SPOP 2.0)", "spoa-agent"};
    app.set_version_flag("--version", std::string("spoa-agent ") + spoa::version());
    spoa::app::command_line cl;
    spoa::app::add_flags(app, cl);
    CLI11_PARSE(app, argc, argv);

    std::optional<spoa::handlers::routing::routing_config> routing;
    try {
        spoa::app::finish(app, cl);
        if (!cl.probe.empty()) {
            const auto probe = spoa::app::probe_health(spoa::listen_address::parse(cl.probe), 3s);
            std::printf("%s: %s\n", cl.probe.c_str(), probe.detail.c_str());
            return probe.healthy ? 0 : 1;
        }
        if (cl.check) {
            if (cl.check_file.empty()) return usage_error("--check needs a FILE or --config FILE");
            const std::size_t routes = spoa::handlers::routing::check_routing_file(cl.check_file);
            std::printf("%s: OK (%zu routes)\n", cl.check_file.c_str(), routes);
            return 0;
        }
        if (!cl.routing_file.empty())
            routing = spoa::handlers::routing::load_routing_config(cl.routing_file);
    } catch (const std::exception& e) {
        return usage_error(e.what());
    }

    const auto logger = make_logger(cl.log_level, cl.log_format);
    cl.agent.logger = logger;
    try {
        spoa::agent agent(cl.agent);
        std::unique_ptr<spoa::handlers::routing::service> routes;  // destroyed before the agent
        try {
            if (routing)
                routes =
                    std::make_unique<spoa::handlers::routing::service>(*routing, agent, logger);
        } catch (const std::exception& e) {
            return usage_error(e.what());
        }
        for (const auto& name : cl.examples) {
            if (!spoa::handlers::register_example(agent, name))
                return usage_error("unknown example '" + name +
                                   "' (known: " + spoa::app::example_list() + ")");
        }
        if (cl.examples.empty() && !routes)
            logger->warn(
                "no handler enabled: every message is answered without variables "
                "(try --example echo)");
        agent.run();
    } catch (const std::exception& e) {
        logger->critical("{}", e.what());
        return 1;
    }
    return 0;
}
