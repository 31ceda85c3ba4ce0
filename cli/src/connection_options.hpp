#pragma once
// What every spoa-cli command that talks to an agent needs: where, and how long to wait.

#include <chrono>

#include "spoa/protocol/client_hello.hpp"
#include "target.hpp"

namespace spoa::cli {

struct connection_options {
    target where;
    /// Longest wait for the connect and for each answer.
    std::chrono::milliseconds timeout{3000};
    /// What spoa-cli announces: HAProxy 3.x's HELLO with spoa-cli's engine-id.
    protocol::haproxy_hello_options hello = [] {
        auto h = protocol::haproxy_hello_options::v3();
        h.engine_id = "spoa-cli";
        return h;
    }();
};

}  // namespace spoa::cli
