#include "spoa/agent/reply.hpp"

#include <array>
#include <stdexcept>

#include "async_state.hpp"
#include "deferral.hpp"

namespace spoa {

namespace {

// protocol/README.md §5.3: HAProxy silently ignores names with other characters. A table, because
// every variable of every answer is checked.
constexpr std::array<bool, 256> name_chars = [] {
    std::array<bool, 256> t{};
    for (int c = 'a'; c <= 'z'; ++c)
        t[static_cast<std::size_t>(c)] = true;
    for (int c = 'A'; c <= 'Z'; ++c)
        t[static_cast<std::size_t>(c)] = true;
    for (int c = '0'; c <= '9'; ++c)
        t[static_cast<std::size_t>(c)] = true;
    t['_'] = true;
    t['.'] = true;
    return t;
}();

}  // namespace

bool reply::valid_name(std::string_view name) noexcept {
    if (name.empty()) return false;
    bool ok = true;
    for (const char c : name)
        ok &= name_chars[static_cast<unsigned char>(c)];
    return ok;
}

bool reply::set(var_scope scope, std::string_view name, const typed_value& value) {
    if (!out_ || !valid_name(name) ||
        !protocol::encode_set_var_within(*out_, limit_, scope, name, value)) {
        ++refused_;
        return false;
    }
    ++count_;
    return true;
}

bool reply::set_ip(var_scope scope, std::string_view name, const ip_address& addr) {
    return set(
        scope, name,
        addr.is_v4() ? typed_value::ipv4(addr.v4_bytes()) : typed_value::ipv6(addr.v6_bytes()));
}

bool reply::append_encoded(protocol::bytes_view encoded, std::size_t actions) {
    if (!out_ || out_->size() + encoded.size() > limit_) {
        refused_ += actions;
        return false;
    }
    out_->append(encoded);
    count_ += actions;
    return true;
}

async_reply reply::defer() {
    if (!deferral_) {
        throw std::logic_error(
            "reply::defer(): only the reply given to a sync handler, once, during the call");
    }
    detail::deferral* d = deferral_;
    deferral_ = nullptr;
    const detail::deferral::target t = d->defer();
    rebind(t.frame_actions, t.limit);
    return async_reply(t.state);
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
