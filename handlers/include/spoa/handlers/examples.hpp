#pragma once
/// Example handlers shipped with spoa-agent (`--example NAME`).

#include <string_view>
#include <vector>

#include "spoa/agent/agent.hpp"

namespace spoa::handlers {

/// Message `echo`: every argument comes back as a `txn` variable of the same name and typed
/// value (`arg0`, `arg1`... for nameless ones; characters HAProxy refuses in variable names
/// become `_`). A debugging aid and the fixture of the tests.
void register_echo(agent& a);

/// Message `check-client-ip` with argument `ip`: sets `sess` variable `ip_score` (0-100) from a
/// fixed rule (loopback and private ranges score 100, others get a stable pseudo-random score),
/// the reputation example of the SPOE documentation.
void register_ip_reputation(agent& a);

/// The names accepted by `--example`.
[[nodiscard]] std::vector<std::string_view> example_names();
/// Registers the example called `name`; false if there is none.
bool register_example(agent& a, std::string_view name);

}  // namespace spoa::handlers
