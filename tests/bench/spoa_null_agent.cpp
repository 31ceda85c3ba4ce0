/// spoa_null_agent: a do-nothing SPOP server, the ceiling the agent benchmark compares against.
///
/// Same threading model as spoa-agent: one epoll loop per thread, each with its own listening
/// socket on the same port (SO_REUSEPORT), so the kernel spreads connections over the threads.
/// It answers the first frame of a connection with a fixed AGENT-HELLO (protocol/README.md §11.1
/// V4: version 2.0, max-frame-size 16380, pipelining) without looking at it; then, for each frame,
/// it reads the 4-byte length, skips type and flags, copies the two id varints verbatim and
/// answers a NOTIFY with an empty ACK `00 00 00 LEN 67 00 00 00 01 <sid> <fid>`. Nothing else
/// is decoded. The ACKs of one read leave in one write, like the agent's per-iteration flush.
///
///   spoa_null_agent --listen 127.0.0.1:PORT [--threads N]
///
/// Stops on SIGINT/SIGTERM.

#include <signal.h>
#include <sys/epoll.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_net.hpp"

namespace {

std::atomic<bool> stop_requested{false};

extern "C" void on_signal(int) {
    stop_requested.store(true);
}

/// protocol/README.md §11.1 V4, whole frame.
constexpr std::uint8_t agent_hello[] = {
    0x00, 0x00, 0x00, 0x40, 0x65, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x07, 0x76, 0x65,
    0x72, 0x73, 0x69, 0x6f, 0x6e, 0x08, 0x03, 0x32, 0x2e, 0x30, 0x0e, 0x6d, 0x61, 0x78,
    0x2d, 0x66, 0x72, 0x61, 0x6d, 0x65, 0x2d, 0x73, 0x69, 0x7a, 0x65, 0x03, 0xfc, 0xf0,
    0x06, 0x0c, 0x63, 0x61, 0x70, 0x61, 0x62, 0x69, 0x6c, 0x69, 0x74, 0x69, 0x65, 0x73,
    0x08, 0x0a, 0x70, 0x69, 0x70, 0x65, 0x6c, 0x69, 0x6e, 0x69, 0x6e, 0x67};

constexpr std::uint32_t max_frame = 16380;
constexpr std::uint8_t type_notify = 3;
constexpr std::uint8_t type_ack = 103;

/// Bytes of the varint at `p` (at most `n` available), 0 if it is cut or longer than 10 bytes.
std::size_t varint_bytes(const std::uint8_t* p, std::size_t n) noexcept {
    if (n == 0) return 0;
    if (p[0] < 240) return 1;
    for (std::size_t i = 1; i < n && i < 10; ++i) {
        if (p[i] < 128) return i + 1;
    }
    return 0;
}

struct connection {
    int fd = -1;
    bool hello_done = false;
    bool want_out = false;
    bool dirty = false;
    std::vector<std::uint8_t> partial;
    std::vector<std::uint8_t> out;
    std::size_t out_off = 0;
};

class loop {
  public:
    explicit loop(const sockaddr_in& addr) {
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        const int one = 1;
        setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        if (bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
            listen(listen_fd_, 4096) != 0) {
            std::perror("spoa_null_agent: bind/listen");
            std::exit(1);
        }
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = nullptr;  // the listener
        epoll_ctl(ep_, EPOLL_CTL_ADD, listen_fd_, &ev);
        read_buf_.resize(256 * 1024);
        events_.resize(1024);
    }
    ~loop() {
        for (auto& c : conns_) {
            if (c && c->fd >= 0) ::close(c->fd);
        }
        ::close(listen_fd_);
        ::close(ep_);
    }
    loop(const loop&) = delete;
    loop& operator=(const loop&) = delete;

    void run() {
        while (!stop_requested.load()) {
            const int n = epoll_wait(ep_, events_.data(), static_cast<int>(events_.size()), 200);
            for (int i = 0; i < n; ++i) {
                const epoll_event& ev = events_[static_cast<std::size_t>(i)];
                if (ev.data.ptr == nullptr) {
                    accept_all();
                    continue;
                }
                auto& c = *static_cast<connection*>(ev.data.ptr);
                if (c.fd < 0) continue;
                if ((ev.events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) on_readable(c);
                if (c.fd >= 0 && (ev.events & EPOLLOUT) != 0) flush(c);
            }
            for (connection* c : dirty_) {
                c->dirty = false;
                if (c->fd >= 0 && !c->want_out) flush(*c);
            }
            dirty_.clear();
            // Closed connections are freed here, after every pointer to them was used.
            for (connection* c : dead_) {
                for (auto& owned : conns_) {
                    if (owned.get() == c) {
                        owned = std::move(conns_.back());
                        conns_.pop_back();
                        break;
                    }
                }
            }
            dead_.clear();
        }
    }

  private:
    void accept_all() {
        for (;;) {
            const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) return;
            spoa::bench::set_nodelay(fd);
            auto c = std::make_unique<connection>();
            c->fd = fd;
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.ptr = c.get();
            epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
            conns_.push_back(std::move(c));
        }
    }

