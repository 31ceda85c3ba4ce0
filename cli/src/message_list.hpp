#pragma once
// The words after `spoa-cli notify`: a word without `=` names a SPOE message, the
// `name=type:value` words after it are its arguments. So one NOTIFY may carry several messages:
//   route-http host=str:a.example path=str:/  check-ip ip=ipv4:192.0.2.1
// Pure: no I/O.

#include <span>
#include <string>
#include <vector>

#include "spoa/protocol/byte_buffer.hpp"
#include "value_syntax.hpp"

namespace spoa::cli {

struct message_request {
    std::string name;
    std::vector<named_value> args;

    friend bool operator==(const message_request&, const message_request&) = default;
};

/// Groups `words` into messages. Throws std::invalid_argument when the first word is an
/// argument, a message has more than 255 arguments, or an argument does not parse.
[[nodiscard]] std::vector<message_request> parse_messages(std::span<const std::string> words);

/// Appends the NOTIFY payload of `messages` (protocol/README.md §5.2).
void encode_messages(protocol::byte_buffer& out, std::span<const message_request> messages);

}  // namespace spoa::cli
