#pragma once
// The command line of spoa-agent, bound straight to the agent's configuration: the defaults
// --help shows are agent_config's own, never repeated here.

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "spoa/agent/config.hpp"

namespace spoa::app {

struct command_line {
    agent_config agent;
    // Given as text, turned into agent's fields by finish().
    std::vector<std::string> listen;
    std::string admin;
    std::string admin_token_file;  ///< --admin-token-file: read into agent.admin_token
    std::string unix_mode;
    bool no_fragmentation = false;

    std::vector<std::string> examples;
    std::string log_level = "info";
    std::string log_format = "text";  ///< --log-format text|json
    std::string routing_file;         ///< --config, or $SPOA_CONFIG
    bool check = false;               ///< --check [FILE]: validate and exit
    std::string check_file;           ///< FILE of --check FILE; empty = the --config file
    std::string probe;                ///< --probe HOST:PORT: ask that admin endpoint for /healthz
};

void add_flags(CLI::App& app, command_line& cl);
/// "echo, ip-reputation": the names --example accepts.
[[nodiscard]] std::string example_list();
/// After parsing: the addresses and the socket mode into cl.agent, and which file --check
/// validates. Throws std::invalid_argument.
void finish(const CLI::App& app, command_line& cl);

}  // namespace spoa::app
