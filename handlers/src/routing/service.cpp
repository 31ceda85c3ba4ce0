#include "spoa/handlers/routing/service.hpp"

#include <spdlog/spdlog.h>

#include <future>
#include <stdexcept>

#include "spoa/handlers/routing/activity_exporter.hpp"
#include "spoa/handlers/routing/chain_resolver.hpp"
#include "spoa/handlers/routing/feedback_log.hpp"
#include "spoa/handlers/routing/invalidation_fanout.hpp"
#include "spoa/handlers/routing/invalidation_message.hpp"
#include "spoa/handlers/routing/redis_client.hpp"
#include "spoa/handlers/routing/redis_resolver.hpp"
#include "spoa/handlers/routing/remote_resolver.hpp"
#include "spoa/handlers/routing/router.hpp"
#include "spoa/handlers/routing/shared_route_tier.hpp"
#include "spoa/handlers/routing/static_resolver.hpp"
#include "spoa/handlers/routing/wake_lease.hpp"
#include "spoa/handlers/service_loop.hpp"

namespace spoa::handlers::routing {

namespace {
std::shared_ptr<spdlog::logger> silent_logger() {
    return std::make_shared<spdlog::logger>("routing");  // no sink
}

/// chain(a, chain(b, c)): each link asks the next only after a `not_found`.
template <typename Make>
std::shared_ptr<resolver> chain_of(const std::vector<routing_config::chain_link>& links,
                                   Make&& make) {
    if (links.size() < 2) throw std::runtime_error("a resolver chain needs two resolvers");
    std::shared_ptr<resolver> rest = make(links.back());
    for (auto it = links.rbegin() + 1; it != links.rend(); ++it)
        rest = std::make_shared<chain_resolver>(make(*it), std::move(rest));
    return rest;
}
}  // namespace

service::service(const routing_config& cfg, agent& a, std::shared_ptr<spdlog::logger> logger)
    : logger_(logger ? std::move(logger) : silent_logger()),
      loop_(std::make_shared<handlers::service_loop>()) {
    if (cfg.path.empty()) throw std::runtime_error("a routing service needs its route file");
    if (cfg.redis) redis_ = std::make_shared<redis_client>(*cfg.redis, loop_, logger_);
    static_routes_ = std::make_shared<static_resolver>(cfg.path);
    // static: the file's routes; remote: the control plane; redis: the routes a platform stores
    // in Redis; chain: those of cfg.chain in turn, the next for the ids the previous do not know.
    using link = routing_config::chain_link;
    auto source = [&](link l) -> std::shared_ptr<resolver> {
        switch (l) {
            case link::static_routes:
                return static_routes_;
            case link::remote:
                if (!cfg.remote) throw std::runtime_error("the remote resolver needs an address");
                remote_ = std::make_shared<remote_resolver>(*cfg.remote, loop_, logger_);
                return remote_;
            case link::redis:
                if (!redis_) throw std::runtime_error("the redis resolver needs a redis: section");
                routes_in_redis_ = true;
                return std::make_shared<redis_resolver>(redis_, logger_);
        }
        throw std::logic_error("unknown resolver");
    };
    using kind = routing_config::resolver_kind;
    std::shared_ptr<resolver> active;
    switch (cfg.resolver) {
        case kind::static_routes:
            active = source(link::static_routes);
            break;
        case kind::remote:
            active = source(link::remote);
            break;
        case kind::redis:
            active = source(link::redis);
            break;
        case kind::chain:
            active = chain_of(cfg.chain, source);
            break;
    }
    start(std::move(active), cfg, a);
    add_reload(cfg.path, a);
}

service::service(std::shared_ptr<resolver> own, const routing_config& cfg, agent& a,
                 std::shared_ptr<spdlog::logger> logger)
    : logger_(logger ? std::move(logger) : silent_logger()),
      loop_(std::make_shared<handlers::service_loop>()) {
    if (!own) throw std::invalid_argument("routing service: the resolver is null");
    if (cfg.redis) redis_ = std::make_shared<redis_client>(*cfg.redis, loop_, logger_);
    start(std::move(own), cfg, a);
}

service::~service() {
    // The agent has stopped deciding: what it counted since the last activity flush goes to
    // Redis now rather than being lost with the process.
    if (activity_ && !activity_->flush_before_stop(2 * redis_->options().command_timeout))
        logger_->warn("redis activity: the last counts may not have reached Redis at stop");
    // The loop's tasks use the router, the listener and the agent's histograms: they end first.
    // Answers it completes now find their connections gone.
    loop_->join();
    feedback_.reset();
    router_.reset();
}

void service::start(std::shared_ptr<resolver> active, const routing_config& cfg, agent& a) {
    router_ = std::make_unique<routing::router>(active, cfg.ssrf, cfg.router, loop_, logger_);
    if (cfg.redis) start_fleet(*cfg.redis, a);
    if (routes_in_redis_) {
        // Redis is then a source of routes, like a control plane: without it misses fail.
        a.readiness_check([redis = redis_]() -> std::optional<std::string> {
            if (redis->connected(redis_link::command)) return std::nullopt;
            return "redis resolver: Redis " + redis->options().address.to_string() + " unreachable";
        });
    }
    if (remote_) {
        // Control-plane pushes run on the service loop, which ends before the router; with a
        // fleet, the agent that got the push tells the others.
        remote_->set_invalidation_handler([this](std::string id, std::optional<app_protocol> p) {
            router_->invalidate(id, p);
            share_invalidation(id, p);
        });
        a.metrics().add_collector(
            [remote = remote_](std::string& out) { remote->render_metrics(out); });
        // Ready means decisions can be made: with a control plane, only once it is connected.
        a.readiness_check([remote = remote_]() -> std::optional<std::string> {
            if (remote->connected()) return std::nullopt;
            return "remote resolver: not connected to the control plane";
        });
    }
    if (cfg.feedback_listen) {
        // Passive health signals: HAProxy's log lines over UDP, bound on the service loop; a
        // bind error stops the start like any other configuration error.
        feedback_ = std::make_unique<feedback_log>(*loop_, *router_, *active, logger_);
        std::promise<std::string> bound;
        loop_->post([&](uv_loop_t*) {
            try {
                feedback_->listen(*cfg.feedback_listen);
                bound.set_value({});
            } catch (const std::exception& e) {
                bound.set_value(e.what());
            }
        });
        if (auto err = bound.get_future().get(); !err.empty()) {
            loop_->join();
            throw std::runtime_error(err);
        }
    }
    router_->attach(a);
}

void service::start_fleet(const redis_options& opts, agent& a) {
    auto id = opts.agent_id.empty() ? random_agent_id() : opts.agent_id;
    if (opts.shared_cache) {
        shared_ = std::make_shared<shared_route_tier>(redis_, id, loop_, logger_);
        router_->share_routes(shared_);
    }
    // The callbacks run on the service loop, which ends before the router. A platform's own
    // message also drops the shared entry (an agent's invalidation dropped it before it was
    // published).
    fanout_ = std::make_shared<invalidation_fanout>(
        redis_, id,
        [r = router_.get()](const std::string& res, std::optional<app_protocol> p) {
            r->invalidate(res, p);
        },
        [r = router_.get()] { r->cache().clear(); }, logger_,
        // A pointer, not a share: the fanout's state lives in the Redis client's handlers, and
        // the tier holds the client (a cycle nothing would ever free).
        [t = shared_.get()](const std::string& res, std::optional<app_protocol> p) {
            if (t) t->invalidate(res, p);
        });
    router_->on_admin_invalidate([this](std::string_view res, std::optional<app_protocol> p) {
        share_invalidation(res, p);
    });
    if (opts.wake_lease.count() > 0) {
        wakes_ = std::make_shared<wake_lease>(redis_, id, logger_);
        router_->cold_starts().coordinate_wakes(wakes_);
    }
    activity_ =
        std::make_shared<activity_exporter>(redis_, router_->activity(), opts, loop_, logger_);
    activity_->start();
    a.metrics().add_collector(
        [redis = redis_, f = fanout_, w = wakes_, t = shared_, act = activity_](std::string& out) {
            redis->render_metrics(out);
            f->render_metrics(out);
            if (w) w->render_metrics(out);
            if (t) t->render_metrics(out);
            act->render_metrics(out);
        });
    // Redis down never stops routing (each agent decides from its own cache and resolver), so
    // an agent without Redis stays ready; /readyz, /metrics and the log say it is degraded.
    a.readiness_note([redis = redis_]() -> std::optional<std::string> {
        const auto s = redis->stats();
        if (s.command_connected && s.subscriber_connected) return std::nullopt;
        return "redis " + redis->options().address.to_string() +
               " unreachable: deciding alone (no shared cache, wake lease or invalidations)";
    });
    logger_->info("fleet: agent id {}, Redis at {}, invalidations on channel {}", id,
                  opts.address.to_string(), fanout_->channel());
}

void service::share_invalidation(std::string_view id, std::optional<app_protocol> p) {
    // One connection, in order: the shared entry is gone before any agent hears of the change,
    // so none reads the old route back from Redis.
    if (shared_) shared_->invalidate(id, p);
    if (fanout_) fanout_->publish(id, p);
}

void service::add_reload(const std::string& path, agent& a) {
    // Runs on the agent's control thread (SIGHUP); the resolver swaps its table under its lock.
    a.on_reload([this, path] {
        if (auto err = static_routes_->reload()) {
            logger_->error("reload of {} failed, keeping the current routes: {}", path, *err);
            return;
        }
        logger_->info("reloaded {} ({} routes)", path, static_routes_->table()->size());
        router_->cache().clear();
    });
}

std::size_t check_routing_file(const std::string& path) {
    (void)load_routing_config(path);
    return static_resolver(path).table()->size();
}

}  // namespace spoa::handlers::routing
