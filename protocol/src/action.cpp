#include "spoa/protocol/action.hpp"

#include <cstring>

#include "spoa/protocol/byte_reader.hpp"
#include "typed_value_writer.hpp"

namespace spoa::protocol {

std::string_view to_string(var_scope scope) noexcept {
    switch (scope) {
        case var_scope::proc:
            return "proc";
        case var_scope::sess:
            return "sess";
        case var_scope::txn:
            return "txn";
        case var_scope::req:
            return "req";
        case var_scope::res:
            return "res";
    }
    return "unknown";
}

void encode_set_var(byte_buffer& out, var_scope scope, std::string_view name,
                    const typed_value& value) {
    // One reservation for the whole action: ACK encoding is on every frame's path.
    std::uint8_t* const start =
        out.prepare(3 + max_varint_size + name.size() + detail::max_typed_value_size(value));
    std::uint8_t* p = start;
    p[0] = static_cast<std::uint8_t>(action_type::set_var);
    p[1] = 3;  // nb-args: scope, name, value
    p[2] = static_cast<std::uint8_t>(scope);
    p += 3;
    p += encode_varint(name.size(), p);
    if (!name.empty()) std::memcpy(p, name.data(), name.size());
    p += name.size();
    p += detail::write_typed_value(p, value);
    out.commit(static_cast<std::size_t>(p - start));
}

bool encode_set_var_within(byte_buffer& out, std::size_t limit, var_scope scope,
                           std::string_view name, const typed_value& value) {
    if (out.size() > limit) return false;
    const std::size_t room = limit - out.size();
    const std::size_t bound =
        3 + max_varint_size + name.size() + detail::max_typed_value_size(value);
    if (bound > room && set_var_size(name, value) > room) return false;
    encode_set_var(out, scope, name, value);
    return true;
}

void encode_unset_var(byte_buffer& out, var_scope scope, std::string_view name) {
    std::uint8_t* p = out.prepare(3);
    p[0] = static_cast<std::uint8_t>(action_type::unset_var);
    p[1] = 2;  // nb-args: scope, name
    p[2] = static_cast<std::uint8_t>(scope);
    out.commit(3);
    out.put_length_prefixed(name);
}

std::size_t set_var_size(std::string_view name, const typed_value& value) noexcept {
    return 3 + varint_size(name.size()) + name.size() + encoded_size(value);
}

std::size_t unset_var_size(std::string_view name) noexcept {
    return 3 + varint_size(name.size()) + name.size();
}

error decode_actions(bytes_view payload, std::vector<action>& out) {
    out.clear();
    byte_reader in(payload);
    while (!in.empty()) {
        std::uint8_t type = 0;
        std::uint8_t nb_args = 0;
        std::uint8_t scope = 0;
        if (const error e = in.read_u8(type); e != error::none) return e;
        if (const error e = in.read_u8(nb_args); e != error::none) return e;
        const bool set = type == static_cast<std::uint8_t>(action_type::set_var) && nb_args == 3;
        const bool unset =
            type == static_cast<std::uint8_t>(action_type::unset_var) && nb_args == 2;
        if (!set && !unset) return error::bad_action;
        if (const error e = in.read_u8(scope); e != error::none) return e;
        if (scope > static_cast<std::uint8_t>(var_scope::res)) return error::bad_scope;
        action a;
        a.type = set ? action_type::set_var : action_type::unset_var;
        a.scope = static_cast<var_scope>(scope);
        if (const error e = in.read_string(a.name); e != error::none) return e;
        if (set) {
            if (const error e = decode_typed_value(in, a.value); e != error::none) return e;
        }
        out.push_back(a);
    }
    return error::none;
}

ack_writer::ack_writer(byte_buffer& out, std::uint64_t stream_id, std::uint64_t frame_id,
                       std::uint32_t max_frame_size)
    : writer_(out), max_frame_size_(max_frame_size) {
    writer_.begin(frame_type::ack, frame_flags::fin, stream_id, frame_id);
    payload_start_ = out.size();
}

bool ack_writer::fits(std::size_t n) noexcept {
    if (writer_.frame_size() + n <= max_frame_size_) return true;
    ++dropped_;
    return false;
}

bool ack_writer::set_var(var_scope scope, std::string_view name, const typed_value& value) {
    if (!fits(set_var_size(name, value))) return false;
    encode_set_var(writer_.buffer(), scope, name, value);
    ++actions_;
    return true;
}

bool ack_writer::unset_var(var_scope scope, std::string_view name) {
    if (!fits(unset_var_size(name))) return false;
    encode_unset_var(writer_.buffer(), scope, name);
    ++actions_;
    return true;
}

bool ack_writer::append_encoded(bytes_view actions) {
    if (!fits(actions.size())) return false;
    writer_.buffer().append(actions);
    ++actions_;
    return true;
}

std::size_t ack_writer::payload_size() const noexcept {
    return writer_.buffer().size() - payload_start_;
}

void ack_writer::reset_actions() noexcept {
    writer_.buffer().truncate(payload_start_);
    actions_ = 0;
}

void ack_writer::finish() noexcept {
    // Every action was checked against the limit and the header alone is far below the
    // 256-byte minimum, so the frame always fits.
    (void)writer_.finish(max_frame_size_);
}

}  // namespace spoa::protocol
