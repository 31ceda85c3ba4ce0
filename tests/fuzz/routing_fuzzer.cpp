// libFuzzer target for the routing handlers (route-http, route-pg, route-tcp, route-tls): hostile
// Host headers, paths, PostgreSQL startup packets, SNI and TCP arguments go through the real
// router, attached to a real spoa::agent, with a static resolver over a small fixed table.
//
// The agent exposes no in-process dispatch (a miss defers its reply through the connection's
// loop), so the target talks SPOP over loopback with the fake HAProxy of tests/support: one
// agent, one router and one connection are created on the first input and reused by every
// input after it (the route cache therefore carries over between inputs, as it does between
// HAProxy's requests; it is capped small so that eviction is exercised and growth is checked).
//
// Input: up to 8 records, each sent as its own NOTIFY (pipelined, then every ACK is read):
//   byte 0       message: bits 0-1 = route-http / route-pg / route-tcp / route-tls
//   then, for each argument of that message in contract order (contract.hpp), a tag byte
//   (tag % 8) and its value:
//     0 absent            1 the argument's own type (string, binary, IPv4 or int32)
//     2 STRING            3 BINARY            (value: 2-byte big-endian length, then bytes)
//     4 INT32 (4 bytes)   5 INT64 (8 bytes)   6 IPV4 (4 bytes)   7 IPV6 (16 bytes)
//   An input that ends early leaves the remaining arguments absent. See README.md.
//
// Every ACK must be exactly one of:
//   - a decision: txn.route.ip (IPV4/IPV6) + port (1-65535) + resource (non-empty), where the
//     address and port are an endpoint of the table that the SSRF policy admits, and no
//     status/reason;
//   - a refusal: status in {400,403,404,500,503,504} + non-empty reason, and no ip/port;
// only txn set-vars from the contract (and the exported metadata variable), each once. Where
// the table decides the outcome (exact ids), the outcome must be the table's. The cache must
// stay within its cap and hold no unfinished resolution once every ACK is in.

#include <spdlog/logger.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spoa/handlers/routing/contract.hpp"
#include "spoa/handlers/routing/postgres_sqlstate.hpp"
#include "spoa/handlers/routing/postgres_startup.hpp"
#include "spoa/handlers/routing/resource_id.hpp"
#include "spoa/handlers/routing/router.hpp"
#include "spoa/handlers/routing/ssrf.hpp"
#include "spoa/handlers/routing/static_resolver.hpp"
#include "spoa/handlers/service_loop.hpp"
#include "spoa/protocol/action.hpp"
#include "spoa/testing/agent_fixture.hpp"
#include "spoa/testing/fake_haproxy.hpp"

