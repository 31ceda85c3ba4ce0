#pragma once
// spoa-cli's exit codes (README.md "## spoa-cli"): scripts and health checks tell the outcomes
// apart by these numbers, so they never change meaning.

namespace spoa::cli {

enum class exit_code : int {
    ok = 0,                 ///< ACK received (replay: every answer as recorded)
    differences = 1,        ///< replay: at least one answer differs from the recording
    usage = 2,              ///< bad command line or argument syntax
    agent_disconnect = 3,   ///< the agent sent AGENT-DISCONNECT instead of the answer
    timeout = 4,            ///< connected, but no answer within --timeout
    connection_failed = 5,  ///< could not connect, or the connection closed without a frame
    protocol_error = 6,     ///< the agent sent something that is not valid SPOP
    bad_file = 7,           ///< replay: the recording cannot be read
};

}  // namespace spoa::cli
