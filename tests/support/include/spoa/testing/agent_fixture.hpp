#pragma once
/// Helpers to run an in-process spoa::agent on 127.0.0.1 port 0 for loopback tests, to read its
/// metrics, to make raw HTTP requests to its admin endpoint, and to run a child process.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spoa/agent/agent.hpp"
#include "spoa/testing/fake_haproxy.hpp"

namespace spoa::testing {

/// A config for tests: one TCP listener on 127.0.0.1:0, one loop thread, no signal handling,
/// short drain and linger so that a test never waits long.
[[nodiscard]] agent_config test_config();

/// An agent started by the test. Register handlers on `agent()` before `start()`. The
/// destructor stops it at once (no drain) and waits for its threads.
class test_agent {
  public:
    explicit test_agent(agent_config cfg = test_config());
    ~test_agent();
    test_agent(const test_agent&) = delete;
    test_agent& operator=(const test_agent&) = delete;

    [[nodiscard]] spoa::agent& agent() noexcept { return agent_; }
    /// agent.start() and records the bound TCP port (the first TCP listener).
    void start();
    [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
    /// Connects a fake HAProxy to the first TCP listener.
    [[nodiscard]] fake_haproxy connect() const;
    /// Connects and completes a HELLO (V3 defaults unless `opts` says otherwise).
    [[nodiscard]] fake_haproxy connect_ready(const hello_options& opts = {}) const;
    /// The /metrics text (rendered in process, no HTTP).
    [[nodiscard]] std::string metrics() const;
    /// Value of the sample `name_with_labels` (e.g. `spoa_frames_received_total{type="NOTIFY"}`)
    /// in the metrics text, or nullopt when absent.
    [[nodiscard]] std::optional<double> metric(std::string_view name_with_labels) const;
    /// Polls `metric` until it equals `value` (true) or the timeout passes (false).
    [[nodiscard]] bool wait_metric(std::string_view name_with_labels, double value,
                                   std::chrono::milliseconds timeout = default_timeout) const;
    /// stop(drain) then wait(); idempotent.
    void stop(bool drain = false);

  private:
    mutable spoa::agent agent_;  ///< metrics() is not const in the agent API
    std::uint16_t port_ = 0;
    bool stopped_ = false;
};

/// The value of sample `name_with_labels` in Prometheus text `text`.
[[nodiscard]] std::optional<double> find_metric(std::string_view text,
                                                std::string_view name_with_labels);

/// Polls `pred` every few milliseconds until it is true (returns true) or `timeout` passes.
[[nodiscard]] bool wait_until(const std::function<bool()>& pred,
                              std::chrono::milliseconds timeout = default_timeout);

struct http_response {
    int status = 0;
    std::string headers;
    std::string body;
};

/// One HTTP/1.0 request over a raw TCP connection; reads until the server closes.
/// `extra_headers`: whole header lines without their CRLF, e.g. "Authorization: Bearer x".
[[nodiscard]] http_response http_request(const std::string& host, std::uint16_t port,
                                         std::string_view method, std::string_view target,
                                         std::string_view body = {},
                                         const std::vector<std::string>& extra_headers = {});

/// A child process with its stderr captured through a pipe.
class child_process {
  public:
    /// fork + execv(argv[0], argv); stdout goes to /dev/null, stderr to a pipe.
    explicit child_process(const std::vector<std::string>& argv);
    ~child_process();
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;

    [[nodiscard]] pid_t pid() const noexcept { return pid_; }
    /// Reads stderr until a line containing `needle` arrives; returns that line, or nullopt on
    /// timeout or when the child closes stderr.
    [[nodiscard]] std::optional<std::string> wait_for_line(std::string_view needle,
                                                           std::chrono::milliseconds timeout);
    /// Everything read from stderr so far (for failure messages).
    [[nodiscard]] const std::string& output() const noexcept { return output_; }
    void signal(int sig) const noexcept;
    /// Waits for the exit; returns the exit status (or 128 + signal), nullopt on timeout.
    [[nodiscard]] std::optional<int> wait_exit(std::chrono::milliseconds timeout);
    /// True while the child has not exited.
    [[nodiscard]] bool running();

  private:
    void drain_stderr(std::chrono::milliseconds timeout);

    pid_t pid_ = -1;
    int err_fd_ = -1;
    std::string output_;
    std::size_t scanned_ = 0;
    std::optional<int> exit_status_;
};

/// Raises RLIMIT_NOFILE's soft limit to at least `wanted` (bounded by the hard limit); returns
/// the soft limit in effect afterwards.
std::size_t raise_fd_limit(std::size_t wanted);

}  // namespace spoa::testing
