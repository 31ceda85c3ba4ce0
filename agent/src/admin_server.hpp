#pragma once
// The admin HTTP endpoint on libmicrohttpd's own thread: /healthz, /readyz, /metrics and routes
// added by handler code, behind an optional bearer token.

#include <functional>
#include <string>
#include <vector>

#include "spoa/agent/admin.hpp"

struct MHD_Daemon;

namespace spoa::detail {

struct admin_route {
    std::string method;
    std::string path;
    admin_handler handler;
    /// Served without the token: probes (/healthz, /readyz) must work for any orchestrator.
    bool open = false;
};

class admin_server {
  public:
    /// Takes ownership of `listen_fd` (already bound and listening). With a non-empty `token`,
    /// routes that are not `open` answer 401 unless the request carries it as a bearer token.
    admin_server(int listen_fd, std::vector<admin_route> routes, std::string token);
    ~admin_server();
    admin_server(const admin_server&) = delete;
    admin_server& operator=(const admin_server&) = delete;

    /// Serves the request (used by the MHD callback; public for tests).
    [[nodiscard]] admin_response serve(const admin_request& req) const;

  private:
    [[nodiscard]] bool authorized(const admin_request& req) const noexcept;

    std::vector<admin_route> routes_;
    std::string token_;
    MHD_Daemon* daemon_ = nullptr;
};

}  // namespace spoa::detail
