#pragma once
/// Typed values and ACK actions that own their bytes, for clients that keep what they decoded
/// after the frame's buffer is gone (spoa-cli, the tests' fake HAProxy). The codec itself only
/// hands out views (typed_value.hpp).

#include <cstdint>
#include <string>
#include <vector>

#include "spoa/protocol/action.hpp"
#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/error.hpp"
#include "spoa/protocol/typed_value.hpp"

namespace spoa::protocol {

/// A typed value that owns its bytes (typed_value only views them).
struct owned_value {
    data_type type = data_type::null;
    std::uint64_t integer = 0;  ///< BOOL (0/1) and the four integer types (wire pattern)
    std::string bytes;          ///< STRING, BINARY, IPV4 (4 bytes), IPV6 (16 bytes)

    [[nodiscard]] static owned_value from(const typed_value& v);
    /// A typed_value viewing this object's bytes (valid while this object is).
    [[nodiscard]] typed_value view() const;
    /// e.g. `int32(42)`, `string("allow")`, `ipv4(0a 00 00 01)`.
    [[nodiscard]] std::string to_string() const;

    friend bool operator==(const owned_value&, const owned_value&) = default;
};

/// One action of an ACK, owned.
struct owned_action {
    action_type type = action_type::set_var;
    var_scope scope = var_scope::txn;
    std::string name;
    owned_value value;  ///< null for unset-var

    /// e.g. `set-var(txn.verdict = string("allow"))`, `unset-var(txn.old)`.
    [[nodiscard]] std::string to_string() const;
    friend bool operator==(const owned_action&, const owned_action&) = default;
};

/// Decodes a whole ACK payload into owned actions (`out` cleared first). Errors as
/// decode_actions.
[[nodiscard]] error decode_owned_actions(bytes_view payload, std::vector<owned_action>& out);

/// Hex dump "00 01 ff".
[[nodiscard]] std::string to_hex(bytes_view bytes);

}  // namespace spoa::protocol
