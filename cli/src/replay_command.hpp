#pragma once
// `spoa-cli replay FILE`: every answered NOTIFY of a recording sent again, in recorded order, on
// one connection with its own HELLO and frame ids; each ACK compared with the recorded one.

#include <functional>
#include <ostream>
#include <set>
#include <string>

#include "connection_options.hpp"
#include "exit_code.hpp"

namespace spoa::cli {

struct replay_options {
    connection_options connection;
    std::string file;
    std::set<std::string, std::less<>> ignored;  ///< variable names not compared
};

/// Prints every difference and a summary; `differences` when any ACK differs. Throws cli_error.
exit_code run_replay(const replay_options& opts, std::ostream& out);

}  // namespace spoa::cli
