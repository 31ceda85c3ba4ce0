// Contract drift: the shipped HAProxy configurations (haproxy/2.6 and haproxy/3.x) against
// contract.hpp. Renaming a message, an argument or a variable on one side only fails here.

#include <catch2/catch.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "spoa/handlers/routing/contract.hpp"
#include "test_util.hpp"

namespace spoa::handlers::routing {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> split_words(std::string_view line) {
    std::vector<std::string> out;
    std::istringstream in{std::string(line)};
    for (std::string w; in >> w;)
        out.push_back(w);
    return out;
}

std::string strip(std::string_view s) {
    const auto b = s.find_first_not_of(" \t\r");
    if (b == std::string_view::npos) return {};
    const auto e = s.find_last_not_of(" \t\r");
    return std::string(s.substr(b, e - b + 1));
}

/// Meaningful lines (no blank line, no comment line), stripped, with their line numbers.
std::vector<std::pair<int, std::string>> config_lines(const fs::path& p) {
    std::vector<std::pair<int, std::string>> out;
    std::istringstream in(test::read_text(p));
    int n = 0;
    for (std::string line; std::getline(in, line);) {
        ++n;
        auto s = strip(line);
        if (s.empty() || s.front() == '#') continue;
        out.emplace_back(n, std::move(s));
    }
    return out;
}

struct spoe_agent {
    std::string name;
    int line = 0;
    std::vector<std::string> messages;
    std::vector<std::string> groups;
    std::vector<std::string> var_prefix;  ///< every `option var-prefix` seen
    std::vector<std::string> register_var_names;
    std::string set_on_error;
    std::string set_process_time;
    std::string use_backend;
};

struct spoe_message {
    std::string name;
    int line = 0;
    std::vector<std::string> arg_names;
    int args_lines = 0;  ///< how many `args` lines (must be exactly one)
};

struct spoe_scope {
    std::string name;
    std::vector<spoe_agent> agents;
    std::vector<spoe_message> messages;
    std::map<std::string, std::vector<std::string>> groups;  ///< group -> messages
};

/// A small reader of HAProxy SPOE configuration files: [scope] sections holding spoe-agent,
/// spoe-message and spoe-group blocks.
std::vector<spoe_scope> parse_spoe(const fs::path& p) {
    std::vector<spoe_scope> scopes;
    enum class block { none, agent, message, group } current = block::none;
    std::string group_name;
    for (const auto& [n, line] : config_lines(p)) {
        INFO(p.string() << ":" << n << ": " << line);
        if (line.front() == '[') {
            REQUIRE(line.back() == ']');
            scopes.push_back({line.substr(1, line.size() - 2), {}, {}, {}});
            current = block::none;
            continue;
        }
        REQUIRE_FALSE(scopes.empty());  // everything lives in a scope
        auto& scope = scopes.back();
        const auto w = split_words(line);
        if (w[0] == "spoe-agent") {
            REQUIRE(w.size() == 2);
            scope.agents.push_back({});
            scope.agents.back().name = w[1];
            scope.agents.back().line = n;
            current = block::agent;
        } else if (w[0] == "spoe-message") {
            REQUIRE(w.size() == 2);
            scope.messages.push_back({w[1], n, {}, 0});
            current = block::message;
        } else if (w[0] == "spoe-group") {
            REQUIRE(w.size() == 2);
            group_name = w[1];
            scope.groups[group_name];
            current = block::group;
        } else if (current == block::agent) {
            auto& a = scope.agents.back();
            if (w[0] == "messages") {
                a.messages.insert(a.messages.end(), w.begin() + 1, w.end());
            } else if (w[0] == "groups") {
                a.groups.insert(a.groups.end(), w.begin() + 1, w.end());
            } else if (w[0] == "register-var-names") {
                a.register_var_names.insert(a.register_var_names.end(), w.begin() + 1, w.end());
            } else if (w[0] == "use-backend") {
                REQUIRE(w.size() == 2);
                a.use_backend = w[1];
            } else if (w[0] == "option" && w.size() >= 2 && w[1] == "var-prefix") {
                REQUIRE(w.size() == 3);
                a.var_prefix.push_back(w[2]);
            } else if (w[0] == "option" && w.size() >= 2 && w[1] == "set-on-error") {
                REQUIRE(w.size() == 3);
                a.set_on_error = w[2];
            } else if (w[0] == "option" && w.size() >= 2 && w[1] == "set-process-time") {
                REQUIRE(w.size() == 3);
                a.set_process_time = w[2];
            }
        } else if (current == block::message) {
            auto& m = scope.messages.back();
            if (w[0] == "args") {
                ++m.args_lines;
                for (std::size_t i = 1; i < w.size(); ++i) {
                    const auto eq = w[i].find('=');
                    REQUIRE(eq != std::string::npos);  // every argument is named
                    m.arg_names.push_back(w[i].substr(0, eq));
                }
            }
        } else if (current == block::group) {
            if (w[0] == "messages") {
                auto& g = scope.groups[group_name];
                g.insert(g.end(), w.begin() + 1, w.end());
            }
        } else {
            FAIL("directive outside a spoe-agent/spoe-message/spoe-group block");
        }
    }
    return scopes;
}

struct variable_use {
    std::string scope;
    std::string prefix;
    std::string name;
};

/// Every var(<scope>.<prefix>.<name>[,default]) of a line (ACLs, log-format, set-dst, headers;
/// also set-var/unset-var).
/// (A hand-written scan: <regex> trips -Wmaybe-uninitialized in GCC 12 sanitizer builds.)
std::vector<variable_use> variable_uses(std::string_view line) {
    std::vector<variable_use> out;
    const auto word_char = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_';
    };
    for (auto pos = line.find("var("); pos != std::string_view::npos;
         pos = line.find("var(", pos + 1)) {
        if (pos > 0 && word_char(line[pos - 1])) continue;  // e.g. myvar(; set-var( counts
        std::size_t i = pos + 4;
        std::string parts[3];
        bool ok = true;
        for (int k = 0; k < 3 && ok; ++k) {
            while (i < line.size() && word_char(line[i]))
                parts[k].push_back(line[i++]);
            ok = !parts[k].empty();
            if (ok && k < 2) ok = i < line.size() && line[i++] == '.';
        }
        if (ok && i < line.size() && (line[i] == ')' || line[i] == ',')) {
            out.push_back({parts[0], parts[1], parts[2]});
        }
    }
    return out;
}

