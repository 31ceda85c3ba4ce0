#include "spoa/handlers/http_client.hpp"

#include <curl/curl.h>

#include <map>
#include <mutex>
#include <stdexcept>

namespace spoa::handlers {
namespace {

constexpr std::size_t max_body = 64 * 1024;

void global_init() {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

struct http_client::impl {
    struct transfer {
        CURL* easy = nullptr;
        curl_slist* headers = nullptr;
        http_request req;
        http_response resp;
        std::function<void(http_response)> done;
        char error[CURL_ERROR_SIZE] = {};
    };
    /// One libuv poll handle per socket curl asks us to watch.
    struct socket_watch {
        uv_poll_t poll;
        curl_socket_t fd;
        impl* owner;
    };

    service_loop& loop;
    CURLM* multi = nullptr;
    uv_timer_t timer{};
    std::map<CURL*, std::unique_ptr<transfer>> transfers;
    bool closed = false;

    explicit impl(service_loop& l) : loop(l) {
        global_init();
        multi = curl_multi_init();
        if (!multi) throw std::runtime_error("curl_multi_init failed");
        uv_timer_init(loop.loop(), &timer);
        timer.data = this;
        curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &impl::on_socket);
        curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
        curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &impl::on_timer);
        curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
    }

    void shutdown() {
        if (closed) return;
        closed = true;
        for (auto& [easy, t] : transfers) {
            curl_multi_remove_handle(multi, easy);
            curl_easy_cleanup(easy);
            curl_slist_free_all(t->headers);
            t->resp.error = "agent stopping";
            if (t->done) t->done(std::move(t->resp));
        }
        transfers.clear();
        curl_multi_cleanup(multi);
        multi = nullptr;
        uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
    }

    static int on_socket(CURL*, curl_socket_t fd, int what, void* userp, void* socketp) {
        auto* self = static_cast<impl*>(userp);
        auto* w = static_cast<socket_watch*>(socketp);
        if (what == CURL_POLL_REMOVE) {
            if (w) {
                uv_poll_stop(&w->poll);
                uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), [](uv_handle_t* h) noexcept {
                    delete static_cast<socket_watch*>(h->data);
                });
                curl_multi_assign(self->multi, fd, nullptr);
            }
            return 0;
        }
        if (!w) {
            w = new socket_watch{{}, fd, self};
            uv_poll_init_socket(self->loop.loop(), &w->poll, fd);
            w->poll.data = w;
            curl_multi_assign(self->multi, fd, w);
        }
        int events = 0;
        if (what & CURL_POLL_IN) events |= UV_READABLE;
        if (what & CURL_POLL_OUT) events |= UV_WRITABLE;
        uv_poll_start(&w->poll, events, [](uv_poll_t* p, int status, int ev) noexcept {
            auto* watch = static_cast<socket_watch*>(p->data);
            int flags = 0;
            if (status < 0) flags = CURL_CSELECT_ERR;
            if (ev & UV_READABLE) flags |= CURL_CSELECT_IN;
            if (ev & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
            watch->owner->act(watch->fd, flags);
        });
        return 0;
    }

    static int on_timer(CURLM*, long timeout_ms, void* userp) {
        auto* self = static_cast<impl*>(userp);
        if (timeout_ms < 0) {
            uv_timer_stop(&self->timer);
            return 0;
        }
        // curl asks for 0 to be called "as soon as possible": a 0 ms libuv timer does that
        // without recursing into curl from inside this callback.
        uv_timer_start(
            &self->timer,
            [](uv_timer_t* t) noexcept {
                static_cast<impl*>(t->data)->act(CURL_SOCKET_TIMEOUT, 0);
            },
            static_cast<std::uint64_t>(timeout_ms), 0);
        return 0;
    }

    void act(curl_socket_t fd, int flags) {
        if (closed) return;
        int running = 0;
        curl_multi_socket_action(multi, fd, flags, &running);
        finish_done();
    }

    void finish_done() {
        int left = 0;
        while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
            if (msg->msg != CURLMSG_DONE) continue;
            CURL* easy = msg->easy_handle;
            const CURLcode rc = msg->data.result;
            auto it = transfers.find(easy);
            if (it == transfers.end()) continue;
            auto t = std::move(it->second);
            transfers.erase(it);
            if (rc == CURLE_OK) {
                curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &t->resp.status);
            } else {
                t->resp.error = t->error[0] ? t->error : curl_easy_strerror(rc);
            }
            curl_multi_remove_handle(multi, easy);
            curl_easy_cleanup(easy);
            curl_slist_free_all(t->headers);
            if (t->done) t->done(std::move(t->resp));
        }
    }

    static std::size_t on_body(char* data, std::size_t size, std::size_t n, void* userp) {
        auto* t = static_cast<transfer*>(userp);
        const std::size_t bytes = size * n;
        if (t->resp.body.size() < max_body) {
            t->resp.body.append(data, std::min(bytes, max_body - t->resp.body.size()));
        }
        return bytes;
    }

    void send(http_request req, std::function<void(http_response)> done) {
        if (closed) {
            done(http_response{0, {}, "agent stopping"});
            return;
        }
        auto t = std::make_unique<transfer>();
        t->req = std::move(req);
        t->done = std::move(done);
        CURL* easy = curl_easy_init();
        if (!easy) {
            t->resp.error = "curl_easy_init failed";
            t->done(std::move(t->resp));
            return;
        }
        t->easy = easy;
        curl_easy_setopt(easy, CURLOPT_URL, t->req.url.c_str());
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, t->req.method.c_str());
        if (t->req.method == "HEAD") curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
        if (!t->req.body.empty() || t->req.method == "POST" || t->req.method == "PUT") {
            curl_easy_setopt(easy, CURLOPT_POSTFIELDS, t->req.body.c_str());
            curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(t->req.body.size()));
        }
        for (const auto& h : t->req.headers)
            t->headers = curl_slist_append(t->headers, h.c_str());
        if (t->headers) curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers);
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(t->req.timeout.count()));
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &impl::on_body);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, t.get());
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->error);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, t.get());
        // No redirects, no proxies from the environment: the URL is exactly what was configured.
        curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(easy, CURLOPT_PROXY, "");
        transfers.emplace(easy, std::move(t));
        curl_multi_add_handle(multi, easy);
    }
};

http_client::http_client(service_loop& loop) : impl_(std::make_shared<impl>(loop)) {
    loop.at_stop([weak = std::weak_ptr<impl>(impl_)] {
        if (auto p = weak.lock()) p->shutdown();
    });
}

http_client::~http_client() {
    // Normally already shut down by the loop's at_stop.
    if (impl_) impl_->shutdown();
}

void http_client::send(http_request req, std::function<void(http_response)> done) {
    impl_->send(std::move(req), std::move(done));
}

}  // namespace spoa::handlers
