#pragma once
// The one exception spoa-cli's commands throw: a message for stderr and the exit code it maps to.

#include <stdexcept>
#include <string>

#include "exit_code.hpp"

namespace spoa::cli {

class cli_error : public std::runtime_error {
  public:
    cli_error(exit_code code, const std::string& what) : std::runtime_error(what), code_(code) {}
    [[nodiscard]] exit_code code() const noexcept { return code_; }

  private:
    exit_code code_;
};

}  // namespace spoa::cli
