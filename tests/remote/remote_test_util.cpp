#include "remote_test_util.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <msgpack.hpp>

namespace spoa::remote_test {
namespace {

using clock = std::chrono::steady_clock;

int remaining_ms(clock::time_point deadline) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
    return left > 0 ? static_cast<int>(left) : 0;
}

/// Reads one line from `fd` within `timeout` (nullopt on EOF or timeout).
std::optional<std::string> read_line(int fd, std::chrono::milliseconds timeout) {
    const auto deadline = clock::now() + timeout;
    std::string line;
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return std::nullopt;
        char c = 0;
        const ssize_t n = ::read(fd, &c, 1);
        if (n <= 0) return std::nullopt;
        if (c == '\n') return line;
        line += c;
    }
}

int connect_tcp(const std::string& address) {
    const auto colon = address.rfind(':');
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1))));
    ::inet_pton(AF_INET, address.substr(0, colon).c_str(), &sa.sin_addr);
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

}  // namespace

bool python_available() {
    static const bool ok = [] {
        const std::string cmd = std::string(SPOA_TEST_PYTHON) + " -c 'import msgpack' 2>/dev/null";
        return std::system(cmd.c_str()) == 0;
    }();
    return ok;
}

// ---- temp_dir -----------------------------------------------------------------------------------

temp_dir::temp_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "spoa-remote-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
}

temp_dir::~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
}

std::string temp_dir::write(const std::string& name, const std::string& content) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p) << content;
    return p;
}

// ---- control_plane ------------------------------------------------------------------------------

control_plane::control_plane(const std::string& routes_file, const std::string& listen,
                             std::vector<std::string> extra) {
    std::vector<std::string> args{SPOA_TEST_PYTHON, SPOA_CONTROL_PLANE_SCRIPT,
                                  "--listen",       listen,
                                  "--admin",        "127.0.0.1:0",
                                  "--routes",       routes_file};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);

    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    // fork + exec rather than posix_spawn for PR_SET_PDEATHSIG: a test that crashes must not
    // leave the server running. Only async-signal-safe calls between fork and exec.
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
        ::prctl(PR_SET_PDEATHSIG, SIGKILL);
        ::dup2(out[1], STDOUT_FILENO);
        ::execv(argv[0], argv.data());
        ::_exit(127);
    }
    ::close(out[1]);
    const auto line = read_line(out[0], 10s);
    ::close(out[0]);
    REQUIRE(line.has_value());
    // "ready listen=<address> admin=<address>"
    const std::string prefix = "ready listen=";
    const auto admin_at = line->find(" admin=");
    REQUIRE(line->rfind(prefix, 0) == 0);
    REQUIRE(admin_at != std::string::npos);
    listen_ = line->substr(prefix.size(), admin_at - prefix.size());
    admin_ = line->substr(admin_at + 7);
}

control_plane::~control_plane() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 300; ++i) {
        if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
        std::this_thread::sleep_for(10ms);
    }
    kill();
}

void control_plane::kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
}

std::string control_plane::admin(const std::string& line) const {
    const int fd = connect_tcp(admin_);
    REQUIRE(fd >= 0);
    send_all(fd, line + "\n");
    const auto reply = read_line(fd, 5s);
    ::close(fd);
    REQUIRE(reply.has_value());
    return *reply;
}

long control_plane::count(const std::string& method, const std::string& key) const {
    const std::string stats = admin("stats");
    // {"calls": {...}, "ids": {"resolve": {"http/a": 2, ...}, ...}, ...}
    const auto ids = stats.find("\"ids\"");
    const auto m = stats.find("\"" + method + "\": {", ids);
    if (ids == std::string::npos || m == std::string::npos) return 0;
    const auto end = stats.find('}', m);
    const auto k = stats.find("\"" + key + "\": ", m);
    if (k == std::string::npos || k > end) return 0;
    return std::stol(stats.substr(k + key.size() + 4));
}

// ---- fake_server --------------------------------------------------------------------------------

fake_server::fake_server(script s) : fake_server(std::move(s), "127.0.0.1") {}

fake_server::fake_server(script s, const std::string& host, std::uint16_t port)
    : host_(host), script_(std::move(s)) {
    sockaddr_storage ss{};
    socklen_t len = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        len = sizeof *v4;
    } else {
        REQUIRE(::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1);
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        len = sizeof *v6;
    }
    listen_fd_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(listen_fd_ >= 0);
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    REQUIRE(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&ss), len) == 0);
    REQUIRE(::listen(listen_fd_, 16) == 0);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len);
    port_ = ntohs(ss.ss_family == AF_INET ? v4->sin_port : v6->sin6_port);
    acceptor_ = std::thread([this] {
        while (!stop_) {
            pollfd p{listen_fd_, POLLIN, 0};
            if (::poll(&p, 1, 20) <= 0) continue;
            const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd < 0) continue;
            const int index = accepted_++;
            workers_.emplace_back([this, fd, index] {
                script_(fd, index);
                ::close(fd);
            });
        }
    });
}

