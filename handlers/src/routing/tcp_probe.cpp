#include "spoa/handlers/routing/tcp_probe.hpp"

namespace spoa::handlers::routing {
namespace {

/// A TCP connect with a timeout, on the service loop.
struct tcp_probe {
    uv_tcp_t tcp;
    uv_connect_t req;
    uv_timer_t timer;
    std::function<void(bool, std::string)> done;
    int closing = 0;
    bool finished = false;

    void finish(bool ok, std::string why) {
        if (finished) return;
        finished = true;
        uv_timer_stop(&timer);
        auto cb = std::move(done);
        closing = 2;
        const auto on_close = [](uv_handle_t* h) noexcept {
            auto* p = static_cast<tcp_probe*>(h->data);
            if (--p->closing == 0) delete p;
        };
        uv_close(reinterpret_cast<uv_handle_t*>(&tcp), on_close);
        uv_close(reinterpret_cast<uv_handle_t*>(&timer), on_close);
        cb(ok, std::move(why));
    }
};

}  // namespace

void probe_tcp(uv_loop_t* loop, const ip_address& ip, std::uint16_t port,
               std::chrono::milliseconds timeout, std::function<void(bool, std::string)> done) {
    auto* p = new tcp_probe{};
    p->done = std::move(done);
    uv_tcp_init(loop, &p->tcp);
    uv_timer_init(loop, &p->timer);
    p->tcp.data = p->timer.data = p->req.data = p;
    sockaddr_storage ss{};
    if (ip.is_v4()) {
        uv_ip4_addr(ip.to_string().c_str(), port, reinterpret_cast<sockaddr_in*>(&ss));
    } else {
        uv_ip6_addr(ip.to_string().c_str(), port, reinterpret_cast<sockaddr_in6*>(&ss));
    }
    const int rc =
        uv_tcp_connect(&p->req, &p->tcp, reinterpret_cast<const sockaddr*>(&ss),
                       [](uv_connect_t* req, int status) noexcept {
                           auto* probe = static_cast<tcp_probe*>(req->data);
                           if (status == UV_ECANCELED) return;  // closed by finish()
                           probe->finish(status == 0, status == 0 ? "" : uv_strerror(status));
                       });
    if (rc != 0) {
        p->finish(false, uv_strerror(rc));
        return;
    }
    uv_timer_start(
        &p->timer,
        [](uv_timer_t* t) noexcept {
            static_cast<tcp_probe*>(t->data)->finish(false, "connect timeout");
        },
        static_cast<std::uint64_t>(timeout.count()), 0);
}

}  // namespace spoa::handlers::routing
