#pragma once
// A JSON string literal for arbitrary bytes: SPOP strings carry no encoding guarantee, so control
// characters and bytes that are not valid UTF-8 leave as \u00XX escapes (one per byte) instead of
// producing invalid JSON.

#include <string>
#include <string_view>

namespace spoa::cli {

/// `text` quoted and escaped as a JSON string.
[[nodiscard]] std::string json_string(std::string_view text);

}  // namespace spoa::cli
