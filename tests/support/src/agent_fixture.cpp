#include "spoa/testing/agent_fixture.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace spoa::testing {
namespace {

using clock = std::chrono::steady_clock;

}  // namespace

agent_config test_config() {
    agent_config cfg;
    cfg.listeners.push_back(listen_address::parse("127.0.0.1:0"));
    cfg.threads = 1;
    cfg.handle_signals = false;
    cfg.drain_timeout = 3000ms;
    cfg.close_linger = 1000ms;
    return cfg;
}

test_agent::test_agent(agent_config cfg) : agent_(std::move(cfg)) {}

test_agent::~test_agent() {
    stop(false);
}

void test_agent::start() {
    agent_.start();
    for (const auto& a : agent_.bound_addresses()) {
        if (a.type == listen_address::kind::tcp) {
            port_ = a.port;
            break;
        }
    }
}

fake_haproxy test_agent::connect() const {
    if (port_ == 0) throw std::logic_error("test_agent: not started or no TCP listener");
    return fake_haproxy::connect_tcp("127.0.0.1", port_);
}

fake_haproxy test_agent::connect_ready(const hello_options& opts) const {
    auto c = connect();
    (void)c.handshake(opts);
    return c;
}

std::string test_agent::metrics() const {
    return agent_.metrics().render();
}

std::optional<double> test_agent::metric(std::string_view name_with_labels) const {
    return find_metric(metrics(), name_with_labels);
}

bool test_agent::wait_metric(std::string_view name_with_labels, double value,
                             std::chrono::milliseconds timeout) const {
    return wait_until(
        [&] {
            const auto v = metric(name_with_labels);
            return v && *v == value;
        },
        timeout);
}

void test_agent::stop(bool drain) {
    if (stopped_) return;
    stopped_ = true;
    agent_.stop(drain);
    agent_.wait();
}

std::optional<double> find_metric(std::string_view text, std::string_view name_with_labels) {
    std::size_t pos = 0;
    while (pos < text.size()) {
        std::size_t eol = text.find('\n', pos);
        if (eol == std::string_view::npos) eol = text.size();
        const std::string_view line = text.substr(pos, eol - pos);
        pos = eol + 1;
        if (line.size() > name_with_labels.size() && line.starts_with(name_with_labels) &&
            line[name_with_labels.size()] == ' ') {
            return std::strtod(std::string(line.substr(name_with_labels.size() + 1)).c_str(),
                               nullptr);
        }
    }
    return std::nullopt;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
    const auto deadline = clock::now() + timeout;
    while (true) {
        if (pred()) return true;
        if (clock::now() >= deadline) return false;
        std::this_thread::sleep_for(5ms);
    }
}

http_response http_request(const std::string& host, std::uint16_t port, std::string_view method,
                           std::string_view target, std::string_view body,
                           const std::vector<std::string>& extra_headers) {
    auto c = fake_haproxy::connect_tcp(host, port);
    std::string req = std::string(method) + " " + std::string(target) +
                      " HTTP/1.0\r\nHost: " + host + "\r\nConnection: close\r\n";
    for (const auto& h : extra_headers)
        req += h + "\r\n";
    if (!body.empty() || method == "POST") {
        req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    }
    req += "\r\n";
    req += body;
    c.send_raw({reinterpret_cast<const std::uint8_t*>(req.data()), req.size()});
    std::string raw;
    const auto deadline = clock::now() + default_timeout;
    while (clock::now() < deadline) {
        pollfd p{c.fd(), POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        char buf[8192];
        const ssize_t n = ::recv(c.fd(), buf, sizeof buf, 0);
        if (n <= 0) break;
        raw.append(buf, static_cast<std::size_t>(n));
    }
    http_response r;
    const std::size_t sp = raw.find(' ');
    const std::size_t end = raw.find("\r\n\r\n");
    if (!raw.starts_with("HTTP/") || sp == std::string::npos || end == std::string::npos) {
        throw std::runtime_error("bad HTTP response: '" + raw + "'");
    }
    r.status = std::atoi(raw.c_str() + sp + 1);
    r.headers = raw.substr(0, end);
    r.body = raw.substr(end + 4);
    return r;
}

// ---- child process --------------------------------------------------------------------------

child_process::child_process(const std::vector<std::string>& argv) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
    std::vector<char*> args;
    for (const auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ < 0) {
        ::close(fds[0]);
        ::close(fds[1]);
        throw std::runtime_error("fork failed");
    }
    if (pid_ == 0) {
        // Child: only async-signal-safe calls until exec.
        ::dup2(fds[1], 2);
        const int devnull = ::open("/dev/null", O_WRONLY);
        if (devnull >= 0) ::dup2(devnull, 1);
        // The test runner may block signals in its threads: the agent needs them.
        sigset_t none;
        sigemptyset(&none);
        ::sigprocmask(SIG_SETMASK, &none, nullptr);
        ::execv(args[0], args.data());
        ::_exit(127);
    }
    ::close(fds[1]);
    err_fd_ = fds[0];
}

child_process::~child_process() {
    if (running()) {
        ::kill(pid_, SIGKILL);
        (void)wait_exit(5000ms);
    }
    if (err_fd_ >= 0) ::close(err_fd_);
}

void child_process::drain_stderr(std::chrono::milliseconds timeout) {
    if (err_fd_ < 0) return;
    pollfd p{err_fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return;
    char buf[4096];
    const ssize_t n = ::read(err_fd_, buf, sizeof buf);
    if (n > 0) {
        output_.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0) {
        ::close(err_fd_);
        err_fd_ = -1;
    }
}

std::optional<std::string> child_process::wait_for_line(std::string_view needle,
                                                        std::chrono::milliseconds timeout) {
    const auto deadline = clock::now() + timeout;
    while (true) {
        // Look at complete lines not scanned yet.
        while (true) {
            const std::size_t eol = output_.find('\n', scanned_);
            if (eol == std::string::npos) break;
            std::string line = output_.substr(scanned_, eol - scanned_);
            scanned_ = eol + 1;
            if (line.find(needle) != std::string::npos) return line;
        }
        const auto now = clock::now();
        if (now >= deadline || err_fd_ < 0) return std::nullopt;
        drain_stderr(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) + 1ms);
    }
}

void child_process::signal(int sig) const noexcept {
    if (pid_ > 0) ::kill(pid_, sig);
}

std::optional<int> child_process::wait_exit(std::chrono::milliseconds timeout) {
    if (exit_status_) return exit_status_;
    const auto deadline = clock::now() + timeout;
    while (true) {
        int status = 0;
        const pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            // Collect the last lines it wrote (until EOF, bounded).
            const auto drain_until = clock::now() + 1000ms;
            while (err_fd_ >= 0 && clock::now() < drain_until)
                drain_stderr(50ms);
            return exit_status_;
        }
        if (r < 0) return std::nullopt;
        if (clock::now() >= deadline) return std::nullopt;
        drain_stderr(5ms);  // keeps the pipe from filling while we wait
        std::this_thread::sleep_for(1ms);
    }
}

bool child_process::running() {
    if (exit_status_ || pid_ <= 0) return false;
    return !wait_exit(0ms).has_value();
}

std::size_t raise_fd_limit(std::size_t wanted) {
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
    if (rl.rlim_cur < wanted) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= wanted ? wanted : rl.rlim_max;
        ::setrlimit(RLIMIT_NOFILE, &rl);
        ::getrlimit(RLIMIT_NOFILE, &rl);
    }
    return static_cast<std::size_t>(rl.rlim_cur);
}

}  // namespace spoa::testing