namespace {

using namespace std::chrono_literals;
namespace routing = spoa::handlers::routing;
namespace contract = spoa::handlers::routing::contract;
namespace spop = spoa::protocol;
using routing::app_protocol;
using spop::data_type;
using spop::typed_value;

constexpr std::size_t max_records = 8;
/// Keeps every NOTIFY well under the negotiated 16380-byte frame size: framing is not what
/// this target explores (frame_fuzzer and session_fuzzer do that).
constexpr std::size_t max_input = 12000;
constexpr std::size_t cache_cap = 256;

// ---- the fixed route table ----------------------------------------------------------------

/// One table entry; `error` set = the resolver answers that error instead of a route.
struct table_entry {
    app_protocol proto;
    const char* id;
    std::vector<routing::endpoint> endpoints;
    std::vector<routing::path_route> paths;
    std::optional<routing::error_code> error;
    routing::backend_state state = routing::backend_state::ready;
};

const std::vector<table_entry>& entries() {
    using routing::error_code;
    static const std::vector<table_entry> e{
        {app_protocol::http, "app.fuzz.test", {{"127.0.0.1", 8001}}, {}, {}},
        {app_protocol::http, "*.tenants.fuzz.test", {{"127.0.0.1", 8002}}, {}, {}},
        {app_protocol::http,
         "paths.fuzz.test",
         {{"127.0.0.1", 8003}},
         {{"/api/v2", {{"::1", 8004}}}, {"/api", {{"127.0.0.1", 8005}}}},
         {}},
        // Resolves fine but to addresses the SSRF policy refuses: public, cloud metadata.
        {app_protocol::http, "ssrf.fuzz.test", {{"8.8.8.8", 80}}, {}, {}},
        {app_protocol::http, "metadata.fuzz.test", {{"169.254.169.254", 80}}, {}, {}},
        {app_protocol::http, "forbidden.fuzz.test", {}, {}, error_code::forbidden},
        {app_protocol::http, "down.fuzz.test", {}, {}, error_code::unavailable},
        // A sleeping backend with cold starts off: refused (503) after the SSRF check.
        {app_protocol::http,
         "asleep.fuzz.test",
         {{"127.0.0.1", 8006}},
         {},
         {},
         routing::backend_state::asleep},
        {app_protocol::postgres, "app1", {{"127.0.0.1", 5433}}, {}, {}},
        {app_protocol::postgres, "*.db.fuzz.test", {{"127.0.0.1", 5434}}, {}, {}},
        {app_protocol::postgres, "ssrf-db", {{"10.0.0.5", 5432}}, {}, {}},
        {app_protocol::postgres, "locked", {}, {}, error_code::forbidden},
        {app_protocol::tcp, "smtp:2525", {{"127.0.0.1", 2526}}, {}, {}},
        {app_protocol::tcp, "mysql:127.0.0.5", {{"127.0.0.1", 3306}}, {}, {}},
        {app_protocol::tcp, "proxy:tenant.fuzz.test", {{"127.0.0.1", 7000}}, {}, {}},
        {app_protocol::tcp, "tcp:9999", {{"8.8.4.4", 9999}}, {}, {}},
        {app_protocol::tls, "secure.fuzz.test", {{"127.0.0.1", 9443}}, {}, {}},
        {app_protocol::tls, "*.tls.fuzz.test", {{"::1", 9444}}, {}, {}},
        {app_protocol::tls, "forbidden.tls.fuzz.test", {}, {}, error_code::forbidden},
    };
    return e;
}

routing::ssrf_policy policy() {
    return routing::ssrf_policy::allowlist(
        {{*routing::cidr::parse("127.0.0.0/8"), "fuzz loopback"},
         {*routing::cidr::parse("::1/128"), "fuzz loopback v6"}});
}

std::shared_ptr<const routing::route_table> make_table() {
    auto t = std::make_shared<routing::route_table>();
    for (const auto& e : entries()) {
        if (e.error) {
            t->add(e.proto, e.id, routing::resolve_error{*e.error, "fuzz table says no", {}});
            continue;
        }
        routing::route r;
        r.endpoints = e.endpoints;
        r.paths = e.paths;
        r.state = e.state;
        if (std::string_view(e.id) == "app.fuzz.test") r.metadata = {{"tenant", "alpha"}};
        t->add(e.proto, e.id, std::move(r));
    }
    return t;
}

/// "ip port" of every endpoint a decision may name: those of the table the policy admits.
std::set<std::pair<std::string, std::int64_t>> admitted_endpoints() {
    std::set<std::pair<std::string, std::int64_t>> out;
    const auto p = policy();
    const auto add = [&](const routing::endpoint& ep) {
        const auto ip = spoa::ip_address::parse(ep.host);
        if (ip && !p.check(*ip, ep.port)) out.emplace(ip->to_string(), ep.port);
    };
    for (const auto& e : entries()) {
        for (const auto& ep : e.endpoints)
            add(ep);
        for (const auto& pr : e.paths)
            for (const auto& ep : pr.endpoints)
                add(ep);
    }
    return out;
}

/// The outcome the table dictates for an exact id (wildcards are not predicted).
struct outcome {
    bool decision = false;
    int status = 0;
    std::set<std::int64_t> ports;
};

std::optional<outcome> exact_outcome(app_protocol p, std::string_view id) {
    for (const auto& e : entries()) {
        if (e.proto != p || id != e.id) continue;
        if (e.error) return outcome{false, routing::http_status(*e.error), {}};
        outcome o;
        const auto admitted = admitted_endpoints();
        const auto ok = [&](const routing::endpoint& ep) {
            const auto ip = spoa::ip_address::parse(ep.host);
            return ip && admitted.count({ip->to_string(), ep.port}) != 0;
        };
        bool all_ok = std::all_of(e.endpoints.begin(), e.endpoints.end(), ok);
        for (const auto& pr : e.paths)
            all_ok = all_ok && std::all_of(pr.endpoints.begin(), pr.endpoints.end(), ok);
        if (!all_ok) return outcome{false, 403, {}};  // the SSRF policy refuses the route
        if (e.state != routing::backend_state::ready) return outcome{false, 503, {}};
        o.decision = true;
        for (const auto& ep : e.endpoints)
            o.ports.insert(ep.port);
        for (const auto& pr : e.paths)
            for (const auto& ep : pr.endpoints)
                o.ports.insert(ep.port);
        return o;
    }
    return std::nullopt;
}

// ---- the agent, built once ----------------------------------------------------------------

struct harness {
    harness()
        : service(std::make_shared<spoa::handlers::service_loop>()),
          router(std::make_shared<routing::static_resolver>(make_table()), policy(), options(),
                 service, std::make_shared<spdlog::logger>("routing-fuzz")),  // no sink: silent
          admitted(admitted_endpoints()) {
        router.attach(agent.agent());
        agent.start();
        conn.emplace(agent.connect_ready(spoa::testing::hello_options::v3()));
    }

