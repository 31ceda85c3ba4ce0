#include "spoa/handlers/routing/feedback_log.hpp"

#include <spdlog/spdlog.h>

#include <charconv>
#include <stdexcept>

#include "spoa/handlers/routing/router.hpp"

namespace spoa::handlers::routing {
namespace {

std::uint64_t to_u64(std::string_view s) {
    std::uint64_t v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
}

}  // namespace

std::optional<feedback_event> parse_feedback_line(std::string_view line) {
    const auto start = line.find(" route=");
    if (start == std::string_view::npos) return std::nullopt;
    feedback_event ev;
    std::string_view rest = line.substr(start + 1);
    while (!rest.empty()) {
        const auto space = rest.find(' ');
        std::string_view token = rest.substr(0, space);
        rest = space == std::string_view::npos ? std::string_view{} : rest.substr(space + 1);
        const auto eq = token.find('=');
        if (eq == std::string_view::npos) continue;
        const std::string_view key = token.substr(0, eq);
        std::string_view value = token.substr(eq + 1);
        while (!value.empty() && (value.back() == '\n' || value.back() == '\r'))
            value.remove_suffix(1);
        if (key == "route") {
            ev.id = std::string(value);
        } else if (key == "proto") {
            if (const auto p = parse_app_protocol(value)) ev.proto = *p;
        } else if (key == "to") {
            // ip:port, the ip possibly IPv6 (HAProxy prints it bare): split at the last colon.
            const auto colon = value.rfind(':');
            if (colon != std::string_view::npos) {
                ev.ip = ip_address::parse(value.substr(0, colon));
                ev.port = static_cast<std::uint16_t>(to_u64(value.substr(colon + 1)));
            }
        } else if (key == "ts") {
            ev.termination = std::string(value);
        } else if (key == "in") {
            ev.bytes_in = to_u64(value);
        } else if (key == "out") {
            ev.bytes_out = to_u64(value);
        } else if (key == "dur") {
            ev.duration_ms = to_u64(value);
        }
    }
    if (ev.id.empty() || ev.id == "-") return std::nullopt;
    return ev;
}

feedback_log::feedback_log(handlers::service_loop& loop, router& r, resolver& res,
                           std::shared_ptr<spdlog::logger> log)
    : loop_(loop), router_(r), resolver_(res), log_(std::move(log)) {
    if (!log_) log_ = spdlog::default_logger();
}

feedback_log::~feedback_log() = default;

void feedback_log::listen(const listen_address& addr) {
    if (addr.type != listen_address::kind::tcp) {
        throw std::runtime_error("feedback log: only host:port (UDP) is supported");
    }
    sockaddr_storage ss{};
    if (uv_ip4_addr(addr.host.c_str(), addr.port, reinterpret_cast<sockaddr_in*>(&ss)) != 0 &&
        uv_ip6_addr(addr.host.c_str(), addr.port, reinterpret_cast<sockaddr_in6*>(&ss)) != 0) {
        throw std::runtime_error("feedback log: bad address " + addr.to_string());
    }
    udp_ = new uv_udp_t;
    uv_udp_init(loop_.loop(), udp_);
    udp_->data = this;
    if (const int rc = uv_udp_bind(udp_, reinterpret_cast<const sockaddr*>(&ss), UV_UDP_REUSEADDR);
        rc != 0) {
        uv_close(reinterpret_cast<uv_handle_t*>(udp_),
                 [](uv_handle_t* h) noexcept { delete reinterpret_cast<uv_udp_t*>(h); });
        udp_ = nullptr;
        throw std::runtime_error("feedback log: cannot bind " + addr.to_string() + ": " +
                                 uv_strerror(rc));
    }
    uv_udp_recv_start(
        udp_,
        [](uv_handle_t*, std::size_t, uv_buf_t* buf) noexcept {
            static thread_local char storage[65536];
            *buf = uv_buf_init(storage, sizeof storage);
        },
        [](uv_udp_t* h, ssize_t n, const uv_buf_t* buf, const sockaddr*, unsigned) noexcept {
            if (n <= 0) return;
            static_cast<feedback_log*>(h->data)->on_line({buf->base, static_cast<std::size_t>(n)});
        });
    uv_udp_t* handle = udp_;
    loop_.at_stop([handle] {
        uv_close(reinterpret_cast<uv_handle_t*>(handle),
                 [](uv_handle_t* h) noexcept { delete reinterpret_cast<uv_udp_t*>(h); });
    });
    log_->info("feedback log: listening on udp://{}", addr.to_string());
}

void feedback_log::on_line(std::string_view line) {
    const auto ev = parse_feedback_line(line);
    if (!ev) return;
    lines_.fetch_add(1, std::memory_order_relaxed);
    const std::string key = std::string(to_string(ev->proto)) + ":" + ev->id;
    if (ev->ip && ev->port != 0) {
        auto state = router_.health().state_of(*ev->ip, ev->port);
        if (ev->connect_failed()) {
            failures_.fetch_add(1, std::memory_order_relaxed);
            router_.report_connect_failure(key, *ev->ip, ev->port,
                                           "HAProxy could not connect (" + ev->termination + ")");
        } else {
            router_.health().report_success(*state);
        }
    }
    if (ev->proto != app_protocol::http) {
        resolver_.on_disconnect(ev->id,
                                disconnect_report{ev->bytes_in, ev->bytes_out,
                                                  std::chrono::milliseconds(ev->duration_ms)});
    }
}

}  // namespace spoa::handlers::routing
