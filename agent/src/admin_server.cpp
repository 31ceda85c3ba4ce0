#include "admin_server.hpp"

#include <microhttpd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <stdexcept>
#include <string_view>

namespace spoa::detail {
namespace {

/// Request bodies above this are refused (admin calls are small).
constexpr std::size_t max_body = 1024 * 1024;

struct request_state {
    std::string body;
    bool too_large = false;
};

MHD_Result collect_arg(void* cls, MHD_ValueKind, const char* key, const char* value) {
    auto* q = static_cast<std::map<std::string, std::string>*>(cls);
    (*q)[key ? key : ""] = value ? value : "";
    return MHD_YES;
}

MHD_Result collect_header(void* cls, MHD_ValueKind, const char* key, const char* value) {
    auto* h = static_cast<std::map<std::string, std::string>*>(cls);
    std::string name = key ? key : "";
    for (char& c : name)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    (*h)[name] = value ? value : "";
    return MHD_YES;
}

/// Compares in time that depends on the lengths only, not on where the first difference is.
bool same_secret(std::string_view a, std::string_view b) noexcept {
    unsigned char diff = a.size() == b.size() ? 0 : 1;
    const std::size_t n = std::min(a.size(), b.size());
    for (std::size_t i = 0; i < n; ++i)
        diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

MHD_Result send(MHD_Connection* conn, const admin_response& r) {
    MHD_Response* resp = MHD_create_response_from_buffer(
        r.body.size(), const_cast<char*>(r.body.data()), MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", r.content_type.c_str());
    for (const auto& [name, value] : r.headers)
        MHD_add_response_header(resp, name.c_str(), value.c_str());
    const MHD_Result ok = MHD_queue_response(conn, static_cast<unsigned>(r.status), resp);
    MHD_destroy_response(resp);
    return ok;
}

MHD_Result on_request(void* cls, MHD_Connection* conn, const char* url, const char* method,
                      const char*, const char* upload_data, std::size_t* upload_size,
                      void** con_cls) {
    auto* self = static_cast<admin_server*>(cls);
    auto* st = static_cast<request_state*>(*con_cls);
    if (!st) {
        *con_cls = new request_state;
        return MHD_YES;
    }
    if (*upload_size != 0) {
        if (st->body.size() + *upload_size > max_body) {
            st->too_large = true;
        } else {
            st->body.append(upload_data, *upload_size);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (st->too_large) return send(conn, {413, "text/plain", "request body too large\n"});
    admin_request req;
    req.method = method;
    req.path = url;
    req.body = std::move(st->body);
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &req.query);
    MHD_get_connection_values(conn, MHD_HEADER_KIND, collect_header, &req.headers);
    admin_response resp;
    try {
        resp = self->serve(req);
    } catch (const std::exception& e) {
        resp = {500, "text/plain", std::string("error: ") + e.what() + "\n"};
    }
    return send(conn, resp);
}

void on_completed(void*, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
    delete static_cast<request_state*>(*con_cls);
    *con_cls = nullptr;
}

}  // namespace

admin_server::admin_server(int listen_fd, std::vector<admin_route> routes, std::string token)
    : routes_(std::move(routes)), token_(std::move(token)) {
    daemon_ = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, nullptr, nullptr, &on_request, this,
        MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_NOTIFY_COMPLETED, &on_completed, nullptr,
        MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_END);
    if (!daemon_) {
        ::close(listen_fd);
        throw std::runtime_error("cannot start the admin HTTP server");
    }
}

admin_server::~admin_server() {
    // MHD closes the listening socket it was given when it stops.
    if (daemon_) MHD_stop_daemon(daemon_);
}

bool admin_server::authorized(const admin_request& req) const noexcept {
    if (token_.empty()) return true;
    const auto h = req.headers.find("authorization");
    if (h == req.headers.end()) return false;
    constexpr std::string_view scheme = "Bearer ";
    const std::string_view value = h->second;
    return value.size() > scheme.size() && value.substr(0, scheme.size()) == scheme &&
           same_secret(value.substr(scheme.size()), token_);
}

admin_response admin_server::serve(const admin_request& req) const {
    bool path_known = false;
    for (const auto& r : routes_) {
        if (r.path != req.path) continue;
        path_known = true;
        if (r.method != req.method) continue;
        if (!r.open && !authorized(req)) {
            return {401,
                    "text/plain",
                    "a bearer token is required (Authorization: Bearer <token>)\n",
                    {{"WWW-Authenticate", "Bearer realm=\"spoa-agent\""}}};
        }
        return r.handler(req);
    }
    if (path_known) return {405, "text/plain", "method not allowed\n"};
    return {404, "text/plain", "not found\n"};
}

}  // namespace spoa::detail
