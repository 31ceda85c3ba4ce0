#include "message_list.hpp"

#include <stdexcept>

#include "spoa/protocol/notify.hpp"

namespace spoa::cli {

std::vector<message_request> parse_messages(std::span<const std::string> words) {
    std::vector<message_request> out;
    for (const std::string& w : words) {
        if (w.find('=') == std::string::npos) {
            if (w.empty()) throw std::invalid_argument("empty message name");
            out.push_back({w, {}});
            continue;
        }
        if (out.empty()) {
            throw std::invalid_argument("argument '" + w + "' comes before any message name");
        }
        if (out.back().args.size() == protocol::max_args_per_message) {
            throw std::invalid_argument("message '" + out.back().name +
                                        "' has more than 255 arguments");
        }
        out.back().args.push_back(parse_argument(w));
    }
    if (out.empty()) throw std::invalid_argument("no message name given");
    return out;
}

void encode_messages(protocol::byte_buffer& out, std::span<const message_request> messages) {
    std::vector<protocol::argument> args;
    for (const auto& m : messages) {
        args.clear();
        for (const auto& a : m.args)
            args.push_back({a.name, a.value.view()});
        protocol::encode_message(out, m.name, args);
    }
}

}  // namespace spoa::cli
