#pragma once
/// Small helpers shared by the agent benchmark's load generator and null agent: raw sockets,
/// epoll, a monotonic clock and a minimal `--name value` command-line parser. Benchmark code only
/// (never linked into the library).

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace spoa::bench {

[[nodiscard]] inline std::uint64_t now_ns() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

/// CPU time of the whole process (every thread), in seconds.
[[nodiscard]] inline double process_cpu_s() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

/// Parses "a.b.c.d:port" (IPv4 only: the benchmark runs over loopback).
[[nodiscard]] inline bool parse_endpoint(std::string_view text, sockaddr_in& out) {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return false;
    const std::string host(text.substr(0, colon));
    unsigned port = 0;
    const auto p = text.substr(colon + 1);
    const auto r = std::from_chars(p.data(), p.data() + p.size(), port);
    if (r.ec != std::errc() || r.ptr != p.data() + p.size() || port > 65535) return false;
    std::memset(&out, 0, sizeof out);
    out.sin_family = AF_INET;
    out.sin_port = htons(static_cast<std::uint16_t>(port));
    return inet_pton(AF_INET, host.c_str(), &out.sin_addr) == 1;
}

inline bool set_nonblocking(int fd) noexcept {
    const int flags = fcntl(fd, F_GETFL, 0);
    return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

inline void set_nodelay(int fd) noexcept {
    const int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/// A tiny parser for `--name value` / `--name=value` / `--flag` arguments.
class arg_parser {
  public:
    arg_parser(int argc, char** argv) {
        for (int i = 1; i < argc; ++i)
            args_.emplace_back(argv[i]);
    }

    /// True if `--name` is present (as a flag).
    bool flag(std::string_view name) {
        for (std::size_t i = 0; i < args_.size(); ++i) {
            if (args_[i] == name) {
                used(i);
                return true;
            }
        }
        return false;
    }

    /// The value of `--name`, or nullptr.
    const char* value(std::string_view name) {
        for (std::size_t i = 0; i < args_.size(); ++i) {
            const std::string& a = args_[i];
            if (a == name && i + 1 < args_.size()) {
                used(i);
                used(i + 1);
                return args_[i + 1].c_str();
            }
            if (a.size() > name.size() && a.compare(0, name.size(), name) == 0 &&
                a[name.size()] == '=') {
                used(i);
                return a.c_str() + name.size() + 1;
            }
        }
        return nullptr;
    }

    bool get(std::string_view name, std::string& out) {
        const char* v = value(name);
        if (v) out = v;
        return v != nullptr;
    }
    bool get(std::string_view name, double& out) {
        const char* v = value(name);
        if (!v) return false;
        char* end = nullptr;
        out = std::strtod(v, &end);
        if (end == v || *end != '\0') bad(name, v);
        return true;
    }
    template <typename Int>
    bool get(std::string_view name, Int& out) {
        const char* v = value(name);
        if (!v) return false;
        const std::string_view s(v);
        const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
        if (r.ec != std::errc() || r.ptr != s.data() + s.size()) bad(name, v);
        return true;
    }

    /// Arguments nobody asked for (typos): reported by the caller.
    [[nodiscard]] std::vector<std::string> unused() const {
        std::vector<std::string> out;
        for (std::size_t i = 0; i < args_.size(); ++i) {
            if (i >= used_.size() || !used_[i]) out.push_back(args_[i]);
        }
        return out;
    }

  private:
    void used(std::size_t i) {
        if (used_.size() < args_.size()) used_.resize(args_.size(), false);
        used_[i] = true;
    }
    [[noreturn]] static void bad(std::string_view name, const char* v) {
        std::fprintf(stderr, "bad value for %.*s: '%s'\n", static_cast<int>(name.size()),
                     name.data(), v);
        std::exit(2);
    }

    std::vector<std::string> args_;
    std::vector<bool> used_;
};

}  // namespace spoa::bench
