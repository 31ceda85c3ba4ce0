#pragma once
/// Per-resource activity records (last seen, decision count) for the scale-to-zero idle signal
/// and `GET /resources`, bounded: resource ids come from clients (every host a client invents
/// behind a wildcard route is a resource), so the table keeps at most `max_entries` records and
/// drops the one resolved least recently when it is full.
///
/// Threads: record() runs on the service loop (after a resolve), for_each() on the admin
/// thread, stats() anywhere; one mutex guards the table. A record is shared with the cached
/// routes that point to it (checked_route::activity): dropping it from the table never frees
/// it under a loop thread that is counting a decision into it.

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "spoa/handlers/routing/route_cache.hpp"

namespace spoa::handlers::routing {

class activity_table {
  public:
    explicit activity_table(std::size_t max_entries) : max_entries_(max_entries) {}

    /// The record of `key` (made if absent), now the most recently resolved one.
    [[nodiscard]] std::shared_ptr<resource_activity> record(app_protocol p, const std::string& key,
                                                            const std::string& id);
    /// Calls `fn` for every record, under the table's lock (keep it short).
    void for_each(const std::function<void(const resource_activity&)>& fn) const;

    struct counts {
        std::uint64_t entries = 0;
        std::uint64_t evictions = 0;  ///< records dropped to stay within max_entries
    };
    [[nodiscard]] counts stats() const;

  private:
    struct entry {
        std::shared_ptr<resource_activity> activity;
        std::list<std::string>::iterator order;  ///< position in `order_`
    };
    const std::size_t max_entries_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, entry> entries_;
    std::list<std::string> order_;  ///< least recently resolved first
    std::uint64_t evictions_ = 0;
};

}  // namespace spoa::handlers::routing
