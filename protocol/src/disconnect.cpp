#include "spoa/protocol/disconnect.hpp"

#include "spoa/protocol/kv_list.hpp"

namespace spoa::protocol {

error parse_disconnect(bytes_view payload, disconnect_info& out) noexcept {
    out = disconnect_info{};
    bool have_status = false;
    kv_reader kv(payload);
    while (!kv.done()) {
        std::string_view key;
        typed_value value;
        if (const error e = kv.next(key, value); e != error::none) return e;
        if (key == "status-code") {
            if (!value.is_integer() || value.as_uint64() > 0xFFFFFFFFu)
                return error::bad_status_code;
            out.status = static_cast<std::uint32_t>(value.as_uint64());
            have_status = true;
        } else if (key == "message") {
            if (value.type() != data_type::string) continue;
            if (value.as_string().size() > max_disconnect_message) return error::message_too_long;
            out.message = value.as_string();
        }
    }
    if (!have_status) return error::bad_status_code;
    return error::none;
}

void encode_disconnect(byte_buffer& out, frame_type type, status_code status,
                       std::string_view message) {
    if (message.empty()) message = to_string(status);
    if (message.size() > max_disconnect_message)
        message = message.substr(0, max_disconnect_message);
    frame_writer w(out);
    w.begin(type, frame_flags::fin, 0, 0);
    encode_kv(out, "status-code", typed_value::uint32(static_cast<std::uint32_t>(status)));
    encode_kv(out, "message", typed_value::string(message));
    (void)w.finish(0xFFFFFFFFu);
}

}  // namespace spoa::protocol
