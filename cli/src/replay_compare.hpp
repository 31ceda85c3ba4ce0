#pragma once
// Whether a replayed ACK says the same as the recorded one. Pure: no I/O.
//
// Actions on ignored names (values that legitimately vary, e.g. the routing agent's decision_us
// and wait_ms) are left out; the rest is compared as a multiset, so the order in which handlers
// wrote their variables does not matter.

#include <set>
#include <span>
#include <string>
#include <vector>

#include "spoa/protocol/owned_value.hpp"

namespace spoa::cli {

struct action_diff {
    std::vector<protocol::owned_action> recorded_only;
    std::vector<protocol::owned_action> replayed_only;

    [[nodiscard]] bool same() const noexcept {
        return recorded_only.empty() && replayed_only.empty();
    }
};

[[nodiscard]] action_diff compare_actions(std::span<const protocol::owned_action> recorded,
                                          std::span<const protocol::owned_action> replayed,
                                          const std::set<std::string, std::less<>>& ignored);

}  // namespace spoa::cli
