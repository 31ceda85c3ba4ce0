#include <cstdio>

#include "spoa/handlers/examples.hpp"

namespace spoa::handlers {
namespace {

/// HAProxy accepts only [A-Za-z0-9_.] in variable names (protocol/README.md §5.3).
std::string_view variable_name(std::string_view arg, std::size_t index, char (&buf)[256]) {
    if (arg.empty()) {
        const int n = std::snprintf(buf, sizeof buf, "arg%zu", index);
        return {buf, static_cast<std::size_t>(n)};
    }
    const std::size_t n = arg.size() < sizeof buf ? arg.size() : sizeof buf - 1;
    for (std::size_t i = 0; i < n; ++i) {
        const char c = arg[i];
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '.';
        buf[i] = ok ? c : '_';
    }
    return {buf, n};
}

std::uint32_t fnv1a(const std::uint8_t* p, std::size_t n) {
    std::uint32_t h = 2166136261u;
    for (std::size_t i = 0; i < n; ++i)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

bool trusted(const ip_address& ip) {
    const std::uint8_t* b = ip.data();
    if (ip.is_v4()) {
        return b[0] == 127 || b[0] == 10 || (b[0] == 172 && (b[1] & 0xF0) == 16) ||
               (b[0] == 192 && b[1] == 168);
    }
    static constexpr std::uint8_t loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return std::equal(b, b + 16, loopback) || (b[0] & 0xFE) == 0xFC;
}

}  // namespace

void register_echo(agent& a) {
    a.on("echo", [](const message& m, reply& r) {
        char buf[256];
        for (std::size_t i = 0; i < m.size(); ++i) {
            const auto& arg = m.args()[i];
            r.set(var_scope::txn, variable_name(arg.name, i, buf), arg.value);
        }
    });
}

void register_ip_reputation(agent& a) {
    a.on("check-client-ip", [](const message& m, reply& r) {
        const ip_address ip = m.get_ip("ip");
        const std::int64_t score = trusted(ip) ? 100 : fnv1a(ip.data(), ip.size()) % 100;
        r.set_int(var_scope::sess, "ip_score", score);
    });
}

std::vector<std::string_view> example_names() {
    return {"echo", "ip-reputation"};
}

bool register_example(agent& a, std::string_view name) {
    if (name == "echo") {
        register_echo(a);
        return true;
    }
    if (name == "ip-reputation") {
        register_ip_reputation(a);
        return true;
    }
    return false;
}

}  // namespace spoa::handlers
