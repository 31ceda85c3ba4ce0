#include "replay_command.hpp"

#include "cli_error.hpp"
#include "recording_file.hpp"
#include "replay_compare.hpp"
#include "spoa/protocol/notify.hpp"
#include "spop_client.hpp"
#include "value_syntax.hpp"

namespace spoa::cli {
namespace {

/// `route-http(host=str:a.example, path=str:/)`: which request an exchange was.
std::string describe_messages(protocol::bytes_view payload) {
    protocol::notify_decoder decoder;
    if (decoder.decode(payload) != protocol::error::none) return "(undecodable NOTIFY)";
    std::string out;
    for (const auto& m : decoder.messages()) {
        out += (out.empty() ? "" : " ") + std::string(m.name) + "(";
        for (std::size_t i = 0; i < m.args.size(); ++i) {
            const auto v = protocol::owned_value::from(m.args[i].value);
            out += (i == 0 ? "" : ", ") + std::string(m.args[i].name) + "=" +
                   std::string(type_name(v.type)) + ":" + format_value(v);
        }
        out += ")";
    }
    return out;
}

std::vector<protocol::owned_action> actions_of(protocol::bytes_view payload, const char* what) {
    std::vector<protocol::owned_action> out;
    if (const auto e = protocol::decode_owned_actions(payload, out); e != protocol::error::none) {
        throw cli_error(exit_code::protocol_error, std::string("malformed ") + what + " ACK: " +
                                                       std::string(protocol::to_string(e)));
    }
    return out;
}

std::string action_line(const protocol::owned_action& a) {
    const bool unset = a.type == protocol::action_type::unset_var;
    return std::string(protocol::to_string(a.scope)) + "." + a.name + " " +
           (unset ? std::string("unset")
                  : std::string(type_name(a.value.type)) + " " + format_value(a.value));
}

void print_diff(std::ostream& out, std::size_t index, const recorded_exchange& x,
                const action_diff& d) {
    out << "exchange " << index << " (recorded connection " << x.connection_id << " stream-id "
        << x.stream_id << " frame-id " << x.frame_id << ") " << describe_messages(x.notify)
        << " differs:\n";
    for (const auto& a : d.recorded_only)
        out << "  - " << action_line(a) << '\n';
    for (const auto& a : d.replayed_only)
        out << "  + " << action_line(a) << '\n';
}

}  // namespace

exit_code run_replay(const replay_options& opts, std::ostream& out) {
    const recording_contents rec = read_recording(opts.file);
    spop_client client(opts.connection.where, opts.connection.timeout);
    (void)client.handshake(opts.connection.hello);
    std::size_t different = 0;
    for (std::size_t i = 0; i < rec.exchanges.size(); ++i) {
        const auto& x = rec.exchanges[i];
        const auto replayed =
            actions_of(client.notify({x.notify.data(), x.notify.size()}), "replayed");
        const auto recorded = actions_of({x.ack.data(), x.ack.size()}, "recorded");
        const action_diff d = compare_actions(recorded, replayed, opts.ignored);
        if (d.same()) continue;
        ++different;
        print_diff(out, i + 1, x, d);
    }
    client.disconnect();
    out << "replayed " << rec.exchanges.size() << " NOTIFY(s): " << rec.exchanges.size() - different
        << " same, " << different << " different";
    if (rec.unanswered != 0) out << "; " << rec.unanswered << " recorded without an ACK, skipped";
    if (rec.orphan_acks != 0) out << "; " << rec.orphan_acks << " ACK(s) without their NOTIFY";
    if (rec.truncated) out << "; the last record is incomplete";
    out << '\n';
    return different == 0 ? exit_code::ok : exit_code::differences;
}

}  // namespace spoa::cli