    void close_conn(connection& c) {
        if (c.fd < 0) return;
        epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
        ::close(c.fd);
        c.fd = -1;
        dead_.push_back(&c);
    }

    void set_out(connection& c, bool on) {
        epoll_event ev{};
        ev.events = on ? EPOLLIN | EPOLLOUT : EPOLLIN;
        ev.data.ptr = &c;
        epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
        c.want_out = on;
    }

    void flush(connection& c) {
        while (c.out_off < c.out.size()) {
            const ssize_t n =
                ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
            if (n > 0) {
                c.out_off += static_cast<std::size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!c.want_out) set_out(c, true);
                return;
            }
            close_conn(c);
            return;
        }
        c.out.clear();
        c.out_off = 0;
        if (c.want_out) set_out(c, false);
    }

    void on_readable(connection& c) {
        for (;;) {
            const ssize_t n = ::recv(c.fd, read_buf_.data(), read_buf_.size(), 0);
            if (n > 0) {
                const auto len = static_cast<std::size_t>(n);
                if (c.partial.empty()) {
                    const std::size_t used = answer(c, read_buf_.data(), len);
                    if (c.fd < 0) return;
                    c.partial.assign(read_buf_.data() + used, read_buf_.data() + len);
                } else {
                    c.partial.insert(c.partial.end(), read_buf_.data(), read_buf_.data() + len);
                    const std::size_t used = answer(c, c.partial.data(), c.partial.size());
                    if (c.fd < 0) return;
                    c.partial.erase(c.partial.begin(),
                                    c.partial.begin() + static_cast<std::ptrdiff_t>(used));
                }
                if (!c.dirty && !c.out.empty()) {
                    c.dirty = true;
                    dirty_.push_back(&c);
                }
                if (len < read_buf_.size()) return;
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
            close_conn(c);
            return;
        }
    }

    /// Answers every whole frame in [p, p+n); returns the bytes used.
    std::size_t answer(connection& c, const std::uint8_t* p, std::size_t n) {
        std::size_t off = 0;
        while (n - off >= 4) {
            const std::uint8_t* f = p + off;
            const std::uint32_t len = (std::uint32_t{f[0]} << 24) | (std::uint32_t{f[1]} << 16) |
                                      (std::uint32_t{f[2]} << 8) | std::uint32_t{f[3]};
            if (len < 7 || len > max_frame) {
                close_conn(c);
                return off;
            }
            if (n - off < 4 + std::size_t{len}) break;
            off += 4 + std::size_t{len};
            if (!c.hello_done) {
                c.hello_done = true;
                c.out.insert(c.out.end(), std::begin(agent_hello), std::end(agent_hello));
                continue;
            }
            if (f[4] != type_notify) continue;  // a DISCONNECT: the peer closes next
            const std::uint8_t* ids = f + 9;
            const std::size_t room = len - 5;
            const std::size_t sid = varint_bytes(ids, room);
            const std::size_t fid = sid == 0 ? 0 : varint_bytes(ids + sid, room - sid);
            if (fid == 0) {
                close_conn(c);
                return off;
            }
            const std::uint32_t ack_len = static_cast<std::uint32_t>(5 + sid + fid);
            const std::uint8_t head[9] = {0, 0, 0, static_cast<std::uint8_t>(ack_len), type_ack, 0,
                                          0, 0, 1};
            c.out.insert(c.out.end(), head, head + 9);
            c.out.insert(c.out.end(), ids, ids + sid + fid);
        }
        return off;
    }

    int ep_ = -1;
    int listen_fd_ = -1;
    std::vector<std::unique_ptr<connection>> conns_;
    std::vector<connection*> dirty_;
    std::vector<connection*> dead_;
    std::vector<std::uint8_t> read_buf_;
    std::vector<epoll_event> events_;
};

}  // namespace

int main(int argc, char** argv) {
    spoa::bench::arg_parser args(argc, argv);
    std::string listen = "127.0.0.1:12346";
    unsigned threads = 2;
    args.get("--listen", listen);
    args.get("--threads", threads);
    sockaddr_in addr{};
    if (!args.unused().empty() || !spoa::bench::parse_endpoint(listen, addr) || threads < 1 ||
        threads > 64) {
        std::fprintf(stderr, "usage: spoa_null_agent --listen HOST:PORT [--threads N]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);

    std::vector<std::unique_ptr<loop>> loops;
    for (unsigned t = 0; t < threads; ++t)
        loops.push_back(std::make_unique<loop>(addr));
    std::vector<std::thread> workers;
    for (unsigned t = 1; t < threads; ++t)
        workers.emplace_back([&loops, t] { loops[t]->run(); });
    loops[0]->run();
    for (auto& w : workers)
        w.join();
    return 0;
}
