// greeting-agent: answers SPOE message `greet` (argument `name`, a string) by setting the txn
// variable `greeting` to "hello, <name>". HAProxy side:
//
//   spoe-message greet
//       args name=req.hdr(x-name)
//       event on-frontend-http-request
//   http-response set-header X-Greeting %[var(txn.<prefix>.greeting)]

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <string>

#include "spoa/agent/agent.hpp"

int main(int argc, char** argv) {
    spoa::agent_config cfg;
    cfg.listeners.push_back(spoa::listen_address::parse(argc > 1 ? argv[1] : "127.0.0.1:12345"));
    cfg.logger = spdlog::stderr_logger_mt("greeting");

    spoa::agent agent(cfg);
    agent.on("greet", [](const spoa::message& msg, spoa::reply& reply) {
        const auto name = msg.try_string("name").value_or("stranger");
        reply.set_string(spoa::var_scope::txn, "greeting", "hello, " + std::string(name));
    });
    agent.run();  // until SIGTERM/SIGINT, then drains
}
