#include "spoa/agent/reply.hpp"

#include "async_state.hpp"

namespace spoa {

bool reply::valid_name(std::string_view name) noexcept {
    // spop-spec §5.3: HAProxy silently ignores names with other characters.
    if (name.empty()) return false;
    for (const char c : name) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '.';
        if (!ok) return false;
    }
    return true;
}

bool reply::set(var_scope scope, std::string_view name, const typed_value& value) {
    if (!out_ || !valid_name(name) || out_->size() + protocol::set_var_size(name, value) > limit_) {
        ++refused_;
        return false;
    }
    protocol::encode_set_var(*out_, scope, name, value);
    ++count_;
    return true;
}

bool reply::set_ip(var_scope scope, std::string_view name, const ip_address& addr) {
    return set(
        scope, name,
        addr.is_v4() ? typed_value::ipv4(addr.v4_bytes()) : typed_value::ipv6(addr.v6_bytes()));
}

bool reply::unset(var_scope scope, std::string_view name) {
    if (!out_ || !valid_name(name) || out_->size() + protocol::unset_var_size(name) > limit_) {
        ++refused_;
        return false;
    }
    protocol::encode_unset_var(*out_, scope, name);
    ++count_;
    return true;
}

async_reply::async_reply(detail::async_state* state) noexcept : state_(state) {
    rebind(&state->actions, state->budget());
}

async_reply::async_reply(async_reply&& other) noexcept : reply(), state_(other.state_) {
    if (state_) {
        rebind(&state_->actions, state_->budget());
        // The counters live in the reply object: keep the refusals made before the move.
        state_->refused += other.refused();
    }
    other.state_ = nullptr;
    other.rebind(nullptr, 0);
}

async_reply::~async_reply() {
    done();
}

void async_reply::done() noexcept {
    if (!state_) return;
    detail::async_state* s = state_;
    state_ = nullptr;
    s->refused += refused();
    rebind(nullptr, 0);
    s->complete();
}

bool async_reply::abandoned() const noexcept {
    return !state_ || state_->abandoned();
}

}  // namespace spoa