    static routing::router_options options() {
        routing::router_options o;
        o.cache.max_entries = cache_cap;
        o.cache.hash_seed = 1;  // the same shards from run to run
        o.metadata_variables = {{"tenant", "tenant"}};
        o.tcp_services = {
            {"smtp", routing::tcp_key::dst_port},      {"mysql", routing::tcp_key::dst},
            {"pgbouncer", routing::tcp_key::dst_addr}, {"srcsvc", routing::tcp_key::src},
            {"proxy", routing::tcp_key::authority},    {"sniff", routing::tcp_key::sni}};
        // SSLRequests routed, GSSENCRequests answered 'N', CancelRequests refused.
        o.postgres.ssl_request = {routing::postgres_policy::action::route, "app1"};
        return o;
    }

    // In construction order: the router posts to the service loop, the agent dispatches to
    // the router. Never destroyed (see the_harness()).
    std::shared_ptr<spoa::handlers::service_loop> service;
    routing::router router;
    spoa::testing::test_agent agent;
    std::optional<spoa::testing::fake_haproxy> conn;
    std::set<std::pair<std::string, std::int64_t>> admitted;
    std::uint64_t next_stream = 1;
};

harness& the_harness() {
    // Deliberately leaked: libFuzzer exits with the agent's threads still running, and tearing
    // them down from a static destructor would only add a shutdown order to get wrong.
    static harness* h = new harness();
    return *h;
}

// ---- input decoding -----------------------------------------------------------------------

class reader {
  public:
    reader(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
    [[nodiscard]] bool empty() const noexcept { return p_ == end_; }
    std::uint8_t byte() { return empty() ? 0 : *p_++; }
    /// Up to `n` bytes (fewer at the end of the input).
    std::string_view bytes(std::size_t n) {
        n = std::min<std::size_t>(n, static_cast<std::size_t>(end_ - p_));
        const std::string_view v(reinterpret_cast<const char*>(p_), n);
        p_ += n;
        return v;
    }
    std::uint64_t big_endian(std::size_t n) {
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i)
            v = (v << 8) | byte();
        return v;
    }

  private:
    const std::uint8_t* p_;
    const std::uint8_t* end_;
};

enum class natural : std::uint8_t { string, binary, ip, integer };

natural natural_type(std::string_view arg) {
    if (arg == contract::arg::startup) return natural::binary;
    if (arg == contract::arg::src || arg == contract::arg::dst) return natural::ip;
    if (arg == contract::arg::dst_port) return natural::integer;
    return natural::string;
}

/// One decoded record: the NOTIFY's message and what the checks need to know about it.
struct record {
    app_protocol proto = app_protocol::http;
    spoa::testing::message_spec spec;
    /// STRING values of the arguments, by name (what try_string() will see).
    std::vector<std::pair<std::string_view, std::string_view>> strings;
    std::optional<std::string_view> startup;  ///< STRING or BINARY startup bytes
    std::optional<std::int64_t> dst_port;     ///< any integer type

