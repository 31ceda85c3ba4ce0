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
    std::string unix_mode;
    bool no_fragmentation = false;

    std::vector<std::string> examples;
    std::string log_level = "info";
    std::string routing_file;
    bool check = false;
};

void add_flags(CLI::App& app, command_line& cl);
/// "echo, ip-reputation": the names --example accepts.
[[nodiscard]] std::string example_list();
/// Parses the addresses and the socket mode into cl.agent. Throws std::invalid_argument.
void finish(command_line& cl);

}  // namespace spoa::app
