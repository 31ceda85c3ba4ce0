#pragma once
// `spoa-cli notify`: one HELLO, one NOTIFY carrying the given messages, the ACK's actions printed.

#include <ostream>
#include <vector>

#include "connection_options.hpp"
#include "exit_code.hpp"
#include "message_list.hpp"

namespace spoa::cli {

/// Throws cli_error.
exit_code run_notify(const connection_options& conn, const std::vector<message_request>& messages,
                     bool json, std::ostream& out);

}  // namespace spoa::cli
