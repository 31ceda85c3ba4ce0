#include "notify_command.hpp"

#include "ack_output.hpp"
#include "cli_error.hpp"
#include "spop_client.hpp"

namespace spoa::cli {

exit_code run_notify(const connection_options& conn, const std::vector<message_request>& messages,
                     bool json, std::ostream& out) {
    protocol::byte_buffer payload;
    encode_messages(payload, messages);
    spop_client client(conn.where, conn.timeout);
    (void)client.handshake(conn.hello);
    std::vector<protocol::owned_action> actions;
    if (const auto e = protocol::decode_owned_actions(client.notify(payload.view()), actions);
        e != protocol::error::none) {
        throw cli_error(exit_code::protocol_error,
                        "malformed ACK: " + std::string(protocol::to_string(e)));
    }
    client.disconnect();
    out << (json ? actions_json(actions) : actions_table(actions));
    return exit_code::ok;
}

}  // namespace spoa::cli
