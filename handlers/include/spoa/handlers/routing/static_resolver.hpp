#pragma once
/// Routes from the YAML configuration: exact ids and wildcards (`*.example.com`, the longest
/// matching suffix wins), per protocol. reload() re-reads the file and swaps the table
/// atomically; a file that does not parse keeps the old table.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <variant>
#include <vector>

#include "spoa/handlers/routing/resolver.hpp"

namespace YAML {
class Node;
}

namespace spoa::handlers::routing {

/// Ownership: built by parse() (or add() calls) on one thread, then published as
/// shared_ptr<const route_table> and never modified again: readers on any thread need no lock, and
/// a table swapped out by a reload lives until its last reader drops it.
class route_table {
  public:
    using entry = std::variant<route, resolve_error>;

    /// Parses the `routes:` node: protocol -> id -> route. Throws std::runtime_error with the
    /// line and the problem.
    [[nodiscard]] static std::shared_ptr<const route_table> parse(const YAML::Node& routes);
    /// One route of that section (a map with endpoints, paths, metadata, ttl_ms, timeout_ms,
    /// state; or error, reason, retry_after_ms), wherever it was read from (the `redis`
    /// resolver reads the same fields from Redis). `where` names it in messages. Throws
    /// std::runtime_error("line N: problem"), or a YAML::Exception for a value of the wrong type.
    [[nodiscard]] static entry parse_entry(const YAML::Node& n, const std::string& where);

    /// The entry for `id` of protocol `p`, or nullptr.
    [[nodiscard]] const entry* find(app_protocol p, std::string_view id) const;
    [[nodiscard]] std::size_t size() const noexcept;

    /// Only before the table is shared (not thread-safe).
    void add(app_protocol p, std::string id, entry e);

  private:
    struct per_protocol {
        std::map<std::string, entry, std::less<>> exact;
        /// (suffix including the leading dot, entry), longest suffix first.
        std::vector<std::pair<std::string, entry>> wildcards;
    };
    per_protocol tables_[4];
};

/// Threads: resolve on the service loop (any thread is fine), stats on the admin thread, reload
/// on the control thread (SIGHUP -> agent::on_reload hooks, run by the thread in agent::run(), or
/// whoever calls agent::reload()). The current table is a shared_ptr guarded by `mutex_`: resolve
/// copies it under the lock and reads its own copy, reload swaps it under the lock; parsing and the
/// old table's destruction happen outside it, so a reload never stalls resolve for long.
class static_resolver final : public resolver {
  public:
    /// Loads `path` (its `routes:` section). Throws on a bad file.
    explicit static_resolver(std::string path);
    /// A fixed table (tests, embedded defaults).
    explicit static_resolver(std::shared_ptr<const route_table> table);

    void resolve(const std::string& id, const resolve_context& ctx, resolve_callback done) override;
    [[nodiscard]] resolver_stats stats() const override;
    [[nodiscard]] std::string_view name() const noexcept override { return "static"; }

    /// Re-reads the file. On error keeps the current table and returns the reason. Any thread;
    /// concurrent reloads are serialised, so the table installed last is the file read last.
    [[nodiscard]] std::optional<std::string> reload();
    /// The current table (any thread); it stays valid after a reload swaps it out.
    [[nodiscard]] std::shared_ptr<const route_table> table() const;

  private:
    const std::string path_;
    std::mutex reload_mutex_;   ///< one reload at a time: read + parse + swap
    mutable std::mutex mutex_;  ///< guards table_ only (held for a pointer copy or swap)
    std::shared_ptr<const route_table> table_;
    std::atomic<std::uint64_t> calls_{0};
    std::atomic<std::uint64_t> misses_{0};
};

/// Reads and parses a YAML file, turning yaml-cpp errors into "file:line:col: message".
[[nodiscard]] YAML::Node load_yaml_file(const std::string& path);

}  // namespace spoa::handlers::routing
