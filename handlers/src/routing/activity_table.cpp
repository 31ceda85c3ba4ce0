#include "spoa/handlers/routing/activity_table.hpp"

#include <algorithm>

namespace spoa::handlers::routing {

std::shared_ptr<resource_activity> activity_table::record(app_protocol p, const std::string& key,
                                                          const std::string& id) {
    std::lock_guard lock(mutex_);
    if (const auto it = entries_.find(key); it != entries_.end()) {
        order_.splice(order_.end(), order_, it->second.order);
        return it->second.activity;
    }
    while (!order_.empty() && entries_.size() >= std::max<std::size_t>(1, max_entries_)) {
        entries_.erase(order_.front());
        order_.pop_front();
        ++evictions_;
    }
    auto activity = std::make_shared<resource_activity>(p, id);
    order_.push_back(key);
    entries_.emplace(key, entry{activity, std::prev(order_.end())});
    return activity;
}

void activity_table::for_each(const std::function<void(const resource_activity&)>& fn) const {
    std::lock_guard lock(mutex_);
    for (const auto& key : order_)
        fn(*entries_.at(key).activity);
}

activity_table::counts activity_table::stats() const {
    std::lock_guard lock(mutex_);
    return {entries_.size(), evictions_};
}

}  // namespace spoa::handlers::routing
