#pragma once
// `spoa-cli hello`: one handshake, then what the agent announced.

#include <ostream>

#include "connection_options.hpp"
#include "exit_code.hpp"

namespace spoa::cli {

/// Prints version, max-frame-size and capabilities (lines, or one JSON object). Throws
/// cli_error.
exit_code run_hello(const connection_options& conn, bool json, std::ostream& out);

}  // namespace spoa::cli
