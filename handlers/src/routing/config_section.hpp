#pragma once
/// One YAML map of a configuration file, read key by key. Every key the map holds must be one
/// the reader knows (checked when the section is opened): a misspelt key (`ttl` for `ttl_ms`, a
/// route's `sate`) is an error naming the file, the line and the keys known there, never a
/// silent default. Errors are std::runtime_error("<origin>:<line>: <problem>"), or
/// "line <line>: <problem>" when the origin is empty (the route table, whose caller adds it).

#include <yaml-cpp/yaml.h>

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spoa::handlers::routing {

[[noreturn]] void config_error(const std::string& origin, const YAML::Node& at,
                               const std::string& problem);

class config_section {
  public:
    /// `where` names the map in messages ("cache", "cold_start.probe"; empty at the top level).
    /// Throws if `node` is not a map, or holds a key outside `known`.
    config_section(YAML::Node node, std::string origin, std::string where,
                   std::initializer_list<std::string_view> known);

    /// The key's value, or a null node when absent. `key` must be one of the known keys.
    [[nodiscard]] YAML::Node operator[](std::string_view key) const;
    [[nodiscard]] bool has(std::string_view key) const { return static_cast<bool>((*this)[key]); }
    /// A nested map, checked the same way; nullopt when the key is absent.
    [[nodiscard]] std::optional<config_section> section(
        std::string_view key, std::initializer_list<std::string_view> known) const;

    [[nodiscard]] std::optional<std::chrono::milliseconds> millis(std::string_view key) const;
    [[nodiscard]] std::optional<bool> flag(std::string_view key) const;
    [[nodiscard]] std::optional<std::string> text(std::string_view key) const;
    /// A whole number within [min, max].
    [[nodiscard]] std::optional<std::uint64_t> count(std::string_view key, std::uint64_t min,
                                                     std::uint64_t max) const;
    [[nodiscard]] std::optional<std::vector<long>> statuses(std::string_view key) const;

    /// One of a closed set of words: "<where>.<key> must be a, b or c" otherwise.
    template <class Enum>
    [[nodiscard]] std::optional<Enum> choice(
        std::string_view key,
        std::initializer_list<std::pair<std::string_view, Enum>> options) const {
        const auto word = text(key);
        if (!word) return std::nullopt;
        for (const auto& [name, value] : options)
            if (name == *word) return value;
        std::vector<std::string_view> names;
        for (const auto& option : options)
            names.push_back(option.first);
        fail((*this)[key], name_of(key) + " must be " + one_of(names));
    }

    [[noreturn]] void fail(const YAML::Node& at, const std::string& problem) const {
        config_error(origin_, at, problem);
    }
    [[noreturn]] void fail(const std::string& problem) const { fail(node_, problem); }
    /// "<where>.<key>", or "<key>" at the top level.
    [[nodiscard]] std::string name_of(std::string_view key) const;
    [[nodiscard]] const YAML::Node& node() const noexcept { return node_; }
    [[nodiscard]] const std::string& origin() const noexcept { return origin_; }

    /// "a", "a or b", "a, b or c".
    [[nodiscard]] static std::string one_of(const std::vector<std::string_view>& names);

  private:
    YAML::Node node_;
    std::string origin_;
    std::string where_;
    std::vector<std::string_view> known_;
};

}  // namespace spoa::handlers::routing
