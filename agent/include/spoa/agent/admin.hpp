#pragma once
/// Routes of the admin HTTP endpoint (served by libmicrohttpd on its own thread). Built-in:
/// GET /healthz (alive), GET /readyz (ready to serve), GET /metrics; handler code adds its own
/// (e.g. POST /invalidate). With an admin token configured, every route but /healthz and
/// /readyz needs `Authorization: Bearer <token>`.

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace spoa {

struct admin_request {
    std::string method;
    std::string path;
    std::map<std::string, std::string> query;
    std::map<std::string, std::string> headers;  ///< names in lowercase
    std::string body;
};

struct admin_response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    std::vector<std::pair<std::string, std::string>> headers{};  ///< besides Content-Type
};

/// Runs on the admin server's thread: it must be thread-safe with respect to the loops.
using admin_handler = std::function<admin_response(const admin_request&)>;

}  // namespace spoa
