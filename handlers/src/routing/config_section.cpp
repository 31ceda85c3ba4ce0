#include "config_section.hpp"

#include <algorithm>
#include <cassert>
#include <stdexcept>

namespace spoa::handlers::routing {

void config_error(const std::string& origin, const YAML::Node& at, const std::string& problem) {
    const std::string line = std::to_string(at.Mark().line + 1);
    if (origin.empty()) throw std::runtime_error("line " + line + ": " + problem);
    throw std::runtime_error(origin + ":" + line + ": " + problem);
}

config_section::config_section(YAML::Node node, std::string origin, std::string where,
                               std::initializer_list<std::string_view> known)
    : node_(std::move(node)), origin_(std::move(origin)), where_(std::move(where)), known_(known) {
    if (!node_.IsMap()) {
        fail(where_.empty() ? "the file must be a YAML map" : where_ + " must be a map");
    }
    for (const auto& kv : node_) {
        const auto key = kv.first.as<std::string>();
        if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
        std::string names;
        for (const auto k : known_)
            names += (names.empty() ? "" : ", ") + std::string(k);
        const std::string what = where_.empty() ? "unknown section '" + key + "'"
                                                : "unknown key '" + key + "' in " + where_;
        fail(kv.first, what + " (known: " + names + ")");
    }
}

YAML::Node config_section::operator[](std::string_view key) const {
    assert(std::find(known_.begin(), known_.end(), key) != known_.end());
    return node_[std::string(key)];
}

std::optional<config_section> config_section::section(
    std::string_view key, std::initializer_list<std::string_view> known) const {
    const auto n = (*this)[key];
    if (!n) return std::nullopt;
    return config_section(n, origin_, name_of(key), known);
}

std::string config_section::name_of(std::string_view key) const {
    return where_.empty() ? std::string(key) : where_ + "." + std::string(key);
}

std::string config_section::one_of(const std::vector<std::string_view>& names) {
    std::string out;
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (i > 0) out += i + 1 == names.size() ? " or " : ", ";
        out += names[i];
    }
    return out;
}

std::optional<std::chrono::milliseconds> config_section::millis(std::string_view key) const {
    const auto n = (*this)[key];
    if (!n) return std::nullopt;
    long v = 0;
    try {
        v = n.as<long>();
    } catch (const YAML::Exception&) {
        fail(n, "expected a number of milliseconds");
    }
    if (v < 0) fail(n, "a duration must not be negative");
    return std::chrono::milliseconds(v);
}

std::optional<bool> config_section::flag(std::string_view key) const {
    const auto n = (*this)[key];
    if (!n) return std::nullopt;
    try {
        return n.as<bool>();
    } catch (const YAML::Exception&) {
        fail(n, "expected true or false");
    }
}

std::optional<std::string> config_section::text(std::string_view key) const {
    const auto n = (*this)[key];
    if (!n) return std::nullopt;
    if (!n.IsScalar()) fail(n, name_of(key) + " must be a single value");
    return n.as<std::string>();
}

std::optional<std::uint64_t> config_section::count(std::string_view key, std::uint64_t min,
                                                   std::uint64_t max) const {
    const auto n = (*this)[key];
    if (!n) return std::nullopt;
    const auto out_of_range = [&] {
        fail(n, name_of(key) + " must be a whole number from " + std::to_string(min) + " to " +
                    std::to_string(max));
    };
    if (!n.IsScalar() || n.Scalar().starts_with('-')) out_of_range();
    std::uint64_t v = 0;
    try {
        v = n.as<std::uint64_t>();
    } catch (const YAML::Exception&) {
        out_of_range();
    }
    if (v < min || v > max) out_of_range();
    return v;
}

std::optional<std::vector<long>> config_section::statuses(std::string_view key) const {
    const auto n = (*this)[key];
    if (!n) return std::nullopt;
    if (!n.IsSequence()) fail(n, name_of(key) + " must be a list of HTTP statuses");
    std::vector<long> out;
    for (const auto& v : n) {
        long s = 0;
        try {
            s = v.as<long>();
        } catch (const YAML::Exception&) {
            fail(v, name_of(key) + " must be a list of HTTP statuses");
        }
        if (s < 100 || s > 599)
            fail(v, name_of(key) + ": " + std::to_string(s) + " is not an HTTP status");
        out.push_back(s);
    }
    return out;
}

}  // namespace spoa::handlers::routing
