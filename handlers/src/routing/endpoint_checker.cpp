#include "spoa/handlers/routing/endpoint_checker.hpp"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

namespace spoa::handlers::routing {
namespace {

/// One check in progress: the route, where each host's addresses go, and how many lookups are
/// still out.
struct check_job {
    route input;
    endpoint_checker::done_fn done;
    const ssrf_policy* policy = nullptr;
    endpoint_health* health = nullptr;
    std::vector<std::vector<checked_endpoint>> resolved;  ///< per host slot
    std::vector<const endpoint*> hosts;                   ///< per host slot
    std::optional<resolve_error> failure;
    std::size_t outstanding = 0;

    void finish() {
        if (failure) {
            done(nullptr, failure);
            return;
        }
        auto out = std::make_shared<checked_route>();
        std::size_t slot = 0;
        const auto take = [&](const std::vector<endpoint>& eps,
                              std::vector<checked_endpoint>& dst) {
            for (std::size_t i = 0; i < eps.size(); ++i, ++slot) {
                for (auto& c : resolved[slot])
                    dst.push_back(std::move(c));
            }
        };
        take(input.endpoints, out->endpoints);
        for (const auto& p : input.paths) {
            checked_path cp{p.prefix, {}};
            take(p.endpoints, cp.endpoints);
            out->paths.push_back(std::move(cp));
        }
        if (health) {
            for (auto& e : out->endpoints)
                e.health = health->state_of(e.address, e.port);
            for (auto& p : out->paths) {
                for (auto& e : p.endpoints)
                    e.health = health->state_of(e.address, e.port);
            }
        }
        out->metadata = std::move(input.metadata);
        out->state = input.state;
        out->timeout = input.timeout;
        done(std::move(out), std::nullopt);
    }

    /// Checks one address of host slot `i`; records the first refusal.
    void accept(std::size_t i, const ip_address& ip) {
        const endpoint& ep = *hosts[i];
        if (auto why = policy->check(ip, ep.port)) {
            if (!failure) {
                failure = resolve_error{
                    error_code::forbidden, "endpoint " + ep.to_string() + " refused: " + *why, {}};
            }
            return;
        }
        resolved[i].push_back({ip, ep.port, ep.host, nullptr, {}});
    }
};

struct lookup_req {
    uv_getaddrinfo_t req;
    std::shared_ptr<check_job> job;
    std::size_t slot;
};

}  // namespace

void endpoint_checker::check(route r, done_fn done) {
    auto job = std::make_shared<check_job>();
    job->input = std::move(r);
    job->done = std::move(done);
    job->policy = &policy_;
    job->health = health_;
    for (const auto& ep : job->input.endpoints)
        job->hosts.push_back(&ep);
    for (const auto& p : job->input.paths) {
        for (const auto& ep : p.endpoints)
            job->hosts.push_back(&ep);
    }
    job->resolved.resize(job->hosts.size());
    if (job->hosts.empty() && job->input.state == backend_state::ready) {
        job->failure = resolve_error{error_code::unavailable, "resolver returned no endpoint", {}};
    }
    for (std::size_t i = 0; i < job->hosts.size() && !job->failure; ++i) {
        const endpoint& ep = *job->hosts[i];
        if (auto ip = ip_address::parse(ep.host)) {
            job->accept(i, *ip);
            continue;
        }
        auto* lr = new lookup_req{{}, job, i};
        lr->req.data = lr;
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        const int rc = uv_getaddrinfo(
            loop_.loop(), &lr->req,
            [](uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept {
                auto* done_req = static_cast<lookup_req*>(req->data);
                auto pending = std::move(done_req->job);
                const std::size_t slot = done_req->slot;
                delete done_req;
                if (status != 0 || res == nullptr) {
                    if (!pending->failure) {
                        pending->failure =
                            resolve_error{error_code::unavailable,
                                          "cannot resolve " + pending->hosts[slot]->host + ": " +
                                              uv_strerror(status),
                                          {}};
                    }
                } else {
                    // Every address is checked: one refused address refuses the host, so a
                    // name mixing public and internal addresses cannot slip through.
                    for (addrinfo* a = res; a; a = a->ai_next) {
                        if (a->ai_family == AF_INET) {
                            const auto* sin = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
                            std::array<std::uint8_t, 4> b{};
                            std::memcpy(b.data(), &sin->sin_addr, 4);
                            pending->accept(slot, ip_address::v4(b));
                        } else if (a->ai_family == AF_INET6) {
                            const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
                            std::array<std::uint8_t, 16> b{};
                            std::memcpy(b.data(), &sin6->sin6_addr, 16);
                            pending->accept(slot, ip_address::v6(b));
                        }
                    }
                }
                if (res) uv_freeaddrinfo(res);
                if (--pending->outstanding == 0) pending->finish();
            },
            ep.host.c_str(), nullptr, &hints);
        if (rc != 0) {
            delete lr;
            job->failure = resolve_error{
                error_code::unavailable, "cannot resolve " + ep.host + ": " + uv_strerror(rc), {}};
            break;
        }
        ++job->outstanding;
    }
    if (job->outstanding == 0) job->finish();
}

}  // namespace spoa::handlers::routing
