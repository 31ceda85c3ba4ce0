#pragma once
/// Helpers for the remote resolver tests: the Python reference control plane as a child process
/// (with its admin channel), a scriptable fake control plane on raw sockets, and synchronous
/// wrappers around the asynchronous resolver API. Every socket is on 127.0.0.1 with a port the
/// kernel picked, so ctest -j works.

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "spoa/handlers/routing/resolver.hpp"

namespace spoa::remote_test {

using namespace std::chrono_literals;
namespace routing = handlers::routing;

/// True when SPOA_TEST_PYTHON can run the reference server (python3-msgpack installed).
[[nodiscard]] bool python_available();

/// A private scratch directory, removed with its files by the destructor.
class temp_dir {
  public:
    temp_dir();
    ~temp_dir();
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    [[nodiscard]] const std::string& path() const noexcept { return path_; }
    /// Writes `content` to `name` inside the directory; returns the full path.
    std::string write(const std::string& name, const std::string& content) const;

  private:
    std::string path_;
};

/// spoa_control_plane.py, started with `--listen <listen> --admin 127.0.0.1:0 --routes <file>`
/// plus `extra`. The constructor waits for its "ready" line (REQUIREs it).
class control_plane {
  public:
    control_plane(const std::string& routes_file, const std::string& listen = "127.0.0.1:0",
                  std::vector<std::string> extra = {});
    ~control_plane();  ///< SIGTERM, then SIGKILL if it does not end
    control_plane(const control_plane&) = delete;
    control_plane& operator=(const control_plane&) = delete;

    /// The bound agent address (host:port or unix:/path), as spoa::listen_address::parse takes.
    [[nodiscard]] const std::string& address() const noexcept { return listen_; }
    /// Sends one admin command line; returns the JSON reply line (REQUIREs an answer).
    std::string admin(const std::string& line) const;
    /// How many times `method` was called for "<protocol>/<id>" (from `stats`).
    [[nodiscard]] long count(const std::string& method, const std::string& key) const;
    /// Kills the process (SIGKILL: a crash) and waits for it.
    void kill();

  private:
    pid_t pid_ = -1;
    std::string listen_;
    std::string admin_;
};

/// A fake control plane: accepts connections (on 127.0.0.1:0 unless told) and runs `script(fd,
/// index)` for each (index = 0, 1, ... in accept order) on its own thread, with a blocking socket.
/// For tests that need bytes no correct server would send.
class fake_server {
  public:
    using script = std::function<void(int fd, int index)>;
    explicit fake_server(script s);
    /// Listens on `host` (numeric IPv4 or IPv6) and `port` (0: the kernel picks one), e.g. the
    /// port of a server that went away, on another loopback address.
    fake_server(script s, const std::string& host, std::uint16_t port = 0);
    ~fake_server();
    fake_server(const fake_server&) = delete;
    fake_server& operator=(const fake_server&) = delete;

    [[nodiscard]] std::string address() const;
    [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
    [[nodiscard]] int accepted() const noexcept { return accepted_.load(); }

  private:
    int listen_fd_ = -1;
    std::string host_;
    std::uint16_t port_ = 0;
    script script_;
    std::atomic<bool> stop_{false};
    std::atomic<int> accepted_{0};
    std::thread acceptor_;
    std::vector<std::thread> workers_;
};

/// One msgpack-RPC request as a fake server reads it.
struct rpc_request {
    std::uint32_t msgid = 0;
    std::string method;
    std::string id;  ///< params[0].id
};

/// Reads the next request (skipping notifications) within `timeout`; nullopt on EOF/timeout.
[[nodiscard]] std::optional<rpc_request> read_request(int fd, std::string& buffer,
                                                      std::chrono::milliseconds timeout = 3s);
/// Waits for the peer to close (true) within `timeout`, discarding what it sends.
[[nodiscard]] bool wait_closed(int fd, std::chrono::milliseconds timeout = 3s);
/// Sends all bytes (MSG_NOSIGNAL).
void send_all(int fd, const std::string& bytes);
/// `[1, msgid, nil, {endpoints: [endpoint]}]`
[[nodiscard]] std::string encode_route_response(std::uint32_t msgid, const std::string& endpoint);

/// Calls resolve and waits for the answer; nullopt if it never came within `timeout`.
[[nodiscard]] std::optional<routing::resolve_result> resolve_sync(
    routing::resolver& r, const std::string& id, const routing::resolve_context& ctx = {},
    std::chrono::milliseconds timeout = 5s);
[[nodiscard]] std::optional<std::optional<routing::resolve_error>> wake_sync(
    routing::resolver& r, const std::string& id, const routing::resolve_context& ctx = {},
    std::chrono::milliseconds timeout = 5s);

/// Polls `cond` every few ms until true (true) or the timeout (false).
[[nodiscard]] bool eventually(const std::function<bool()>& cond,
                              std::chrono::milliseconds timeout = 5s);

}  // namespace spoa::remote_test
