#pragma once
// The admin HTTP endpoint on libmicrohttpd's own thread: /healthz, /metrics and routes added by
// handler code.

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
};

class admin_server {
  public:
    /// Takes ownership of `listen_fd` (already bound and listening).
    admin_server(int listen_fd, std::vector<admin_route> routes);
    ~admin_server();
    admin_server(const admin_server&) = delete;
    admin_server& operator=(const admin_server&) = delete;

    /// Serves the request (used by the MHD callback; public for tests).
    [[nodiscard]] admin_response serve(const admin_request& req) const;

  private:
    std::vector<admin_route> routes_;
    MHD_Daemon* daemon_ = nullptr;
};

}  // namespace spoa::detail
