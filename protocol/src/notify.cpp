#include "spoa/protocol/notify.hpp"

#include "spoa/protocol/byte_reader.hpp"

namespace spoa::protocol {

notify_decoder::notify_decoder() {
    // Sized for the common case (a handful of messages); grows once if a frame needs more.
    ranges_.reserve(8);
    messages_.reserve(8);
    args_.reserve(64);
}

error notify_decoder::decode(bytes_view payload) {
    ranges_.clear();
    messages_.clear();
    args_.clear();
    byte_reader in(payload);
    while (!in.empty()) {
        message_range range;
        std::uint8_t nb_args = 0;
        error e = in.read_string(range.name);
        if (e == error::none) e = in.read_u8(nb_args);
        range.first = args_.size();
        range.count = nb_args;
        for (std::uint8_t i = 0; e == error::none && i < nb_args; ++i) {
            argument& arg = args_.emplace_back();
            e = in.read_string(arg.name);
            if (e == error::none) e = decode_typed_value(in, arg.value);
        }
        if (e != error::none) {
            ranges_.clear();
            args_.clear();
            return e;
        }
        ranges_.push_back(range);
    }
    // Spans are built once the argument array has stopped growing (and moving).
    for (const message_range& r : ranges_) {
        messages_.push_back(message_view{r.name, {args_.data() + r.first, r.count}});
    }
    return error::none;
}

void encode_message(byte_buffer& out, std::string_view name, std::span<const argument> args) {
    out.put_length_prefixed(name);
    out.put_u8(static_cast<std::uint8_t>(args.size()));
    for (const argument& a : args) {
        out.put_length_prefixed(a.name);
        encode_typed_value(out, a.value);
    }
}

}  // namespace spoa::protocol
