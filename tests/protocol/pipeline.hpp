#pragma once
// A tiny receive pipeline built only from codec functions: decode each frame of a byte stream and
// run the payload parser its type calls for, the way an agent connection uses the codec. Used by
// the malformed-input table and the guard-page test so both exercise every parser.

#include <cstdint>
#include <vector>

#include "spoa/protocol/action.hpp"
#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/disconnect.hpp"
#include "spoa/protocol/fragment_assembler.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/hello.hpp"
#include "spoa/protocol/kv_list.hpp"
#include "spoa/protocol/notify.hpp"

namespace spoa::test {

struct pipeline_result {
    protocol::error err = protocol::error::none;
    std::size_t frames = 0;  ///< frames fully processed before the error / the end
    bool need_more = false;  ///< the input ends inside a frame
};

/// Runs every frame of `input` through decode_frame and the matching parser; stops at the first
/// error. `reassembly_cap` is the fragment_assembler cap.
inline pipeline_result run_pipeline(
    protocol::bytes_view input,
    std::uint32_t max_frame_size = protocol::haproxy_default_max_frame_size,
    std::size_t reassembly_cap = 64) {
    using namespace spoa::protocol;
    pipeline_result res;
    fragment_assembler assembler(reassembly_cap);
    notify_decoder notify;
    std::vector<action> actions;
    while (!input.empty()) {
        frame f;
        const frame_decode_result r = decode_frame(input, max_frame_size, f);
        if (r.status == decode_status::need_more) {
            res.need_more = true;
            return res;
        }
        if (r.status == decode_status::error) {
            res.err = r.err;
            return res;
        }
        input = input.subspan(r.size);
        error e = error::none;
        switch (f.type) {
            case frame_type::unset:
            case frame_type::notify:
                if (f.type == frame_type::notify && f.fin() && !assembler.in_progress()) {
                    e = notify.decode(f.payload);
                } else {
                    const auto fr = assembler.feed(f);
                    if (fr.what == fragment_assembler::outcome::failed) e = fr.err;
                    if (fr.what == fragment_assembler::outcome::complete)
                        e = notify.decode(assembler.payload());
                }
                break;
            case frame_type::haproxy_hello: {
                haproxy_hello hello;
                e = parse_haproxy_hello(f.payload, hello);
                if (e == error::none) e = negotiate(hello, agent_capabilities{}).refusal;
                break;
            }
            case frame_type::agent_hello: {
                kv_reader kv(f.payload);
                while (e == error::none && !kv.done()) {
                    std::string_view key;
                    typed_value value;
                    e = kv.next(key, value);
                }
                break;
            }
            case frame_type::haproxy_disconnect:
            case frame_type::agent_disconnect: {
                disconnect_info info;
                e = parse_disconnect(f.payload, info);
                break;
            }
            case frame_type::ack:
                e = decode_actions(f.payload, actions);
                break;
        }
        if (e != error::none) {
            res.err = e;
            return res;
        }
        ++res.frames;
    }
    return res;
}

}  // namespace spoa::test