std::vector<std::string> contract_args(std::string_view message) {
    const auto to_vec = [](const auto& arr) {
        return std::vector<std::string>(arr.begin(), arr.end());
    };
    if (message == contract::message::http) return to_vec(contract::http_args);
    if (message == contract::message::postgres) return to_vec(contract::postgres_args);
    if (message == contract::message::tcp) return to_vec(contract::tcp_args);
    if (message == contract::message::tls) return to_vec(contract::tls_args);
    return {};
}

const std::set<std::string>& contract_messages() {
    static const std::set<std::string> names{
        std::string(contract::message::http), std::string(contract::message::postgres),
        std::string(contract::message::tcp), std::string(contract::message::tls)};
    return names;
}

const std::set<std::string>& contract_variables() {
    static const std::set<std::string> names(contract::variables.begin(),
                                             contract::variables.end());
    return names;
}

const std::vector<std::string> versions{"2.6", "3.x"};

fs::path haproxy_dir(const std::string& version) {
    return test::source_dir() / "haproxy" / version;
}

/// Checks one SPOE file against the contract; returns the variable names HAProxy itself sets
/// (set-on-error, set-process-time) and the agent backends.
struct spoe_facts {
    std::set<std::string> haproxy_owned;
    std::set<std::string> agent_backends;
    std::map<std::string, std::set<std::string>> groups_by_scope;
};

