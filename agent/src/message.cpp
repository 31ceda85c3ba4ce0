#include "spoa/agent/message.hpp"

#include <string>

namespace spoa {

const protocol::argument& message::at(std::size_t index) const {
    if (index >= view_.args.size()) {
        throw argument_error("message '" + std::string(name()) + "' has " +
                             std::to_string(view_.args.size()) + " arguments, asked for #" +
                             std::to_string(index));
    }
    return view_.args[index];
}

const typed_value* message::find(std::string_view name) const noexcept {
    for (const auto& a : view_.args) {
        if (a.name == name) return &a.value;
    }
    return nullptr;
}

const typed_value& message::require(std::string_view name, std::string_view wanted) const {
    const typed_value* v = find(name);
    if (v == nullptr || v->is_null()) {
        throw argument_error("message '" + std::string(this->name()) + "': argument '" +
                             std::string(name) + "' is " + (v ? "null" : "missing") +
                             ", expected " + std::string(wanted));
    }
    return *v;
}

void message::wrong_type(std::string_view name, const typed_value& v,
                         std::string_view wanted) const {
    throw argument_error("message '" + std::string(this->name()) + "': argument '" +
                         std::string(name) + "' is " + std::string(protocol::to_string(v.type())) +
                         ", expected " + std::string(wanted));
}

std::string_view message::get_string(std::string_view name) const {
    const typed_value& v = require(name, "string");
    if (v.type() != data_type::string) wrong_type(name, v, "string");
    return v.as_string();
}

std::string_view message::get_bytes(std::string_view name) const {
    const typed_value& v = require(name, "binary or string");
    if (v.type() != data_type::string && v.type() != data_type::binary) {
        wrong_type(name, v, "binary or string");
    }
    return v.as_string();
}

std::int64_t message::get_int(std::string_view name) const {
    const typed_value& v = require(name, "integer");
    if (!v.is_integer()) wrong_type(name, v, "integer");
    return v.as_int64();
}

bool message::get_bool(std::string_view name) const {
    const typed_value& v = require(name, "bool");
    if (v.type() != data_type::boolean) wrong_type(name, v, "bool");
    return v.as_bool();
}

ip_address message::get_ip(std::string_view name) const {
    const typed_value& v = require(name, "ip address");
    if (auto ip = try_ip(name)) return *ip;
    wrong_type(name, v, "ip address");
}

std::optional<std::string_view> message::try_string(std::string_view name) const noexcept {
    const typed_value* v = find(name);
    if (!v || v->type() != data_type::string) return std::nullopt;
    return v->as_string();
}

std::optional<std::string_view> message::try_bytes(std::string_view name) const noexcept {
    const typed_value* v = find(name);
    if (!v || (v->type() != data_type::string && v->type() != data_type::binary)) {
        return std::nullopt;
    }
    return v->as_string();
}

std::optional<std::int64_t> message::try_int(std::string_view name) const noexcept {
    const typed_value* v = find(name);
    if (!v || !v->is_integer()) return std::nullopt;
    return v->as_int64();
}

std::optional<bool> message::try_bool(std::string_view name) const noexcept {
    const typed_value* v = find(name);
    if (!v || v->type() != data_type::boolean) return std::nullopt;
    return v->as_bool();
}

std::optional<ip_address> message::try_ip(std::string_view name) const noexcept {
    const typed_value* v = find(name);
    if (!v) return std::nullopt;
    switch (v->type()) {
        case data_type::ipv4:
            return ip_address::v4(v->as_ipv4());
        case data_type::ipv6:
            return ip_address::v6(v->as_ipv6());
        case data_type::string:
            try {
                return ip_address::parse(v->as_string());
            } catch (...) {
                return std::nullopt;
            }
        default:
            return std::nullopt;
    }
}

}  // namespace spoa
