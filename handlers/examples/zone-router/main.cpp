// zone-router: routes every HTTP host under one DNS zone to one pool of backends, with a
// resolver of its own; spoa's routing service does the rest (route-http and the other route-*
// messages, the cache, SSRF checks, /metrics). Usage: zone-router LISTEN ZONE POOL-ENDPOINT
//   zone-router 127.0.0.1:12345 apps.test 127.0.0.1:8080
// Hosts outside the zone get a 404 (txn.route.status), as from any resolver.

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <memory>
#include <string>

#include "spoa/agent/agent.hpp"
#include "spoa/handlers/routing/service.hpp"

namespace {

class zone_resolver final : public spoa::handlers::routing::resolver {
  public:
    zone_resolver(std::string zone, spoa::handlers::routing::endpoint pool)
        : suffix_("." + std::move(zone)), pool_(std::move(pool)) {}

    void resolve(const std::string& id, const spoa::handlers::routing::resolve_context& /*ctx*/,
                 spoa::handlers::routing::resolve_callback done) override {
        if (!id.ends_with(suffix_)) {
            done(spoa::handlers::routing::resolve_error{
                spoa::handlers::routing::error_code::not_found,
                "not in zone " + suffix_.substr(1),
                {}});
            return;
        }
        spoa::handlers::routing::route r;
        r.endpoints = {pool_};
        done(std::move(r));
    }
    [[nodiscard]] std::string_view name() const noexcept override { return "zone"; }

  private:
    std::string suffix_;
    spoa::handlers::routing::endpoint pool_;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: zone-router LISTEN ZONE POOL-ENDPOINT\n");
        return 2;
    }
    spoa::agent_config cfg;
    cfg.listeners.push_back(spoa::listen_address::parse(argv[1]));
    cfg.logger = spdlog::stderr_logger_mt("zone-router");
    spoa::agent agent(cfg);

    spoa::handlers::routing::routing_config routing;  // defaults: 1 s cache, SSRF blocklist...
    routing.ssrf = spoa::handlers::routing::ssrf_policy::allowlist(
        {{*spoa::handlers::routing::cidr::parse("127.0.0.0/8"), "the pool is on this host"}});
    auto resolver =
        std::make_shared<zone_resolver>(argv[2], spoa::handlers::routing::endpoint::parse(argv[3]));
    spoa::handlers::routing::service service(resolver, routing, agent, cfg.logger);
    agent.run();  // until SIGTERM/SIGINT, then drains
}
