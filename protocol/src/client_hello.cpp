#include "spoa/protocol/client_hello.hpp"

#include "spoa/protocol/kv_list.hpp"

namespace spoa::protocol {

haproxy_hello_options haproxy_hello_options::v2_6() {
    haproxy_hello_options h;
    h.capabilities = "pipelining,async";
    return h;
}

haproxy_hello_options haproxy_hello_options::v3() {
    return haproxy_hello_options{};
}

haproxy_hello_options haproxy_hello_options::healthcheck_hello() {
    haproxy_hello_options h;
    h.capabilities = "";
    h.engine_id.reset();
    h.healthcheck = true;
    return h;
}

void encode_haproxy_hello_payload(byte_buffer& out, const haproxy_hello_options& opts) {
    // Key order of HAProxy's own HELLO (protocol/README.md §11, V1 to V3).
    if (opts.supported_versions) {
        encode_kv(out, "supported-versions", typed_value::string(*opts.supported_versions));
    }
    if (opts.max_frame_size) {
        encode_kv(out, "max-frame-size", typed_value::uint32(*opts.max_frame_size));
    }
    if (opts.capabilities) {
        encode_kv(out, "capabilities", typed_value::string(*opts.capabilities));
    }
    if (opts.engine_id) encode_kv(out, "engine-id", typed_value::string(*opts.engine_id));
    if (opts.healthcheck) encode_kv(out, "healthcheck", typed_value::boolean(true));
}

error parse_agent_hello(bytes_view payload, agent_hello& out) noexcept {
    out = agent_hello{};
    bool have_version = false;
    bool have_size = false;
    kv_reader kv(payload);
    while (!kv.done()) {
        std::string_view key;
        typed_value value;
        if (const error e = kv.next(key, value); e != error::none) return e;
        if (key == "version") {
            if (value.type() != data_type::string) return error::missing_version;
            out.version = value.as_string();
            have_version = true;
        } else if (key == "max-frame-size") {
            if (!value.is_integer() || value.as_uint64() > 0xFFFFFFFFu) {
                return error::bad_max_frame_size;
            }
            out.max_frame_size = static_cast<std::uint32_t>(value.as_uint64());
            have_size = true;
        } else if (key == "capabilities") {
            if (value.type() != data_type::string) return error::missing_capabilities;
            out.capabilities = value.as_string();
        }
    }
    if (!have_version) return error::missing_version;
    if (!have_size) return error::bad_max_frame_size;
    return error::none;
}

}  // namespace spoa::protocol
