// spoa-cli: the operator's SPOP client. Parses the command line and runs one command; the exit
// code says what happened (exit_code.hpp, README.md "## spoa-cli").

#include <CLI/CLI.hpp>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli_error.hpp"
#include "connection_options.hpp"
#include "hello_command.hpp"
#include "load_run.hpp"
#include "message_list.hpp"
#include "notify_command.hpp"
#include "replay_command.hpp"

namespace {

using namespace spoa::cli;

/// What the command line gives before it is checked and turned into the commands' types.
struct raw_options {
    std::string target = "127.0.0.1:12345";
    long timeout_ms = 3000;
    bool json = false;
    std::vector<std::string> words;
    std::uint64_t repeat = 1;
    unsigned concurrency = 1;
    bool load = false;  ///< --repeat or --concurrency given: numbers instead of the actions
    std::string record_file;
    std::vector<std::string> ignore = {"decision_us", "wait_ms"};
    bool compare_all = false;
};

void add_connection_flags(CLI::App& cmd, raw_options& o) {
    cmd.add_option("--target", o.target, "Agent address: host:port, [v6]:port or unix:/path")
        ->capture_default_str();
    cmd.add_option("--timeout", o.timeout_ms, "Longest wait for the connection and each answer, ms")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
}

connection_options connection_of(const raw_options& o) {
    connection_options c;
    c.where = target::parse(o.target);
    c.timeout = std::chrono::milliseconds(o.timeout_ms);
    return c;
}

exit_code run_notify_or_load(const raw_options& o) {
    const connection_options conn = connection_of(o);
    const auto messages = parse_messages(o.words);
    if (!o.load) return run_notify(conn, messages, o.json, std::cout);
    if (o.concurrency > o.repeat) throw std::invalid_argument("--concurrency exceeds --repeat");
    spoa::protocol::byte_buffer payload;
    encode_messages(payload, messages);
    const load_result r = run_load(conn, payload.view(), o.repeat, o.concurrency);
    std::cout << format_load(r, o.concurrency, o.json);
    return exit_code::ok;
}

exit_code run_replay_command(const raw_options& o) {
    replay_options r;
    r.connection = connection_of(o);
    r.file = o.record_file;
    if (!o.compare_all) r.ignored.insert(o.ignore.begin(), o.ignore.end());
    return run_replay(r, std::cout);
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{
        "spoa-cli: send SPOP frames to a spoa-agent (or any SPOP agent) like HAProxy does"};
    app.require_subcommand(1);
    app.footer(
        "Exit codes: 0 ACK received (replay: all answers as recorded), 1 replay found "
        "differences, 2 usage error, 3 AGENT-DISCONNECT, 4 timeout, 5 connection failed, "
        "6 protocol error, 7 unreadable recording.");
    app.set_version_flag("--version", "spoa-cli " SPOA_VERSION_STRING);
    raw_options o;

    CLI::App* notify = app.add_subcommand(
        "notify", "Send one NOTIFY and print the ACK's actions (exit 0 when an ACK came back)");
    add_connection_flags(*notify, o);
    notify->add_flag("--json", o.json, "Print JSON instead of a table");
    notify
        ->add_option("--repeat", o.repeat,
                     "Send the NOTIFY this many times; prints ACK/s and "
                     "latency percentiles instead of the actions")
        ->check(CLI::PositiveNumber);
    notify
        ->add_option("--concurrency", o.concurrency,
                     "Connections (threads) sharing --repeat, one frame in flight each")
        ->check(CLI::Range(1u, 1024u));
    notify
        ->add_option("message", o.words,
                     "MESSAGE [name=type:value ...] [MESSAGE ...]; types: null, bool, int32, "
                     "uint32, int64, uint64, ipv4, ipv6, str, bin (hex)")
        ->required();

    CLI::App* hello = app.add_subcommand(
        "hello", "Handshake only: print the agent's version, max-frame-size and capabilities");
    add_connection_flags(*hello, o);
    hello->add_flag("--json", o.json, "Print JSON");

    CLI::App* replay = app.add_subcommand(
        "replay",
        "Send every NOTIFY of a spoa-agent --record file again and compare the ACKs "
        "(exit 1 when any differs)");
    add_connection_flags(*replay, o);
    replay->add_option("file", o.record_file, "Recording written by spoa-agent --record")
        ->required()
        ->check(CLI::ExistingFile);
    replay
        ->add_option("--ignore", o.ignore,
                     "Variable names whose values are not compared (repeatable; replaces the "
                     "default list)")
        ->capture_default_str();
    replay->add_flag("--compare-all", o.compare_all, "Compare every variable, ignore none");

    try {
        app.parse(argc, argv);
        exit_code rc = exit_code::ok;
        o.load = notify->count("--repeat") + notify->count("--concurrency") > 0;
        if (*notify) rc = run_notify_or_load(o);
        if (*hello) rc = run_hello(connection_of(o), o.json, std::cout);
        if (*replay) rc = run_replay_command(o);
        return static_cast<int>(rc);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : static_cast<int>(exit_code::usage);
    } catch (const cli_error& e) {
        std::cerr << "spoa-cli: " << e.what() << '\n';
        return static_cast<int>(e.code());
    } catch (const std::invalid_argument& e) {
        std::cerr << "spoa-cli: " << e.what() << '\n';
        return static_cast<int>(exit_code::usage);
    } catch (const std::exception& e) {
        std::cerr << "spoa-cli: " << e.what() << '\n';
        return static_cast<int>(exit_code::connection_failed);
    }
}
