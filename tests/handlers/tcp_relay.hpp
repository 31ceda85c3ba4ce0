#pragma once
/// A loopback TCP relay for tests: clients connect to port(), each connection is relayed to
/// 127.0.0.1:target. mute_subscribers() stops relaying, from the server to the client, on the
/// connections whose client has sent a SUBSCRIBE so far: their sockets stay open and silent, as a
/// connection through a dead network path does (nothing closes, nothing arrives).
///
/// Threads: one accepting thread and two per connection (one per direction), all ended and
/// joined by the destructor; mute_subscribers() and connections() from any thread.

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

namespace spoa::handlers::routing::test {

class tcp_relay {
  public:
    explicit tcp_relay(std::uint16_t target) : target_(target) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a = loopback(0);
        socklen_t len = sizeof a;
        if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
            ::listen(listen_fd_, 64) != 0 ||
            ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
            throw std::runtime_error("tcp_relay: cannot listen");
        }
        port_ = ntohs(a.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }
    ~tcp_relay() {
        stopping_ = true;
        acceptor_.join();
        ::close(listen_fd_);
        std::lock_guard lock(mutex_);
        for (auto& l : links_) {
            for (auto& t : l->pumps)
                t.join();
            ::close(l->client);
            ::close(l->server);
        }
    }
    tcp_relay(const tcp_relay&) = delete;
    tcp_relay& operator=(const tcp_relay&) = delete;

    [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
    void mute_subscribers() {
        std::lock_guard lock(mutex_);
        for (auto& l : links_) {
            if (l->subscriber) l->muted = true;
        }
    }
    [[nodiscard]] std::size_t connections() const {
        std::lock_guard lock(mutex_);
        return links_.size();
    }

  private:
    struct link {
        int client = -1;
        int server = -1;
        std::atomic<bool> subscriber{false};
        std::atomic<bool> muted{false};
        std::vector<std::thread> pumps;
    };

    static sockaddr_in loopback(std::uint16_t port) {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(port);
        return a;
    }

    /// Waits up to 50 ms for `fd` to be readable; false when stopping.
    bool readable(int fd) const {
        while (!stopping_) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 50) > 0) return true;
        }
        return false;
    }

    void accept_loop() {
        while (readable(listen_fd_)) {
            const int client = ::accept(listen_fd_, nullptr, nullptr);
            if (client < 0) continue;
            const int server = ::socket(AF_INET, SOCK_STREAM, 0);
            const sockaddr_in to = loopback(target_);
            if (::connect(server, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
                ::close(client);
                ::close(server);
                continue;
            }
            auto l = std::make_unique<link>();
            l->client = client;
            l->server = server;
            link* raw = l.get();
            std::lock_guard lock(mutex_);
            raw->pumps.emplace_back([this, raw] { pump(*raw, true); });
            raw->pumps.emplace_back([this, raw] { pump(*raw, false); });
            links_.push_back(std::move(l));
        }
    }

    void pump(link& l, bool to_server) {
        const int from = to_server ? l.client : l.server;
        const int to = to_server ? l.server : l.client;
        char buf[16384];
        while (readable(from)) {
            // A muted link reads nothing more from the server: the client hears nothing.
            if (!to_server && l.muted) {
                std::this_thread::sleep_for(std::chrono::milliseconds(10));
                continue;
            }
            const auto n = ::read(from, buf, sizeof buf);
            if (n <= 0) break;
            if (to_server && std::string_view(buf, static_cast<std::size_t>(n)).find("SUBSCRIBE") !=
                                 std::string_view::npos) {
                l.subscriber = true;
            }
            if (::write(to, buf, static_cast<std::size_t>(n)) != n) break;
        }
        ::shutdown(to, SHUT_WR);
    }

    std::uint16_t target_;
    std::uint16_t port_ = 0;
    int listen_fd_ = -1;
    std::atomic<bool> stopping_{false};
    std::thread acceptor_;
    mutable std::mutex mutex_;
    std::vector<std::unique_ptr<link>> links_;
};

}  // namespace spoa::handlers::routing::test