spoe_facts check_spoe_file(const fs::path& p) {
    const auto scopes = parse_spoe(p);
    REQUIRE_FALSE(scopes.empty());
    spoe_facts facts;
    std::set<std::string> messages_seen;
    for (const auto& scope : scopes) {
        INFO(p.string() << " [" << scope.name << "]");
        REQUIRE(scope.agents.size() == 1);
        std::set<std::string> scope_messages;
        for (const auto& m : scope.messages) {
            INFO("spoe-message " << m.name << " (line " << m.line << ")");
            CHECK(contract_messages().count(m.name) == 1);
            CHECK(m.args_lines == 1);
            CHECK(m.arg_names == contract_args(m.name));
            scope_messages.insert(m.name);
            messages_seen.insert(m.name);
        }
        for (const auto& [g, members] : scope.groups) {
            INFO("spoe-group " << g);
            CHECK_FALSE(members.empty());
            for (const auto& m : members)
                CHECK(scope_messages.count(m) == 1);
            facts.groups_by_scope[scope.name].insert(g);
        }
        for (const auto& a : scope.agents) {
            INFO("spoe-agent " << a.name << " (line " << a.line << ")");
            CHECK(a.var_prefix == std::vector<std::string>{std::string(contract::var_prefix)});
            const std::set<std::string> registered(a.register_var_names.begin(),
                                                   a.register_var_names.end());
            for (const auto& v : contract::variables) {
                INFO("register-var-names must list " << v);
                CHECK(registered.count(std::string(v)) == 1);
            }
            // Anything registered is either ours or HAProxy's own.
            for (const auto& v : registered) {
                INFO("registered variable " << v);
                CHECK((contract_variables().count(v) == 1 || v == a.set_on_error ||
                       v == a.set_process_time));
            }
            CHECK((a.messages.empty() != a.groups.empty()));  // one of the two
            for (const auto& m : a.messages)
                CHECK(scope_messages.count(m) == 1);
            for (const auto& g : a.groups)
                CHECK(scope.groups.count(g) == 1);
            // Failing closed needs HAProxy's error variable (haproxy-notes: set-on-error).
            CHECK_FALSE(a.set_on_error.empty());
            CHECK(contract_variables().count(a.set_on_error) == 0);
            CHECK(contract_variables().count(a.set_process_time) == 0);
            if (!a.set_on_error.empty()) facts.haproxy_owned.insert(a.set_on_error);
            if (!a.set_process_time.empty()) facts.haproxy_owned.insert(a.set_process_time);
            REQUIRE_FALSE(a.use_backend.empty());
            facts.agent_backends.insert(a.use_backend);
        }
    }
    // Every routing message is offered by the shipped configuration.
    CHECK(messages_seen == contract_messages());
    return facts;
}

}  // namespace

TEST_CASE("contract: SPOE files use the contract's messages, args and variables", "[contract]") {
    for (const auto& v : versions) {
        SECTION(v) {
            (void)check_spoe_file(haproxy_dir(v) / "spoe-routing.conf");
        }
    }
}

TEST_CASE("contract: haproxy.cfg reads only contract and HAProxy-owned variables", "[contract]") {
    for (const auto& v : versions) {
        SECTION(v) {
            const auto facts = check_spoe_file(haproxy_dir(v) / "spoe-routing.conf");
            const auto cfg = haproxy_dir(v) / "haproxy.cfg";
            std::set<std::string> used;
            for (const auto& [n, line] : config_lines(cfg)) {
                for (const auto& [scope, prefix, name] : variable_uses(line)) {
                    if (prefix != contract::var_prefix) continue;  // someone else's variable
                    INFO(cfg.string()
                         << ":" << n << ": var(" << scope << "." << prefix << "." << name << ")");
                    CHECK(scope == "txn");
                    CHECK((contract_variables().count(name) == 1 ||
                           facts.haproxy_owned.count(name) == 1));
                    used.insert(name);
                }
            }
            // The forwarding and refusal variables are actually used (the scan found them).
            for (const auto& must : {contract::var::ip, contract::var::port, contract::var::status,
                                     contract::var::reason}) {
                INFO(cfg.string() << " must read var(txn.route." << must << ")");
                CHECK(used.count(std::string(must)) == 1);
            }
        }
    }
}

namespace {

/// The action names `core.register_action("<name>", ...)` registers in a Lua file, and the
/// txn.route.<name> variables it reads or writes.
struct lua_facts {
    std::set<std::string> actions;
    std::set<std::string> route_variables;
};

lua_facts scan_lua(const fs::path& p) {
    std::istringstream in(test::read_text(p));
    lua_facts facts;
    const std::regex action(R"re(core\.register_action\("([A-Za-z0-9_]+)")re");
    const std::regex variable(R"re("txn\.route\.([A-Za-z0-9_]+)")re");
    std::string line;
    while (std::getline(in, line)) {
        std::smatch m;
        if (std::regex_search(line, m, action)) facts.actions.insert(m[1]);
        for (auto it = std::sregex_iterator(line.begin(), line.end(), variable);
             it != std::sregex_iterator(); ++it)
            facts.route_variables.insert((*it)[1]);
    }
    return facts;
}

}  // namespace

