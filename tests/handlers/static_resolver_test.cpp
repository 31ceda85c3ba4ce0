// The static resolver and its route table: exact ids, wildcards, per-protocol namespaces, error
// routes, path prefixes, and reloads that keep the old table when the new file is broken.

#include <yaml-cpp/yaml.h>

#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "spoa/handlers/routing/static_resolver.hpp"
#include "test_util.hpp"

namespace spoa::handlers::routing {
namespace {

using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using namespace std::chrono_literals;

std::shared_ptr<const route_table> table(const std::string& yaml) {
    return route_table::parse(YAML::Load(yaml)["routes"]);
}

/// The endpoints of the route found for (p, id), as "host:port" strings; "none" when not found,
/// "error:<code>" for an error route.
std::string lookup(const route_table& t, app_protocol p, std::string_view id) {
    const auto* e = t.find(p, id);
    if (!e) return "none";
    if (const auto* err = std::get_if<resolve_error>(e)) {
        return "error:" + std::string(to_string(err->code));
    }
    std::string out;
    for (const auto& ep : std::get<route>(*e).endpoints) {
        if (!out.empty()) out += ",";
        out += ep.to_string();
    }
    return out;
}

/// resolve() through the resolver interface (the static resolver answers inline).
resolve_result resolve(static_resolver& r, app_protocol p, const std::string& id) {
    std::optional<resolve_result> got;
    resolve_context ctx;
    ctx.proto = p;
    r.resolve(id, ctx, [&](resolve_result res) { got = std::move(res); });
    REQUIRE(got.has_value());
    return std::move(*got);
}

std::string parse_error(const std::string& yaml) {
    try {
        (void)table(yaml);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "(no error)";
}

}  // namespace

TEST_CASE("route table: endpoint::parse", "[static]") {
    CHECK(endpoint::parse("127.0.0.1:9001") == endpoint{"127.0.0.1", 9001});
    CHECK(endpoint::parse("db.internal:5432") == endpoint{"db.internal", 5432});
    CHECK(endpoint::parse("[fd00::1]:443") == endpoint{"fd00::1", 443});
    CHECK(endpoint::parse("x:65535").port == 65535);
    CHECK(endpoint{"fd00::1", 443}.to_string() == "[fd00::1]:443");
    CHECK(endpoint{"a.b", 1}.to_string() == "a.b:1");
    for (const char* bad :
         {"", "host", "host:", ":80", "host:0", "host:65536", "host:-1", "host:80x", "fd00::1:443",
          "[fd00::1]443", "[fd00::1]:", "[fd00::1", "[]:80", "host: 80"}) {
        INFO("'" << bad << "'");
        CHECK_THROWS_AS(endpoint::parse(bad), std::invalid_argument);
    }
}

TEST_CASE("route table: exact ids and wildcards", "[static]") {
    const auto t = table(R"(
routes:
  http:
    app.example.com: {endpoints: [10.0.0.1:80]}
    "*.example.com": {endpoints: [10.0.0.2:80]}
    "*.eu.example.com": {endpoints: [10.0.0.3:80]}
    "*.deep.eu.example.com": {endpoints: [10.0.0.4:80]}
    Mixed.Case.COM.: {endpoints: [10.0.0.5:80, 10.0.0.6:80]}
)");
    CHECK(t->size() == 5);
    CHECK(lookup(*t, app_protocol::http, "app.example.com") == "10.0.0.1:80");  // exact wins
    CHECK(lookup(*t, app_protocol::http, "other.example.com") == "10.0.0.2:80");
    CHECK(lookup(*t, app_protocol::http, "a.b.example.com") == "10.0.0.2:80");
    CHECK(lookup(*t, app_protocol::http, "x.eu.example.com") == "10.0.0.3:80");  // longest suffix
    CHECK(lookup(*t, app_protocol::http, "x.deep.eu.example.com") == "10.0.0.4:80");
    CHECK(lookup(*t, app_protocol::http, "deep.eu.example.com") == "10.0.0.3:80");
    // "*.example.com" does not match the apex, nor a name merely ending in the same letters.
    CHECK(lookup(*t, app_protocol::http, "example.com") == "none");
    CHECK(lookup(*t, app_protocol::http, "eu.example.com") == "10.0.0.2:80");
    CHECK(lookup(*t, app_protocol::http, "badexample.com") == "none");
    CHECK(lookup(*t, app_protocol::http, ".example.com") == "none");
    CHECK(lookup(*t, app_protocol::http, "example.com.evil.net") == "none");
    // Host-like ids are stored normalised (requests are looked up normalised).
    CHECK(lookup(*t, app_protocol::http, "mixed.case.com") == "10.0.0.5:80,10.0.0.6:80");
    CHECK(lookup(*t, app_protocol::http, "Mixed.Case.COM.") == "none");
}

TEST_CASE("route table: one namespace per protocol", "[static]") {
    const auto t = table(R"(
routes:
  http:
    app1: {endpoints: [10.0.0.1:80]}
  postgres:
    app1: {endpoints: [10.0.0.1:5432]}
    App2: {endpoints: [10.0.0.2:5432]}
  tcp:
    "smtp:2525": {endpoints: [10.0.0.1:25]}
  tls:
    Secure.Example.com: {endpoints: [10.0.0.1:443]}
)");
    CHECK(lookup(*t, app_protocol::http, "app1") == "10.0.0.1:80");
    CHECK(lookup(*t, app_protocol::postgres, "app1") == "10.0.0.1:5432");
    CHECK(lookup(*t, app_protocol::tcp, "app1") == "none");
    CHECK(lookup(*t, app_protocol::tls, "app1") == "none");
    CHECK(lookup(*t, app_protocol::tcp, "smtp:2525") == "10.0.0.1:25");
    CHECK(lookup(*t, app_protocol::http, "smtp:2525") == "none");
    // Database names are case-sensitive (not host names): stored as written.
    CHECK(lookup(*t, app_protocol::postgres, "App2") == "10.0.0.2:5432");
    CHECK(lookup(*t, app_protocol::postgres, "app2") == "none");
    // SNI is a host name: normalised.
    CHECK(lookup(*t, app_protocol::tls, "secure.example.com") == "10.0.0.1:443");

    // The protocol aliases of parse_app_protocol are accepted as section names.
    const auto aliases = table("routes:\n  pg: {db: {endpoints: [10.0.0.9:5432]}}\n");
    CHECK(lookup(*aliases, app_protocol::postgres, "db") == "10.0.0.9:5432");
}

TEST_CASE("route table: error routes", "[static]") {
    const auto t = table(R"(
routes:
  http:
    suspended.example.com:
      error: forbidden
      reason: tenant suspended
      retry_after_ms: 1500
    gone.example.com: {error: not_found}
    busy.example.com: {error: unavailable, reason: maintenance}
)");
    const auto* e = t->find(app_protocol::http, "suspended.example.com");
    REQUIRE(e != nullptr);
    const auto* err = std::get_if<resolve_error>(e);
    REQUIRE(err != nullptr);
    CHECK(err->code == error_code::forbidden);
    CHECK(err->reason == "tenant suspended");
    CHECK(err->retry_after == 1500ms);

    const auto& gone = std::get<resolve_error>(*t->find(app_protocol::http, "gone.example.com"));
    CHECK(gone.code == error_code::not_found);
    CHECK(gone.reason == "not_found");  // the code's name when no reason is given
    CHECK_FALSE(gone.retry_after.has_value());
    CHECK(lookup(*t, app_protocol::http, "busy.example.com") == "error:unavailable");
}

TEST_CASE("route table: paths sorted by prefix length, metadata, ttl, state", "[static]") {
    const auto t = table(R"(
routes:
  http:
    app.example.com:
      endpoints: [10.0.0.1:80]
      paths:
        /a: [10.0.0.2:80]
        /a/b/c: [10.0.0.4:80]
        /: [10.0.0.9:80]
        /a/b: [10.0.0.3:80]
      metadata: {tenant: alpha, plan: pro}
      ttl_ms: 250
      timeout_ms: 30000
      state: asleep
    paths-only.example.com:
      paths:
        /api: ["[fd00::1]:8080"]
)");
    const auto& r = std::get<route>(*t->find(app_protocol::http, "app.example.com"));
    REQUIRE(r.paths.size() == 4);
    CHECK(r.paths[0].prefix == "/a/b/c");
    CHECK(r.paths[1].prefix == "/a/b");
    CHECK(r.paths[2].prefix == "/a");
    CHECK(r.paths[3].prefix == "/");
    CHECK(r.paths[0].endpoints == std::vector<endpoint>{{"10.0.0.4", 80}});
    CHECK(r.paths[1].endpoints == std::vector<endpoint>{{"10.0.0.3", 80}});
    CHECK(r.metadata == std::map<std::string, std::string>{{"plan", "pro"}, {"tenant", "alpha"}});
    CHECK(r.ttl == 250ms);
    CHECK(r.timeout == 30000ms);
    CHECK(r.state == backend_state::asleep);

    const auto& p = std::get<route>(*t->find(app_protocol::http, "paths-only.example.com"));
    CHECK(p.endpoints.empty());
    REQUIRE(p.paths.size() == 1);
    CHECK(p.paths[0].endpoints == std::vector<endpoint>{{"fd00::1", 8080}});
    CHECK_FALSE(p.ttl.has_value());
    CHECK(p.state == backend_state::ready);
}

TEST_CASE("route table: bad routes name their line", "[static]") {
    CHECK(parse_error("routes:\n  gopher:\n    x: {endpoints: [10.0.0.1:70]}\n") ==
          "line 2: unknown protocol 'gopher' (http, postgres, tcp, tls)");
    CHECK(parse_error("routes:\n  http:\n    a: {endpoints: [nope]}\n") ==
          "line 3: endpoint 'nope' is not host:port (IPv6 needs brackets)");
    CHECK(parse_error("routes:\n  http:\n    a: {}\n") ==
          "line 3: a route needs endpoints, paths or error");
    CHECK(parse_error("routes:\n  http:\n    a: {error: nope}\n") ==
          "line 3: unknown error 'nope' (not_found, forbidden, unavailable, timeout, internal)");
    CHECK(parse_error("routes:\n  http:\n    a:\n      paths: {api: [10.0.0.1:80]}\n") ==
          "line 4: path prefix 'api' must start with /");
    CHECK(parse_error("routes:\n  http:\n    a: {endpoints: 10.0.0.1:80}\n") ==
          "line 3: endpoints must be a list of \"host:port\"");
    CHECK(parse_error("routes:\n  http:\n    a: {endpoints: [10.0.0.1:80], state: dead}\n") ==
          "line 3: unknown state 'dead' (ready, asleep, starting, failed)");
    CHECK(parse_error("routes:\n  http:\n    \":80\": {endpoints: [10.0.0.1:80]}\n") ==
          "line 3: empty route id");
    CHECK(parse_error("routes:\n  http: [a, b]\n") == "line 2: routes.http must map ids to routes");
    CHECK(parse_error("routes: [http]\n") ==
          "line 1: routes must map a protocol (http, postgres, tcp, tls) to ids");
    // An absent or empty section is an empty table.
    CHECK(table("other: 1\n")->size() == 0);
}

TEST_CASE("static resolver: answers from its table", "[static]") {
    auto t = std::make_shared<route_table>();
    t->add(app_protocol::http, "app.example.com", route{{{"10.0.0.1", 80}}, {}, {}, {}, {}, {}});
    t->add(app_protocol::http, "*.example.com", route{{{"10.0.0.2", 80}}, {}, {}, {}, {}, {}});
    t->add(app_protocol::tcp, "smtp:25",
           resolve_error{error_code::unavailable, "smtp is down", std::nullopt});
    static_resolver r(t);
    CHECK(r.name() == "static");
    CHECK(r.table() == t);

    const auto ok = resolve(r, app_protocol::http, "app.example.com");
    REQUIRE(std::holds_alternative<route>(ok));
    CHECK(std::get<route>(ok).endpoints == std::vector<endpoint>{{"10.0.0.1", 80}});
    const auto wild = resolve(r, app_protocol::http, "x.example.com");
    CHECK(std::get<route>(wild).endpoints == std::vector<endpoint>{{"10.0.0.2", 80}});

    const auto missing = resolve(r, app_protocol::http, "nope.org");
    REQUIRE(std::holds_alternative<resolve_error>(missing));
    CHECK(std::get<resolve_error>(missing).code == error_code::not_found);
    CHECK(std::get<resolve_error>(missing).reason == "no http route for 'nope.org'");
    const auto pg = resolve(r, app_protocol::postgres, "app.example.com");
    CHECK(std::get<resolve_error>(pg).reason == "no postgres route for 'app.example.com'");

    const auto err = resolve(r, app_protocol::tcp, "smtp:25");
    CHECK(std::get<resolve_error>(err).code == error_code::unavailable);
    CHECK(std::get<resolve_error>(err).reason == "smtp is down");

    const auto st = r.stats();
    CHECK(st.calls == 5);
    CHECK(st.errors == 2);  // the two not-found answers
    CHECK(r.reload() == "this route table has no file to reload");
}

TEST_CASE("static resolver: reload", "[static]") {
    test::temp_dir dir;
    const auto path = dir.write("routes.yaml", R"(
routes:
  http:
    a.example.com: {endpoints: [10.0.0.1:80]}
)");
    static_resolver r(path);
    const auto first = r.table();
    CHECK(lookup(*first, app_protocol::http, "a.example.com") == "10.0.0.1:80");

    SECTION("a broken file keeps the old table and says why") {
        dir.write("routes.yaml", "routes:\n  http:\n    a.example.com: {endpoints: [bad]}\n");
        const auto err = r.reload();
        REQUIRE(err.has_value());
        CHECK(*err == "line 3: endpoint 'bad' is not host:port (IPv6 needs brackets)");
        CHECK(r.table() == first);
        CHECK(std::holds_alternative<route>(resolve(r, app_protocol::http, "a.example.com")));

        dir.write("routes.yaml", "routes:\n  http: {a: [unclosed\n");
        const auto syntax = r.reload();
        REQUIRE(syntax.has_value());
        CHECK_THAT(*syntax, StartsWith(path + ":"));
        CHECK(r.table() == first);

        std::filesystem::remove(path);
        CHECK(r.reload() == path + ": cannot read the file");
        CHECK(r.table() == first);
    }
    SECTION("a new file is picked up") {
        dir.write("routes.yaml", R"(
routes:
  http:
    a.example.com: {endpoints: [10.0.0.7:8080]}
    b.example.com: {error: forbidden, reason: no}
)");
        CHECK(r.reload() == std::nullopt);
        CHECK(r.table() != first);
        CHECK(lookup(*r.table(), app_protocol::http, "a.example.com") == "10.0.0.7:8080");
        CHECK(lookup(*r.table(), app_protocol::http, "b.example.com") == "error:forbidden");
        // The old table stays valid for whoever still holds it.
        CHECK(lookup(*first, app_protocol::http, "a.example.com") == "10.0.0.1:80");
    }
}

TEST_CASE("static resolver: resolve on several threads while the table is reloaded",
          "[static][threads]") {
    // The SIGHUP path swaps the table while the service loop resolves: run under TSan.
    test::temp_dir dir;
    const auto v1 = "routes:\n  http:\n    a.example.com: {endpoints: [10.0.0.1:80]}\n";
    const auto v2 = "routes:\n  http:\n    a.example.com: {endpoints: [10.0.0.2:80]}\n";
    const auto path = dir.write("routes.yaml", v1);
    static_resolver r(path);
    std::atomic<bool> stop{false};
    std::atomic<int> bad{0};
    std::vector<std::thread> readers;
    for (int i = 0; i < 3; ++i) {
        readers.emplace_back([&] {
            resolve_context ctx;
            while (!stop.load()) {
                r.resolve("a.example.com", ctx, [&](resolve_result res) {
                    const auto* rt = std::get_if<route>(&res);
                    if (!rt || rt->endpoints.size() != 1 || rt->endpoints[0].port != 80) ++bad;
                });
                (void)r.stats();
            }
        });
    }
    for (int i = 0; i < 50; ++i) {
        dir.write("routes.yaml", i % 2 ? v1 : v2);
        CHECK(r.reload() == std::nullopt);
    }
    stop = true;
    for (auto& t : readers)
        t.join();
    CHECK(bad.load() == 0);
}

namespace {

/// True when this process has `path` open (a reload reading it).
bool file_is_open(const std::string& path) {
    std::error_code ec;
    for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
        std::error_code lec;
        if (std::filesystem::read_symlink(fd.path(), lec) == path) return true;
    }
    return false;
}

}  // namespace

TEST_CASE("static resolver: the reload that reads the file last installs its table last",
          "[static][threads]") {
    // A slow reload (large file) is reading v1 when the file becomes v2 and a second reload
    // starts. Unserialised, the second (fast) reload installed v2 and the slow one then put the
    // stale v1 back; serialised, the second waits and reads v2.
    test::temp_dir dir;
    std::string big = "routes:\n  http:\n    a.example.com: {endpoints: [10.0.0.1:80]}\n";
    for (int i = 0; i < 20000; ++i)
        big += "    h" + std::to_string(i) + ".example.com: {endpoints: [10.0.0.1:80]}\n";
    const auto path = dir.write("routes.yaml", "routes: {}\n");
    static_resolver r(path);
    dir.write("routes.yaml", big);
    std::atomic<bool> slow_done{false};
    std::optional<std::string> slow_result{"not run"};
    std::thread slow([&] {
        slow_result = r.reload();
        slow_done = true;
    });
    while (!file_is_open(path) && !slow_done.load())
        std::this_thread::yield();
    dir.write("routes.yaml", "routes:\n  http:\n    a.example.com: {endpoints: [10.0.0.2:80]}\n");
    CHECK(r.reload() == std::nullopt);
    slow.join();
    CHECK(slow_result == std::nullopt);
    CHECK(lookup(*r.table(), app_protocol::http, "a.example.com") == "10.0.0.2:80");
    CHECK(r.table()->size() == 1);
}

TEST_CASE("static resolver: a bad file at construction throws", "[static]") {
    test::temp_dir dir;
    const auto path = dir.write("bad.yaml", "routes:\n  http:\n    a: {endpoints: []}\n");
    CHECK_THROWS_WITH(static_resolver(path), "line 3: a route needs endpoints, paths or error");
    CHECK_THROWS_WITH(static_resolver((dir.path() / "missing.yaml").string()),
                      Contains("missing.yaml: cannot read the file"));
}

}  // namespace spoa::handlers::routing
