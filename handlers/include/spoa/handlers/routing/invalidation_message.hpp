#pragma once
/// The text of one message on the invalidation channel (`<key_prefix>invalidate`), what agents
/// publish and what a platform may publish itself (README "Running several agents"):
///
///     1 <origin> <protocol> <id>
///
/// - `1`: the format's version; a message of another version is ignored (counted as malformed).
/// - origin: the publishing agent's id (an agent ignores its own echo); a platform writes `-`.
/// - protocol: http, postgres, tcp or tls; `*` for every protocol.
/// - id: the resource id, the rest of the message (it may hold spaces; not empty). HTTP and TLS
///   ids are host names, normalised by the receiver as for POST /invalidate.
///
/// Example: `PUBLISH spoa:invalidate "1 - * app.example.com"`.

#include <optional>
#include <string>
#include <string_view>

#include "spoa/handlers/routing/resolver.hpp"

namespace spoa::handlers::routing {

struct invalidation_message {
    std::string origin;                    ///< agent id, or "-" (a platform)
    std::optional<app_protocol> protocol;  ///< nullopt: every protocol
    std::string id;
};

[[nodiscard]] std::string encode(const invalidation_message& m);
/// nullopt for anything that is not a version-1 message with a known protocol and an id.
[[nodiscard]] std::optional<invalidation_message> parse_invalidation(std::string_view text);

/// The next space-separated field of `rest`, removed from it (the fleet's channel messages are
/// space-separated fields, the id last).
[[nodiscard]] std::string_view next_field(std::string_view& rest) noexcept;
/// `text` without the newline a platform's PUBLISH from a shell may end with (no part of an id).
[[nodiscard]] std::string_view trim_line_end(std::string_view text) noexcept;

/// 1 to 64 characters of letters, digits, '.', '_' and '-' (no spaces: it is one field); not "-"
/// alone.
[[nodiscard]] bool valid_agent_id(std::string_view id) noexcept;
/// 16 random hex digits, for an agent whose configuration names none.
[[nodiscard]] std::string random_agent_id();

}  // namespace spoa::handlers::routing
