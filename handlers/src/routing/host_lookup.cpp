#include "spoa/handlers/routing/host_lookup.hpp"

#include <netdb.h>
#include <netinet/in.h>

#include <array>
#include <cstring>

namespace spoa::handlers::routing {
namespace {

/// Owned by libuv from uv_getaddrinfo() to its callback (loop thread), which deletes it.
struct getaddrinfo_req {
    uv_getaddrinfo_t req{};
    host_lookup::done_fn done;
};

std::vector<ip_address> addresses_of(const addrinfo* list) {
    std::vector<ip_address> out;
    for (const addrinfo* a = list; a; a = a->ai_next) {
        ip_address ip;
        if (a->ai_family == AF_INET) {
            std::array<std::uint8_t, 4> b{};
            std::memcpy(b.data(), &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr, 4);
            ip = ip_address::v4(b);
        } else if (a->ai_family == AF_INET6) {
            std::array<std::uint8_t, 16> b{};
            std::memcpy(b.data(), &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr,
                        16);
            ip = ip_address::v6(b);
        } else {
            continue;
        }
        // SOCK_STREAM hints give one entry per address, but a resolver may still repeat one.
        bool seen = false;
        for (const auto& o : out)
            seen = seen || o == ip;
        if (!seen) out.push_back(ip);
    }
    return out;
}

class system_lookup final : public host_lookup {
  public:
    void lookup(uv_loop_t* loop, const std::string& host, done_fn done) override {
        auto* r = new getaddrinfo_req;
        r->done = std::move(done);
        r->req.data = r;
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        const int rc = uv_getaddrinfo(loop, &r->req, on_done, host.c_str(), nullptr, &hints);
        if (rc != 0) {
            auto fn = std::move(r->done);
            delete r;
            fn({{}, uv_strerror(rc)});
        }
    }

  private:
    static void on_done(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept {
        auto* r = static_cast<getaddrinfo_req*>(req->data);
        auto fn = std::move(r->done);
        delete r;
        host_lookup_result out;
        try {
            if (status == 0) out.addresses = addresses_of(res);
            if (status != 0)
                out.error = uv_strerror(status);
            else if (out.addresses.empty())
                out.error = "no IPv4 or IPv6 address";
        } catch (...) {
            out.error = "out of memory";
        }
        if (res) uv_freeaddrinfo(res);
        try {
            fn(std::move(out));
        } catch (...) {
            // done_fn reports its own errors; nothing may cross into libuv.
        }
    }
};

}  // namespace

std::shared_ptr<host_lookup> system_host_lookup() {
    return std::make_shared<system_lookup>();
}

}  // namespace spoa::handlers::routing
