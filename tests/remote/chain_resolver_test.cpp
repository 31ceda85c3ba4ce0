// chain_resolver: the fallback only after not_found; with fake resolvers (sync and async) and
// with the real pair (static routes, remote control plane).

#include "spoa/handlers/routing/chain_resolver.hpp"

#include <catch2/catch.hpp>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "remote_test_util.hpp"
#include "spoa/handlers/routing/remote_resolver.hpp"
#include "spoa/handlers/routing/static_resolver.hpp"

using spoa::ip_address;
namespace handlers = spoa::handlers;
using namespace spoa::handlers::routing;
using namespace spoa::remote_test;

namespace {

/// Answers from a fixed map (unknown ids: not_found), on the caller's thread or on a new thread.
class fake_resolver final : public resolver {
  public:
    explicit fake_resolver(std::string name, bool async = false)
        : name_(std::move(name)), async_(async) {}

    void set(const std::string& id, resolve_result r) {
        std::lock_guard lock(m_);
        answers_.insert_or_assign(id, std::move(r));
    }

    void resolve(const std::string& id, const resolve_context& /*ctx*/,
                 resolve_callback done) override {
        resolve_result res = resolve_error{error_code::not_found, name_ + ": no " + id, {}};
        {
            std::lock_guard lock(m_);
            ++calls;
            if (const auto it = answers_.find(id); it != answers_.end()) res = it->second;
        }
        if (async_) {
            std::thread([done = std::move(done), res = std::move(res)]() mutable {
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
                done(std::move(res));
            }).detach();
        } else {
            done(std::move(res));
        }
    }
    void wake(const std::string& id, const resolve_context&,
              std::function<void(std::optional<resolve_error>)> done) override {
        {
            std::lock_guard lock(m_);
            woken.push_back(id);
        }
        done(std::nullopt);
    }
    void invalidate(const std::string&) override { ++invalidations; }
    void track_activity(const std::string&, app_protocol) override { ++activity; }
    void on_connect(const std::string&, const resolve_context&) override { ++connects; }
    void on_disconnect(const std::string&, const disconnect_report&) override { ++disconnects; }
    [[nodiscard]] resolver_stats stats() const override { return {0, 0, invalidations.load()}; }
    [[nodiscard]] std::string_view name() const noexcept override { return name_; }

    std::atomic<int> calls{0};
    std::atomic<std::uint64_t> invalidations{0};
    std::atomic<int> activity{0};
    std::atomic<int> connects{0};
    std::atomic<int> disconnects{0};
    std::vector<std::string> woken;

  private:
    std::string name_;
    bool async_;
    std::mutex m_;
    std::map<std::string, resolve_result> answers_;
};

route route_to(const std::string& host, std::uint16_t port) {
    route r;
    r.endpoints.push_back({host, port});
    return r;
}

std::uint16_t port_of(const std::optional<resolve_result>& r) {
    REQUIRE(r.has_value());
    REQUIRE(std::holds_alternative<route>(*r));
    return std::get<route>(*r).endpoints.at(0).port;
}

resolve_error error_of(const std::optional<resolve_result>& r) {
    REQUIRE(r.has_value());
    REQUIRE(std::holds_alternative<resolve_error>(*r));
    return std::get<resolve_error>(*r);
}

}  // namespace

TEST_CASE("chain resolver: first answer wins, fallback only after not_found", "[chain][unit]") {
    const bool async = GENERATE(false, true);
    CAPTURE(async);
    auto first = std::make_shared<fake_resolver>("first", async);
    auto second = std::make_shared<fake_resolver>("second", async);
    chain_resolver chain(first, second);
    first->set("both", route_to("10.0.0.1", 1));
    second->set("both", route_to("10.0.0.2", 2));
    second->set("second-only", route_to("10.0.0.2", 3));
    first->set("down", resolve_error{error_code::unavailable, "first is down", {}});
    second->set("down", route_to("10.0.0.2", 4));
    first->set("slow", resolve_error{error_code::timeout, "first timed out", {}});
    first->set("banned", resolve_error{error_code::forbidden, "no", {}});
    second->set("banned", route_to("10.0.0.2", 5));

    CHECK(port_of(resolve_sync(chain, "both")) == 1);
    CHECK(second->calls == 0);
    CHECK(port_of(resolve_sync(chain, "second-only")) == 3);
    CHECK(second->calls == 1);
    // Errors other than not_found are the answer: no fallback.
    CHECK(error_of(resolve_sync(chain, "down")).reason == "first is down");
    CHECK(error_of(resolve_sync(chain, "slow")).code == error_code::timeout);
    CHECK(error_of(resolve_sync(chain, "banned")).code == error_code::forbidden);
    CHECK(second->calls == 1);
    // Neither knows it: the fallback's not_found.
    const auto nf = error_of(resolve_sync(chain, "nobody"));
    CHECK(nf.code == error_code::not_found);
    CHECK(nf.reason == "second: no nobody");
    CHECK(chain.fallbacks() == 2);
    CHECK(chain.stats().calls == 6);
    CHECK(chain.stats().errors == 4);
}