TEST_CASE("contract: spoa-postgres.lua and postgres-tls.cfg agree with the contract",
          "[contract]") {
    const auto lua = scan_lua(fs::path(SPOA_SOURCE_DIR) / "haproxy" / "spoa-postgres.lua");
    CHECK(lua.actions == std::set<std::string>{"spoa_pg_answer_no", "spoa_pg_refuse"});
    for (const auto& v :
         {contract::var::negotiation, contract::var::sqlstate, contract::var::reason}) {
        INFO("spoa-postgres.lua must use txn.route." << v);
        CHECK(lua.route_variables.count(std::string(v)) == 1);
    }
    // The contract's variables, and the one SPOE's set-on-error writes (an unanswered agent).
    const auto facts = check_spoe_file(haproxy_dir("3.x") / "spoe-routing.conf");
    for (const auto& v : lua.route_variables) {
        INFO("spoa-postgres.lua uses txn.route." << v);
        CHECK((contract_variables().count(v) == 1 || facts.haproxy_owned.count(v) == 1));
    }
    // Every lua.<action> of a shipped configuration is one the Lua file registers.
    std::vector<fs::path> configs{haproxy_dir("2.6") / "haproxy.cfg",
                                  haproxy_dir("3.x") / "haproxy.cfg",
                                  fs::path(SPOA_SOURCE_DIR) / "haproxy" / "postgres-tls.cfg"};
    const std::regex lua_action(R"re((?:^|\s)lua\.([A-Za-z0-9_]+))re");
    std::size_t actions_used = 0;
    for (const auto& cfg : configs) {
        for (const auto& [n, line] : config_lines(cfg)) {
            for (auto it = std::sregex_iterator(line.begin(), line.end(), lua_action);
                 it != std::sregex_iterator(); ++it) {
                INFO(cfg.string() << ":" << n << ": " << line);
                CHECK(lua.actions.count((*it)[1]) == 1);
                ++actions_used;
            }
            for (const auto& [scope, prefix, name] : variable_uses(line)) {
                if (prefix != contract::var_prefix) continue;
                INFO(cfg.string() << ":" << n << ": var(" << scope << "." << prefix << "." << name
                                  << ")");
                CHECK((contract_variables().count(name) == 1 ||
                       facts.haproxy_owned.count(name) == 1));
            }
        }
    }
    CHECK(actions_used >= 6);  // fe_postgres and fe_postgres_tls both answer and refuse
}

TEST_CASE("contract: haproxy.cfg engines, groups and agent backends exist", "[contract]") {
    for (const auto& v : versions) {
        SECTION(v) {
            const auto facts = check_spoe_file(haproxy_dir(v) / "spoe-routing.conf");
            const auto cfg = haproxy_dir(v) / "haproxy.cfg";
            std::set<std::string> engines;
            std::set<std::string> backends;
            std::string section;
            std::map<std::string, std::vector<std::string>> section_lines;
            for (const auto& [n, line] : config_lines(cfg)) {
                INFO(cfg.string() << ":" << n << ": " << line);
                const auto w = split_words(line);
                if (w[0] == "global" || w[0] == "defaults" || w[0] == "frontend" ||
                    w[0] == "backend" || w[0] == "listen") {
                    section = w.size() > 1 ? w[0] + " " + w[1] : w[0];
                    if (w[0] == "backend") backends.insert(w[1]);
                    continue;
                }
                section_lines[section].push_back(line);
                // filter spoe engine <engine> config <file>
                if (w.size() >= 4 && w[0] == "filter" && w[1] == "spoe" && w[2] == "engine") {
                    engines.insert(w[3]);
                }
                // ... send-spoe-group <engine> <group> [if ...]
                const auto sg = std::find(w.begin(), w.end(), "send-spoe-group");
                if (sg != w.end()) {
                    REQUIRE(w.end() - sg >= 3);
                    const auto it = facts.groups_by_scope.find(*(sg + 1));
                    REQUIRE(it != facts.groups_by_scope.end());
                    CHECK(it->second.count(*(sg + 2)) == 1);
                }
            }
            // Each engine named by a filter is a scope of the SPOE file, and vice versa.
            const auto scopes = parse_spoe(haproxy_dir(v) / "spoe-routing.conf");
            std::set<std::string> scope_names;
            for (const auto& s : scopes)
                scope_names.insert(s.name);
            CHECK(engines == scope_names);
            for (const auto& be : facts.agent_backends) {
                INFO("agent backend " << be);
                REQUIRE(backends.count(be) == 1);
                const auto& lines = section_lines["backend " + be];
                const auto has = [&](const std::string& l) {
                    return std::find(lines.begin(), lines.end(), l) != lines.end();
                };
                CHECK(has(v == "2.6" ? "mode tcp" : "mode spop"));
                CHECK(has("option spop-check"));  // haproxy-notes: always check the agent
                const bool checked = std::any_of(lines.begin(), lines.end(), [](const auto& l) {
                    const auto ws = split_words(l);
                    return ws[0] == "server" &&
                           std::find(ws.begin(), ws.end(), "check") != ws.end();
                });
                CHECK(checked);
            }
        }
    }
}

