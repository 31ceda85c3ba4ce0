#include "ack_output.hpp"

#include <algorithm>
#include <array>
#include <vector>

#include "json_text.hpp"
#include "value_syntax.hpp"

namespace spoa::cli {
namespace {

using protocol::action_type;
using protocol::data_type;
using row = std::array<std::string, 4>;

row row_of(const protocol::owned_action& a) {
    const bool unset = a.type == action_type::unset_var;
    return {std::string(protocol::to_string(a.scope)), a.name,
            unset ? "unset" : std::string(type_name(a.value.type)),
            unset ? "" : format_value(a.value)};
}

}  // namespace

std::string actions_table(std::span<const protocol::owned_action> actions) {
    std::vector<row> rows{{"SCOPE", "NAME", "TYPE", "VALUE"}};
    for (const auto& a : actions)
        rows.push_back(row_of(a));
    std::array<std::size_t, 3> width{};
    for (const auto& r : rows) {
        for (std::size_t c = 0; c < width.size(); ++c)
            width[c] = std::max(width[c], r[c].size());
    }
    std::string out;
    for (const auto& r : rows) {
        for (std::size_t c = 0; c < width.size(); ++c)
            out += r[c] + std::string(width[c] - r[c].size() + 2, ' ');
        out += r[3];
        // An unset-var or a null has no value: no padding left at the end of its line.
        while (out.back() == ' ')
            out.pop_back();
        out += '\n';
    }
    return out;
}

std::string json_value(const protocol::owned_value& value) {
    switch (value.type) {
        case data_type::null:
            return "null";
        case data_type::boolean:
        case data_type::int32:
        case data_type::uint32:
        case data_type::int64:
        case data_type::uint64:
            return format_value(value);
        case data_type::ipv4:
        case data_type::ipv6:
        case data_type::string:
        case data_type::binary:
            return json_string(format_value(value));
    }
    return "null";
}

std::string actions_json(std::span<const protocol::owned_action> actions) {
    std::string out = "{\"actions\":[";
    for (std::size_t i = 0; i < actions.size(); ++i) {
        const auto& a = actions[i];
        const bool unset = a.type == action_type::unset_var;
        if (i != 0) out += ',';
        out += "{\"action\":";
        out += unset ? "\"unset-var\"" : "\"set-var\"";
        out += ",\"scope\":" + json_string(protocol::to_string(a.scope));
        out += ",\"name\":" + json_string(a.name);
        if (!unset) {
            out += ",\"type\":" + json_string(type_name(a.value.type));
            out += ",\"value\":" + json_value(a.value);
        }
        out += '}';
    }
    out += "]}\n";
    return out;
}

}  // namespace spoa::cli