TEST_CASE("chain resolver: hooks go to both, wake to the resolver that routes the id",
          "[chain][unit]") {
    auto first = std::make_shared<fake_resolver>("first");
    auto second = std::make_shared<fake_resolver>("second");
    chain_resolver chain(first, second);
    first->set("mine", route_to("10.0.0.1", 1));

    chain.invalidate("x");
    chain.track_activity("x", app_protocol::http);
    chain.on_connect("x", {});
    chain.on_disconnect("x", {});
    CHECK(first->invalidations == 1);
    CHECK(second->invalidations == 1);
    CHECK(first->activity == 1);
    CHECK(second->activity == 1);
    CHECK(first->connects + second->connects == 2);
    CHECK(first->disconnects + second->disconnects == 2);
    CHECK(chain.stats().invalidations == 2);

    const auto w1 = wake_sync(chain, "mine");
    REQUIRE(w1.has_value());
    CHECK_FALSE(w1->has_value());
    const auto w2 = wake_sync(chain, "theirs");
    REQUIRE(w2.has_value());
    CHECK(first->woken == std::vector<std::string>{"mine"});
    CHECK(second->woken == std::vector<std::string>{"theirs"});
    CHECK_THROWS_AS(chain_resolver(first, nullptr), std::invalid_argument);
}

namespace {

/// A callback that counts its copies: the chain must hand the caller's callback on, not copy it
/// (a copy would be released by the calling thread while the answer runs on another).
template <typename Arg>
struct counted_callback {
    std::shared_ptr<std::atomic<int>> copies = std::make_shared<std::atomic<int>>(0);
    std::shared_ptr<std::promise<Arg>> answer = std::make_shared<std::promise<Arg>>();
    counted_callback() = default;
    counted_callback(const counted_callback& o) : copies(o.copies), answer(o.answer) { ++*copies; }
    counted_callback(counted_callback&&) noexcept = default;
    counted_callback& operator=(const counted_callback&) = delete;
    counted_callback& operator=(counted_callback&&) = delete;
    ~counted_callback() = default;
    void operator()(Arg a) const { answer->set_value(std::move(a)); }
};

}  // namespace

TEST_CASE("chain resolver: the caller's callback is moved along, never copied", "[chain][unit]") {
    const bool async = GENERATE(false, true);
    const std::string id = GENERATE(std::string("both"), std::string("second-only"));
    CAPTURE(async, id);
    auto first = std::make_shared<fake_resolver>("first", async);
    auto second = std::make_shared<fake_resolver>("second", async);
    chain_resolver chain(first, second);
    first->set("both", route_to("10.0.0.1", 1));
    second->set("second-only", route_to("10.0.0.2", 3));

    counted_callback<resolve_result> cb;
    const auto copies = cb.copies;
    auto fut = cb.answer->get_future();
    chain.resolve(id, {}, resolve_callback(std::move(cb)));
    REQUIRE(fut.wait_for(5s) == std::future_status::ready);
    CHECK(port_of(fut.get()) == (id == "both" ? 1 : 3));
    CHECK(copies->load() == 0);

    counted_callback<std::optional<resolve_error>> wcb;
    const auto wcopies = wcb.copies;
    auto wfut = wcb.answer->get_future();
    chain.wake(id, {}, std::function<void(std::optional<resolve_error>)>(std::move(wcb)));
    REQUIRE(wfut.wait_for(5s) == std::future_status::ready);
    CHECK_FALSE(wfut.get().has_value());
    CHECK(wcopies->load() == 0);
}

TEST_CASE("chain resolver: static routes, then the remote control plane", "[chain][unit]") {
    if (!python_available()) {
        WARN("skipped: " SPOA_TEST_PYTHON " cannot import msgpack (python3-msgpack)");
        return;
    }
    temp_dir dir;
    control_plane server(dir.write("routes.json", R"({"routes": {"http": {
        "remote.example.com": {"endpoints": ["127.0.0.1:9001"]},
        "both.example.com": {"endpoints": ["127.0.0.1:9002"]},
        "sleepy.example.com": {"state": "asleep"}}}})"));
    auto table = std::make_shared<route_table>();
    table->add(app_protocol::http, "static.example.com", route_to("127.0.0.1", 8001));
    table->add(app_protocol::http, "both.example.com", route_to("127.0.0.1", 8002));
    auto loop = std::make_shared<handlers::service_loop>();
    remote_resolver_options o;
    o.addresses = {connect_address::parse(server.address())};
    o.reconnect_min = std::chrono::milliseconds(10);
    o.reconnect_max = std::chrono::milliseconds(100);
    auto remote = std::make_shared<remote_resolver>(o, loop, nullptr);
    {
        chain_resolver chain(std::make_shared<static_resolver>(table), remote);
        REQUIRE(eventually([&] { return remote->connected(); }));

        CHECK(port_of(resolve_sync(chain, "static.example.com")) == 8001);
        CHECK(port_of(resolve_sync(chain, "both.example.com")) == 8002);  // static wins
        CHECK(port_of(resolve_sync(chain, "remote.example.com")) == 9001);
        CHECK(error_of(resolve_sync(chain, "nope.example.com")).code == error_code::not_found);
        CHECK(server.count("resolve", "http/both.example.com") == 0);
        CHECK(server.count("resolve", "http/remote.example.com") == 1);

        // Wake: the remote routes sleepy.example.com, so the remote wakes it.
        const auto w = wake_sync(chain, "sleepy.example.com");
        REQUIRE(w.has_value());
        CHECK_FALSE(w->has_value());
        CHECK(server.count("wake", "http/sleepy.example.com") == 1);
        // A static route cannot be woken.
        const auto ws = wake_sync(chain, "static.example.com");
        REQUIRE(ws.has_value());
        REQUIRE(ws->has_value());
        CHECK((*ws)->code == error_code::unavailable);

        // The control plane goes away: static routes still work, the others are unavailable
        // (not not_found: the chain must not turn an outage into a 404).
        server.kill();
        REQUIRE(eventually([&] { return !remote->connected(); }));
        CHECK(port_of(resolve_sync(chain, "static.example.com")) == 8001);
        CHECK(error_of(resolve_sync(chain, "remote.example.com")).code == error_code::unavailable);
    }
    remote.reset();
    loop->join();
}