    [[nodiscard]] std::optional<std::string_view> string_arg(std::string_view name) const {
        for (const auto& [n, v] : strings)
            if (n == name) return v;
        return std::nullopt;
    }
};

template <std::size_t N>
void decode_args(reader& in, const std::array<std::string_view, N>& names, record& r) {
    for (const std::string_view name : names) {
        const std::uint8_t tag = in.byte() % 8;
        if (tag == 0) continue;
        int kind = tag;
        if (tag == 1) {
            switch (natural_type(name)) {
                case natural::string:
                    kind = 2;
                    break;
                case natural::binary:
                    kind = 3;
                    break;
                case natural::ip:
                    kind = 6;
                    break;
                case natural::integer:
                    kind = 4;
                    break;
            }
        }
        typed_value v;
        switch (kind) {
            case 2:
            case 3: {
                const std::string_view s = in.bytes(in.big_endian(2));
                v = kind == 2 ? typed_value::string(s) : typed_value::binary(s);
                if (kind == 2) r.strings.emplace_back(name, s);
                if (name == contract::arg::startup) r.startup = s;
                break;
            }
            case 4: {
                const auto i = static_cast<std::int32_t>(in.big_endian(4));
                v = typed_value::int32(i);
                if (name == contract::arg::dst_port) r.dst_port = i;
                break;
            }
            case 5: {
                const auto i = static_cast<std::int64_t>(in.big_endian(8));
                v = typed_value::int64(i);
                if (name == contract::arg::dst_port) r.dst_port = i;
                break;
            }
            case 6: {
                std::array<std::uint8_t, 4> a{};
                for (auto& b : a)
                    b = in.byte();
                v = typed_value::ipv4(a);
                break;
            }
            default: {
                std::array<std::uint8_t, 16> a{};
                for (auto& b : a)
                    b = in.byte();
                v = typed_value::ipv6(a);
                break;
            }
        }
        r.spec.args.push_back({name, v});
    }
}

record decode_record(reader& in) {
    record r;
    switch (in.byte() & 3) {
        case 0:
            r.proto = app_protocol::http;
            r.spec.name = contract::message::http;
            decode_args(in, contract::http_args, r);
            break;
        case 1:
            r.proto = app_protocol::postgres;
            r.spec.name = contract::message::postgres;
            decode_args(in, contract::postgres_args, r);
            break;
        case 2:
            r.proto = app_protocol::tcp;
            r.spec.name = contract::message::tcp;
            decode_args(in, contract::tcp_args, r);
            break;
        default:
            r.proto = app_protocol::tls;
            r.spec.name = contract::message::tls;
            decode_args(in, contract::tls_args, r);
            break;
    }
    return r;
}

// ---- answer checks ------------------------------------------------------------------------

[[noreturn]] void fail(const record& r, const std::string& why) {
    std::fprintf(stderr, "routing_fuzzer: %s: %s\n", r.spec.name.c_str(), why.c_str());
    std::abort();
}

struct answer {
    std::optional<spoa::testing::owned_value> get(std::string_view name) const {
        for (const auto& a : actions)
            if (a.name == name) return a.value;
        return std::nullopt;
    }
    std::vector<spoa::testing::owned_action> actions;
};

bool is_integer(data_type t) {
    return t == data_type::int32 || t == data_type::int64 || t == data_type::uint32 ||
           t == data_type::uint64;
}

/// The id the router must have routed on when the table decides the outcome, or nullopt
/// when the input does not pin it down (wildcards, other keys).
std::optional<std::string> predicted_id(const record& r) {
    const auto host_id = [](std::optional<std::string_view> h) -> std::optional<std::string> {
        // Shorter than the handlers' 256-byte normalisation buffer, so no 400 for length.
        if (!h || h->size() > 200) return std::nullopt;
        std::string id = routing::normalize_host(*h);
        if (id.empty()) return std::nullopt;
        return id;
    };
    switch (r.proto) {
        case app_protocol::http:
            return host_id(r.string_arg(contract::arg::host));
        case app_protocol::tls:
            return host_id(r.string_arg(contract::arg::sni));
        case app_protocol::postgres: {
            if (!r.startup) return std::nullopt;
            const auto s = routing::parse_postgres_startup(*r.startup);
            if (s.type == routing::postgres_startup::kind::ssl_request ||
                s.type == routing::postgres_startup::kind::gss_request)
                return "app1";
            // Long ids are refused (400) before the table is asked: not predicted here.
            if (s.type != routing::postgres_startup::kind::startup || s.database.empty() ||
                s.database.size() > 200)
                return std::nullopt;
            return std::string(s.database);
        }
        case app_protocol::tcp: {
            // "<service>:<value>" for the two keys whose value the input gives verbatim.
            const std::string service(r.string_arg(contract::arg::service).value_or("tcp"));
            static const auto services = harness::options().tcp_services;
            const auto key = services.find(service);
            std::string value;
            if (key == services.end() || key->second == routing::tcp_key::dst_port) {
                if (r.dst_port && *r.dst_port > 0 && *r.dst_port < 65536)
                    value = std::to_string(*r.dst_port);
            } else if (key->second == routing::tcp_key::authority) {
                value =
                    routing::normalize_host(r.string_arg(contract::arg::authority).value_or(""));
            }
            if (value.empty() || service.size() + value.size() > 200) return std::nullopt;
            return service + ":" + value;
        }
    }
    return std::nullopt;
}

/// True when `id` may match a wildcard of the table (the target does not predict those).
bool may_match_wildcard(app_protocol p, std::string_view id) {
    for (const auto& e : entries()) {
        const std::string_view pattern = e.id;
        if (e.proto == p && pattern.starts_with("*.") && id.ends_with(pattern.substr(1)))
            return true;
    }
    return false;
}

void check(const harness& h, const record& r, const spoa::testing::received_frame& f) {
    answer a;
    try {
        a.actions = f.actions();
    } catch (const std::exception& e) {
        fail(r, std::string("undecodable ACK: ") + e.what());
    }
    std::set<std::string> seen;
    for (const auto& act : a.actions) {
        if (act.type != spop::action_type::set_var || act.scope != spop::var_scope::txn)
            fail(r, "action other than a txn set-var: " + act.to_string());
        const bool known = act.name == "tenant" ||
                           std::find(contract::variables.begin(), contract::variables.end(),
                                     act.name) != contract::variables.end();
        if (!known) fail(r, "variable outside the contract: " + act.name);
        if (!seen.insert(act.name).second) fail(r, "variable set twice: " + act.name);
    }
    const auto ip = a.get(contract::var::ip);
    const auto port = a.get(contract::var::port);
    const auto status = a.get(contract::var::status);
    const auto reason = a.get(contract::var::reason);
    const auto resource = a.get(contract::var::resource);
    const auto sqlstate = a.get(contract::var::sqlstate);
    const bool decision = ip.has_value();
    if (const auto negotiation = a.get(contract::var::negotiation)) {
        // Only a GSSENCRequest (answered `plaintext` by this target's options) gets one.
        const bool gssenc = r.startup && routing::parse_postgres_startup(*r.startup).type ==
                                             routing::postgres_startup::kind::gss_request;
        if (r.proto != app_protocol::postgres || !gssenc)
            fail(r, "a negotiation answer to something else than a GSSENCRequest");
        if (negotiation->bytes != "plaintext" || ip || port || status || reason || sqlstate)
            fail(r, "a negotiation answer is 'plaintext' alone: " + negotiation->to_string());
        return;
    }
    // A PostgreSQL refusal carries the SQLSTATE of its status; nothing else carries one.
    if (r.proto == app_protocol::postgres && status) {
        if (!sqlstate || !is_integer(status->type) ||
            sqlstate->bytes != routing::postgres_sqlstate(static_cast<int>(status->integer), false))
            fail(r, "PostgreSQL refusal without the SQLSTATE of its status");
    } else if (sqlstate) {
        fail(r, "SQLSTATE outside a PostgreSQL refusal");
    }
    if (decision) {
        if (!port || !resource || status || reason)
            fail(r, "decision without port/resource, or with a status/reason");
        if (ip->type != data_type::ipv4 && ip->type != data_type::ipv6)
            fail(r, "ip is not an address: " + ip->to_string());
        if (!is_integer(port->type) || port->integer < 1 || port->integer > 65535)
            fail(r, "bad port: " + port->to_string());
        if (resource->type != data_type::string || resource->bytes.empty())
            fail(r, "bad resource: " + resource->to_string());
        std::string text;
        if (ip->type == data_type::ipv4) {
            std::array<std::uint8_t, 4> b{};
            std::memcpy(b.data(), ip->bytes.data(), std::min<std::size_t>(4, ip->bytes.size()));
            text = spoa::ip_address::v4(b).to_string();
        } else {
            std::array<std::uint8_t, 16> b{};
            std::memcpy(b.data(), ip->bytes.data(), std::min<std::size_t>(16, ip->bytes.size()));
            text = spoa::ip_address::v6(b).to_string();
        }
        if (h.admitted.count({text, static_cast<std::int64_t>(port->integer)}) == 0)
            fail(r, "decision for an endpoint the table/policy never admits: " + text + " " +
                        port->to_string());
    } else {
        if (port || !status || !reason) fail(r, "neither a decision nor a refusal");
        if (!is_integer(status->type)) fail(r, "status is not an integer");
        static constexpr std::array<std::uint64_t, 6> statuses{400, 403, 404, 500, 503, 504};
        if (std::find(statuses.begin(), statuses.end(), status->integer) == statuses.end())
            fail(r, "unexpected status " + status->to_string());
        if (reason->type != data_type::string || reason->bytes.empty())
            fail(r, "refusal without a reason");
    }
    // Where the input pins the id down, the answer must be the table's.
    const auto id = predicted_id(r);
    if (!id) return;
    if (decision && resource->bytes != *id)
        fail(r, "decision for resource '" + resource->bytes + "', expected '" + *id + "'");
    if (may_match_wildcard(r.proto, *id)) return;
    const auto expected = exact_outcome(r.proto, *id);
    if (!expected) {
        if (decision) fail(r, "decision for '" + *id + "', which is not in the table");
        if (status->integer != 404)
            fail(r, "'" + *id + "' is not in the table, got status " + status->to_string());
        return;
    }
    if (expected->decision != decision)
        fail(r, "'" + *id + "': decision/refusal differs from the table");
    if (decision && expected->ports.count(static_cast<std::int64_t>(port->integer)) == 0)
        fail(r, "'" + *id + "' routed to port " + port->to_string());
    if (!decision && static_cast<int>(status->integer) != expected->status)
        fail(r, "'" + *id + "': status " + status->to_string() + ", expected " +
                    std::to_string(expected->status));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    harness& h = the_harness();
    reader in(data, std::min(size, max_input));
    std::vector<record> records;
    while (!in.empty() && records.size() < max_records)
        records.push_back(decode_record(in));
    if (records.empty()) return 0;

    // Pipelined like HAProxy: every NOTIFY first, then the ACKs in whatever order they come
    // (a deferred answer does not hold back the ones behind it).
    const std::uint64_t first = h.next_stream;
    try {
        for (std::size_t i = 0; i < records.size(); ++i)
            h.conn->send_notify(first + i, 1, records[i].spec);
        h.next_stream += records.size();
        for (std::size_t n = 0; n < records.size(); ++n) {
            const auto f = h.conn->expect(spop::frame_type::ack);
            if (f.stream_id < first || f.stream_id >= first + records.size() || f.frame_id != 1)
                fail(records[0], "ACK for a frame not asked: " + f.describe());
            check(h, records[f.stream_id - first], f);
        }
    } catch (const std::exception& e) {
        // A missing ACK (deadline, closed connection) or a failed write.
        fail(records[0], std::string("no answer: ") + e.what());
    }
    const auto st = h.router.cache().stats();
    if (st.entries > cache_cap) fail(records[0], "route cache above its cap");
    if (st.inflight != 0) fail(records[0], "resolutions still in flight after every answer");
    return 0;
}
