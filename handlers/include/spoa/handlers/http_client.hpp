#pragma once
/// Asynchronous HTTP requests on a service loop: libcurl's multi interface driven by libuv
/// (socket and timer callbacks), so thousands of requests share one thread and never block.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "spoa/handlers/service_loop.hpp"

namespace spoa::handlers {

struct http_request {
    std::string method = "GET";
    std::string url;
    std::vector<std::string> headers;  ///< "Name: value"
    std::string body;
    std::chrono::milliseconds timeout{2000};
};

struct http_response {
    long status = 0;    ///< 0 when no HTTP answer came (see error)
    std::string body;   ///< truncated at 64 KiB
    std::string error;  ///< transport error (connect refused, timeout ...), empty on an answer
};

class http_client {
  public:
    /// Create and use it on the loop thread; it is shut down when the loop stops (pending
    /// requests complete with an error). Destroy it only after the loop has stopped.
    explicit http_client(service_loop& loop);
    ~http_client();
    http_client(const http_client&) = delete;
    http_client& operator=(const http_client&) = delete;

    /// Service-loop thread only. `done` runs on the loop thread, exactly once.
    void send(http_request req, std::function<void(http_response)> done);

    struct impl;

  private:
    std::shared_ptr<impl> impl_;
};

}  // namespace spoa::handlers
