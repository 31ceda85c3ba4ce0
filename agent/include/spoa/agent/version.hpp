#pragma once
/// The library's version string.

namespace spoa {

[[nodiscard]] const char* version() noexcept;

}  // namespace spoa