fake_server::~fake_server() {
    stop_ = true;
    acceptor_.join();
    for (auto& w : workers_)
        w.join();
    ::close(listen_fd_);
}

std::string fake_server::address() const {
    if (host_.find(':') != std::string::npos) return "[" + host_ + "]:" + std::to_string(port_);
    return host_ + ":" + std::to_string(port_);
}

std::optional<rpc_request> read_request(int fd, std::string& buffer,
                                        std::chrono::milliseconds timeout) {
    const auto deadline = clock::now() + timeout;
    for (;;) {
        // Decode what is buffered first.
        std::size_t off = 0;
        while (off < buffer.size()) {
            msgpack::object_handle oh;
            const std::size_t before = off;
            try {
                oh = msgpack::unpack(buffer.data(), buffer.size(), off);
            } catch (const msgpack::insufficient_bytes&) {
                off = before;
                break;
            }
            const msgpack::object& o = oh.get();
            if (o.type != msgpack::type::ARRAY || o.via.array.size != 4) continue;  // notification
            rpc_request r;
            r.msgid = o.via.array.ptr[1].as<std::uint32_t>();
            r.method = o.via.array.ptr[2].as<std::string>();
            const auto& params = o.via.array.ptr[3];
            if (params.type == msgpack::type::ARRAY && params.via.array.size == 1) {
                const auto& m = params.via.array.ptr[0];
                for (std::uint32_t i = 0; m.type == msgpack::type::MAP && i < m.via.map.size; ++i)
                    if (m.via.map.ptr[i].key.as<std::string>() == "id")
                        r.id = m.via.map.ptr[i].val.as<std::string>();
            }
            buffer.erase(0, off);
            return r;
        }
        buffer.erase(0, off);
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return std::nullopt;
        char chunk[4096];
        const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return std::nullopt;
        buffer.append(chunk, static_cast<std::size_t>(n));
    }
}

bool wait_closed(int fd, std::chrono::milliseconds timeout) {
    const auto deadline = clock::now() + timeout;
    for (;;) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return false;
        char chunk[4096];
        const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n == 0) return true;
        if (n < 0) return errno == ECONNRESET;
    }
}

void send_all(int fd, const std::string& bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
        const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
        if (n <= 0) return;
        off += static_cast<std::size_t>(n);
    }
}

std::string encode_route_response(std::uint32_t msgid, const std::string& endpoint) {
    msgpack::sbuffer sb;
    msgpack::packer<msgpack::sbuffer> pk(sb);
    pk.pack_array(4);
    pk.pack(1);
    pk.pack(msgid);
    pk.pack_nil();
    pk.pack_map(1);
    pk.pack(std::string("endpoints"));
    pk.pack_array(1);
    pk.pack(endpoint);
    return {sb.data(), sb.size()};
}

// ---- synchronous wrappers -----------------------------------------------------------------------

std::optional<routing::resolve_result> resolve_sync(routing::resolver& r, const std::string& id,
                                                    const routing::resolve_context& ctx,
                                                    std::chrono::milliseconds timeout) {
    auto p = std::make_shared<std::promise<routing::resolve_result>>();
    auto f = p->get_future();
    r.resolve(id, ctx, [p](routing::resolve_result res) { p->set_value(std::move(res)); });
    if (f.wait_for(timeout) != std::future_status::ready) return std::nullopt;
    return f.get();
}

std::optional<std::optional<routing::resolve_error>> wake_sync(routing::resolver& r,
                                                               const std::string& id,
                                                               const routing::resolve_context& ctx,
                                                               std::chrono::milliseconds timeout) {
    auto p = std::make_shared<std::promise<std::optional<routing::resolve_error>>>();
    auto f = p->get_future();
    r.wake(id, ctx, [p](std::optional<routing::resolve_error> e) { p->set_value(std::move(e)); });
    if (f.wait_for(timeout) != std::future_status::ready) return std::nullopt;
    return f.get();
}

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    const auto deadline = clock::now() + timeout;
    while (clock::now() < deadline) {
        if (cond()) return true;
        std::this_thread::sleep_for(5ms);
    }
    return cond();
}

}  // namespace spoa::remote_test
