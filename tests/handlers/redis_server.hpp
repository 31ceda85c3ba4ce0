#pragma once
/// A private redis-server for tests: its own temporary directory, a Unix socket there (no port to
/// race for) or a free loopback port, no persistence; never the system's server. Killed (and
/// its files removed) at destruction. pause()/resume() stop and continue the process (SIGSTOP,
/// SIGCONT) to make a server that accepts nothing and answers nothing; crash() kills a paused
/// one with its input unread.

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_util.hpp"

extern char** environ;

namespace spoa::handlers::routing::test {

/// Waits (bounded, polling) for a condition another thread makes true; false if it did not.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
}

/// The redis-server binary on $PATH, or empty.
inline std::string redis_server_binary() {
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    std::size_t start = 0;
    while (start <= dirs.size()) {
        const auto end = dirs.find(':', start);
        const auto dir =
            dirs.substr(start, end == std::string::npos ? std::string::npos : end - start);
        const auto candidate = std::filesystem::path(dir) / "redis-server";
        if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate.string();
        if (end == std::string::npos) break;
        start = end + 1;
    }
    return {};
}

class redis_server {
  public:
    enum class listen_on : std::uint8_t { unix_socket, tcp };

    /// `extra`: more `--option value` arguments (e.g. an ACL user).
    explicit redis_server(listen_on where = listen_on::unix_socket,
                          std::vector<std::string> extra = {})
        : where_(where), extra_(std::move(extra)) {
        if (where_ == listen_on::tcp) port_ = free_port();
        start();
    }
    ~redis_server() { kill(); }
    redis_server(const redis_server&) = delete;
    redis_server& operator=(const redis_server&) = delete;

    /// As redis_options::address takes it.
    [[nodiscard]] std::string address() const {
        if (where_ == listen_on::tcp) return "127.0.0.1:" + std::to_string(port_);
        return "unix:" + socket_path();
    }
    [[nodiscard]] std::string socket_path() const { return (dir_.path() / "redis.sock").string(); }

    /// Starts it (again, on the same address) and waits until it accepts connections.
    void start() {
        std::vector<std::string> args{redis_server_binary(), "--save", "",
                                      "--appendonly",        "no",     "--dir",
                                      dir_.path().string()};
        if (where_ == listen_on::tcp) {
            args.insert(args.end(), {"--port", std::to_string(port_), "--bind", "127.0.0.1"});
        } else {
            args.insert(args.end(), {"--port", "0", "--unixsocket", socket_path()});
        }
        args.insert(args.end(), extra_.begin(), extra_.end());
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        const auto log = (dir_.path() / "redis.log").string();
        posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
        const int rc = posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        if (rc != 0) throw std::runtime_error("cannot start redis-server");
        wait_accepting();
    }
    /// SIGKILL, and waits for the process to end.
    void kill() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGCONT);
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
        std::error_code ec;
        std::filesystem::remove(socket_path(), ec);
    }
    void pause() { ::kill(pid_, SIGSTOP); }
    void resume() { ::kill(pid_, SIGCONT); }
    /// SIGKILL without SIGCONT: a paused server dies with its clients' unread commands, so
    /// the kernel resets those connections (ECONNRESET) rather than closing them.
    void crash() {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        pid_ = -1;
    }

    /// TCP only: the server's established connections holding bytes it has not read
    /// (/proc/net/tcp's rx_queue).
    [[nodiscard]] int connections_with_unread_input() const {
        std::ifstream in("/proc/net/tcp");
        std::string line;
        std::getline(in, line);  // header
        int n = 0;
        while (std::getline(in, line)) {
            std::istringstream fields(line);
            std::string slot, local, remote, state, queues;
            fields >> slot >> local >> remote >> state >> queues;
            const auto port = std::stoul(local.substr(local.find(':') + 1), nullptr, 16);
            const auto rx = std::stoul(queues.substr(queues.find(':') + 1), nullptr, 16);
            if (port == port_ && state == "01" && rx > 0) ++n;
        }
        return n;
    }

  private:
    static std::uint16_t free_port() {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
        ::close(fd);
        return ntohs(a.sin_port);
    }

    bool accepts() const {
        int fd = -1;
        int rc = -1;
        if (where_ == listen_on::tcp) {
            fd = ::socket(AF_INET, SOCK_STREAM, 0);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            a.sin_port = htons(port_);
            rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        } else {
            fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
            sockaddr_un a{};
            a.sun_family = AF_UNIX;
            const auto p = socket_path();
            std::memcpy(a.sun_path, p.c_str(), p.size() + 1);
            rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
        }
        ::close(fd);
        return rc == 0;
    }

    void wait_accepting() const {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!accepts()) {
            if (std::chrono::steady_clock::now() > deadline)
                throw std::runtime_error("redis-server does not accept connections after 10 s: " +
                                         read_text(dir_.path() / "redis.log"));
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }

    temp_dir dir_;
    listen_on where_;
    std::vector<std::string> extra_;
    std::uint16_t port_ = 0;
    pid_t pid_ = -1;
};

}  // namespace spoa::handlers::routing::test
