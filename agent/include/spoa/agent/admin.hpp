#pragma once
/// Routes of the admin HTTP endpoint (served by libmicrohttpd on its own thread). Built-in:
/// GET /healthz and GET /metrics; handler code adds its own (e.g. POST /invalidate).

#include <functional>
#include <map>
#include <string>

namespace spoa {

struct admin_request {
    std::string method;
    std::string path;
    std::map<std::string, std::string> query;
    std::string body;
};

struct admin_response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
};

/// Runs on the admin server's thread: it must be thread-safe with respect to the loops.
using admin_handler = std::function<admin_response(const admin_request&)>;

}  // namespace spoa
