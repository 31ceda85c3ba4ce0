#pragma once
// `spoa-agent --probe HOST:PORT`: asks a running agent's admin endpoint for /healthz, so a
// container HEALTHCHECK or a supervisor needs no HTTP client of its own.

#include <chrono>
#include <string>

#include "spoa/agent/config.hpp"

namespace spoa::app {

struct probe_result {
    bool healthy = false;
    std::string detail;  ///< the status line, or why there is none
};

/// GET /healthz on `admin` (a TCP address); healthy only on status 200. Never blocks longer than
/// `timeout` in total (connect, send and read).
[[nodiscard]] probe_result probe_health(const listen_address& admin,
                                        std::chrono::milliseconds timeout);

}  // namespace spoa::app
