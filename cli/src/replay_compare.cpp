#include "replay_compare.hpp"

#include <algorithm>

namespace spoa::cli {
namespace {

std::vector<protocol::owned_action> compared(std::span<const protocol::owned_action> actions,
                                             const std::set<std::string, std::less<>>& ignored) {
    std::vector<protocol::owned_action> out;
    for (const auto& a : actions) {
        if (!ignored.contains(a.name)) out.push_back(a);
    }
    return out;
}

}  // namespace

action_diff compare_actions(std::span<const protocol::owned_action> recorded,
                            std::span<const protocol::owned_action> replayed,
                            const std::set<std::string, std::less<>>& ignored) {
    action_diff d;
    std::vector<protocol::owned_action> left = compared(replayed, ignored);
    for (auto& a : compared(recorded, ignored)) {
        const auto match = std::find(left.begin(), left.end(), a);
        if (match == left.end()) {
            d.recorded_only.push_back(std::move(a));
        } else {
            left.erase(match);
        }
    }
    d.replayed_only = std::move(left);
    return d;
}

}  // namespace spoa::cli
