#pragma once
// How spoa-cli prints an ACK's actions: an aligned table (SCOPE NAME TYPE VALUE) for people, or
// one JSON object for scripts. Values use value_syntax.hpp's forms (bin as hex, addresses as
// text); an unset-var shows type "unset" and no value.

#include <span>
#include <string>

#include "spoa/protocol/owned_value.hpp"

namespace spoa::cli {

[[nodiscard]] std::string actions_table(std::span<const protocol::owned_action> actions);

/// {"actions":[{"action":"set-var","scope":"txn","name":"x","type":"str","value":"y"},...]}
/// Integers are JSON numbers, bool true/false, null null, everything else a string.
[[nodiscard]] std::string actions_json(std::span<const protocol::owned_action> actions);

/// The value as a JSON value (see actions_json).
[[nodiscard]] std::string json_value(const protocol::owned_value& value);

}  // namespace spoa::cli
