#include "command_line.hpp"

#include <chrono>
#include <fstream>
#include <iterator>
#include <string_view>

#include "spoa/handlers/examples.hpp"

namespace spoa::app {
namespace {

/// A duration flag in milliseconds, written straight into `target`.
CLI::Option* add_ms(CLI::App& app, const std::string& flag, std::chrono::milliseconds& target,
                    const std::string& help, const CLI::Validator& range = CLI::NonNegativeNumber) {
    return app
        .add_option_function<long>(
            flag, [&target](long v) { target = std::chrono::milliseconds(v); }, help + ", ms")
        ->default_str(std::to_string(target.count()))
        ->check(range);
}

/// `--admin 9100` is the loopback address: the admin endpoint is only public when asked.
listen_address admin_address(const std::string& text) {
    const bool port_only =
        !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
    return listen_address::parse(port_only ? "127.0.0.1:" + text : text);
}

/// The file's content without surrounding white space (a trailing newline is usual).
std::string read_token(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::invalid_argument("--admin-token-file " + path + ": cannot read it");
    std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto first = token.find_first_not_of(" \t\r\n");
    const auto last = token.find_last_not_of(" \t\r\n");
    if (first == std::string::npos)
        throw std::invalid_argument("--admin-token-file " + path + " is empty");
    token = token.substr(first, last - first + 1);
    if (token.find_first_of(" \t\r\n") != std::string::npos)
        throw std::invalid_argument("--admin-token-file " + path + ": one token, no white space");
    return token;
}

}  // namespace

std::string example_list() {
    std::string names;
    for (const std::string_view n : handlers::example_names())
        names += (names.empty() ? "" : ", ") + std::string(n);
    return names;
}

namespace {

void add_agent_flags(CLI::App& app, command_line& cl) {
    agent_config& a = cl.agent;
    app.add_option("-l,--listen", cl.listen,
                   "Address to serve SPOP on: host:port, [v6]:port or unix:/path (repeatable)")
        ->default_str("127.0.0.1:12345");
    app.add_option("-t,--threads", a.threads, "Loop threads (0 = one per core)")
        ->capture_default_str();
    app.add_option("--max-frame-size", a.max_frame_size,
                   "Largest frame we accept and announce, in bytes")
        ->check(CLI::Range(256u, 16777216u))
        ->capture_default_str();
    app.add_option("--admin", cl.admin,
                   "Admin HTTP endpoint host:port, or a port alone for 127.0.0.1:PORT "
                   "(/healthz, /readyz, /metrics, /explain, /routes, POST /invalidate)");
    app.add_option("--admin-token-file", cl.admin_token_file,
                   "File holding the bearer token every admin route but /healthz and /readyz "
                   "requires")
        ->check(CLI::ExistingFile);
    app.add_flag("--admin-public", a.admin_public,
                 "Serve the admin endpoint on a non-loopback address without a token");
    app.add_option("--max-connections", a.max_connections, "Connections accepted at once")
        ->capture_default_str();
    app.add_option("--max-inflight", a.max_inflight_per_connection,
                   "Unanswered NOTIFY frames per connection before reading pauses")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    add_ms(app, "--idle-timeout", a.idle_timeout, "Close connections idle this long (0 = never)");
    add_ms(app, "--hello-timeout", a.hello_timeout, "Time allowed for HAPROXY-HELLO",
           CLI::PositiveNumber);
    add_ms(app, "--deadline", a.handler_deadline,
           "Answer a frame after this long even if handlers are not done; keep it below "
           "HAProxy's timeout processing",
           CLI::PositiveNumber);
    add_ms(app, "--drain-timeout", a.drain_timeout, "Longest graceful drain on SIGTERM");
    add_ms(app, "--close-linger", a.close_linger,
           "After an AGENT-DISCONNECT, wait this long for HAProxy to close the connection");
    add_ms(app, "--drain-grace", a.drain_grace,
           "On SIGTERM, keep serving this long while failing health checks before draining (set "
           "to spop-check fall x inter)");
    app.add_flag("--no-fragmentation", cl.no_fragmentation,
                 "Do not announce fragmentation (HAProxy 2.6 then refuses oversized NOTIFYs)");
    app.add_option("--max-reassembly", a.max_reassembled_size,
                   "Cap on a reassembled NOTIFY payload, bytes")
        ->capture_default_str();
    app.add_option("--unix-mode", cl.unix_mode,
                   "Mode of Unix listening sockets, octal (e.g. 0660)");
    app.add_option("--unix-owner", a.unix_socket.owner, "Owner (user name or uid) of Unix sockets");
    app.add_option("--unix-group", a.unix_socket.group, "Group (name or gid) of Unix sockets");
    app.add_option("--record", a.record_file,
                   "Write every NOTIFY received and ACK sent to FILE (truncated at start), for "
                   "spoa-cli replay");
    app.add_option("--record-max-bytes", a.record_max_bytes,
                   "Stop recording (one log line) before the --record file passes this size")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
}

}  // namespace

void add_flags(CLI::App& app, command_line& cl) {
    add_agent_flags(app, cl);
    app.add_option("--log-level", cl.log_level, "trace, debug, info, warn, error or off")
        ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
        ->capture_default_str();
    app.add_option("--log-format", cl.log_format,
                   "text, or json: one object a line (time, level, thread, message and named "
                   "fields)")
        ->check(CLI::IsMember({"text", "json"}))
        ->capture_default_str();
    app.add_option("--example", cl.examples,
                   "Enable an example handler: " + example_list() + " (repeatable)");
    app.add_option("-c,--config", cl.routing_file,
                   "Routing configuration (YAML): enables route-http, route-pg, route-tcp, "
                   "route-tls; SIGHUP reloads its routes")
        ->envname("SPOA_CONFIG")
        ->check(CLI::ExistingFile);
    app.add_option("--check", cl.check_file,
                   "Validate a routing file (FILE, else the --config file) and exit")
        ->expected(0, 1)
        ->type_name("[FILE]");
    app.add_option("--probe", cl.probe,
                   "Ask the admin endpoint HOST:PORT of a running agent for /healthz; exit 0 "
                   "when it answers 200, 1 otherwise (for container health checks)");
}

void finish(const CLI::App& app, command_line& cl) {
    cl.check = app.count("--check") > 0;
    if (cl.check && cl.check_file.empty()) cl.check_file = cl.routing_file;
    if (cl.listen.empty()) cl.listen.emplace_back("127.0.0.1:12345");
    for (const auto& l : cl.listen)
        cl.agent.listeners.push_back(listen_address::parse(l));
    if (!cl.admin.empty()) cl.agent.admin = admin_address(cl.admin);
    if (!cl.admin_token_file.empty()) cl.agent.admin_token = read_token(cl.admin_token_file);
    if (!cl.unix_mode.empty()) {
        std::size_t used = 0;
        const unsigned long mode = std::stoul(cl.unix_mode, &used, 8);
        if (used != cl.unix_mode.size() || mode > 07777)
            throw std::invalid_argument("--unix-mode '" + cl.unix_mode + "' is not an octal mode");
        cl.agent.unix_socket.mode = static_cast<unsigned>(mode);
    }
    cl.agent.fragmentation = !cl.no_fragmentation;
}

}  // namespace spoa::app
