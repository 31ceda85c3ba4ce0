#pragma once
// The `name=type:value` syntax of spoa-cli's NOTIFY arguments, and the same type names and value
// forms when it prints an ACK. Pure: no I/O.
//
//   type   null | bool | int32 | uint32 | int64 | uint64 | ipv4 | ipv6 | str | bin
//   value  null: nothing (`x=null` or `x=null:`); bool: true | false; integers: decimal
//          (a leading - for int32/int64); ipv4/ipv6: the usual text form; str: the bytes as
//          written; bin: hex digits, an even number of them.
//   name   may be empty (`=str:GET`): HAProxy sends an argument written without a name so.

#include <string>
#include <string_view>

#include "spoa/protocol/owned_value.hpp"
#include "spoa/protocol/typed_value.hpp"

namespace spoa::cli {

struct named_value {
    std::string name;
    protocol::owned_value value;

    friend bool operator==(const named_value&, const named_value&) = default;
};

/// Parses `name=type:value`. Throws std::invalid_argument naming the bad part.
[[nodiscard]] named_value parse_argument(std::string_view text);

/// Parses `type:value` (the part after the first `=`). Throws std::invalid_argument.
[[nodiscard]] protocol::owned_value parse_typed_value(std::string_view text);

/// The syntax's name of `type` ("str", "bin", "int32", ...).
[[nodiscard]] std::string_view type_name(protocol::data_type type) noexcept;

/// The value as the syntax writes it (without the type): what the table and JSON show.
[[nodiscard]] std::string format_value(const protocol::owned_value& value);

}  // namespace spoa::cli