namespace {

/// Compares the 2.6 and 3.x versions of a file line by line (comments ignored): `extra_in_26`
/// and `extra_in_3x` say which lines only one version may have, `replaced` which (2.6, 3.x)
/// pairs may differ.
void check_versions_differ_only_as_expected(
    const std::string& file, const std::function<bool(const std::string&)>& extra_in_26,
    const std::function<bool(const std::string&)>& extra_in_3x,
    const std::function<bool(const std::string&, const std::string&, const std::string&)>&
        replaced) {
    const auto old_lines = config_lines(haproxy_dir("2.6") / file);
    const auto new_lines = config_lines(haproxy_dir("3.x") / file);
    std::size_t i = 0;
    std::size_t j = 0;
    std::string section;
    while (i < old_lines.size() || j < new_lines.size()) {
        const std::string a = i < old_lines.size() ? old_lines[i].second : "<end of file>";
        const std::string b = j < new_lines.size() ? new_lines[j].second : "<end of file>";
        INFO(file << ": 2.6 line " << (i < old_lines.size() ? old_lines[i].first : -1) << " '" << a
                  << "' vs 3.x line " << (j < new_lines.size() ? new_lines[j].first : -1) << " '"
                  << b << "'");
        if (a == b) {
            const auto w = split_words(a);
            if (!w.empty() && (w[0] == "backend" || w[0] == "frontend" || w[0].front() == '[')) {
                section = a;
            }
            ++i;
            ++j;
            continue;
        }
        if (i < old_lines.size() && extra_in_26(a)) {
            ++i;
            continue;
        }
        if (j < new_lines.size() && extra_in_3x(b)) {
            ++j;
            continue;
        }
        const bool ok = i < old_lines.size() && j < new_lines.size() && replaced(section, a, b);
        CHECK(ok);
        if (!ok) return;  // one report is enough; the rest would be noise
        ++i;
        ++j;
    }
}

}  // namespace

TEST_CASE("contract: 2.6 and 3.x configurations differ only where expected", "[contract]") {
    SECTION("spoe-routing.conf: 2.6 adds timeout hello/idle and option async lines") {
        check_versions_differ_only_as_expected(
            "spoe-routing.conf",
            [](const std::string& l) {
                return l.starts_with("timeout hello ") || l.starts_with("timeout idle ") ||
                       l == "option async" || l == "no option async";
            },
            [](const std::string&) { return false; },
            [](const std::string&, const std::string&, const std::string&) { return false; });
    }
    SECTION(
        "haproxy.cfg: mode tcp (2.6) versus mode spop (3.x) on agent backends, and 3.x's "
        "Lua setting") {
        const auto facts = check_spoe_file(haproxy_dir("3.x") / "spoe-routing.conf");
        // 3.2 warns at lua-load unless this is set (2.6 does not know the keyword).
        check_versions_differ_only_as_expected(
            "haproxy.cfg", [](const std::string&) { return false; },
            [](const std::string& l) { return l == "tune.lua.bool-sample-conversion normal"; },
            [&](const std::string& section, const std::string& a, const std::string& b) {
                const auto w = split_words(section);
                return w.size() == 2 && w[0] == "backend" && facts.agent_backends.count(w[1]) &&
                       a == "mode tcp" && b == "mode spop";
            });
    }
}

}  // namespace spoa::handlers::routing
