// libFuzzer target for the SPOP codec: the input is a byte stream as an agent would read it.
//
// Byte 0 picks the receive limit and the agent's capabilities; the rest is decoded frame by
// frame with decode_frame, and every decoded frame goes through the parser its type calls for.
// Whatever decodes is re-encoded with the codec's encoders and decoded again: a mismatch is a
// codec bug and abort()s, so the fuzzer (and the replay under ctest) reports it as a crash.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "spoa/protocol/action.hpp"
#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/disconnect.hpp"
#include "spoa/protocol/error.hpp"
#include "spoa/protocol/fragment_assembler.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/hello.hpp"
#include "spoa/protocol/kv_list.hpp"
#include "spoa/protocol/notify.hpp"

namespace {

using namespace spoa::protocol;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "frame_fuzzer: invariant violated: %s\n", what);
    std::abort();
}

void check(bool ok, const char* what) {
    if (!ok) fail(what);
}

/// The one frame in `buf`, which the codec itself just wrote.
frame decode_own(const byte_buffer& buf, std::uint32_t max_frame_size) {
    frame f;
    const frame_decode_result r = decode_frame(buf.view(), max_frame_size, f);
    check(r.status == decode_status::ok, "own encoding does not decode");
    check(r.size == buf.size(), "own encoding has trailing bytes");
    return f;
}

void check_error_maps(error e) {
    const auto s = static_cast<std::uint32_t>(to_status(e));
    check(e != error::none, "error result without an error");
    check(s >= 1 && s <= 13, "error maps to no SPOP status");
    check(!to_string(e).empty(), "error without a description");
}

/// Decodes a NOTIFY payload; if it decodes, re-encodes every message and checks that the
/// re-encoding decodes to the same names and values.
void check_notify(bytes_view payload) {
    static notify_decoder decoder;  // reused like a connection does
    static notify_decoder again;
    static byte_buffer out;
    static byte_buffer out2;
    const error e = decoder.decode(payload);
    if (e != error::none) {
        check_error_maps(e);
        check(decoder.messages().empty(), "failed decode exposes messages");
        return;
    }
    out.clear();
    for (const message_view& m : decoder.messages()) {
        check(m.args.size() <= max_args_per_message, "more than 255 arguments");
        encode_message(out, m.name, m.args);
    }
    // Canonical varints and flag-less type bytes: never longer than the original.
    check(out.size() <= payload.size(), "re-encoding grew");
    check(again.decode(out.view()) == error::none, "re-encoded NOTIFY does not decode");
    const auto a = decoder.messages();
    const auto b = again.messages();
    check(a.size() == b.size(), "message count changed");
    for (std::size_t i = 0; i < a.size(); ++i) {
        check(a[i].name == b[i].name, "message name changed");
        check(a[i].args.size() == b[i].args.size(), "argument count changed");
        for (std::size_t j = 0; j < a[i].args.size(); ++j) {
            check(a[i].args[j].name == b[i].args[j].name, "argument name changed");
            check(a[i].args[j].value == b[i].args[j].value, "argument value changed");
        }
    }
    // The encoding is canonical: encoding what the re-encoding decodes to gives the same bytes.
    out2.clear();
    for (const message_view& m : again.messages())
        encode_message(out2, m.name, m.args);
    check(out2.size() == out.size() && std::memcmp(out2.data(), out.data(), out.size()) == 0,
          "re-encoding is not a fixed point");
}

/// HELLO: parse, negotiate, answer; the answer must decode to what was negotiated.
void check_hello(bytes_view payload, const agent_capabilities& ours) {
    haproxy_hello hello;
    const error e = parse_haproxy_hello(payload, hello);
    if (e != error::none) {
        check_error_maps(e);
        return;
    }
    const negotiation n = negotiate(hello, ours);
    if (!n.accepted()) {
        check(n.refusal == error::unsupported_version || n.refusal == error::bad_max_frame_size,
              "unexpected refusal");
        return;
    }
    check(n.max_frame_size >= min_max_frame_size, "negotiated size below 256");
    check(n.max_frame_size <= hello.max_frame_size, "negotiated size above HAProxy's");
    check(!n.pipelining || (ours.pipelining && hello.offers_pipelining), "pipelining invented");
    check(!n.async || (ours.async && hello.offers_async), "async invented");
    check(n.healthcheck == hello.healthcheck, "healthcheck flag lost");

    static byte_buffer out;
    out.clear();
    encode_agent_hello(out, n);
    const frame f = decode_own(out, n.max_frame_size);
    check(f.type == frame_type::agent_hello && f.flags == frame_flags::fin, "bad AGENT-HELLO");
    check(f.stream_id == 0 && f.frame_id == 0, "AGENT-HELLO ids");
    kv_reader kv(f.payload);
    bool version = false;
    bool size = false;
    bool caps = false;
    while (!kv.done()) {
        std::string_view key;
        typed_value value;
        check(kv.next(key, value) == error::none, "AGENT-HELLO KV does not decode");
        if (key == "version") version = value == typed_value::string("2.0");
        if (key == "max-frame-size") size = value == typed_value::uint32(n.max_frame_size);
        if (key == "capabilities") {
            caps = value.type() == data_type::string &&
                   has_capability(value.as_string(), "pipelining") == n.pipelining &&
                   has_capability(value.as_string(), "async") == n.async &&
                   has_capability(value.as_string(), "fragmentation") == n.fragmentation;
        }
    }
    check(version && size && caps, "AGENT-HELLO does not carry the negotiation");
}

void check_disconnect(bytes_view payload, frame_type type) {
    disconnect_info info;
    const error e = parse_disconnect(payload, info);
    if (e != error::none) {
        check_error_maps(e);
        return;
    }
    check(info.message.size() <= max_disconnect_message, "message above 255 bytes accepted");
    if (info.message.empty()) return;  // the encoder would substitute the status text
    static byte_buffer out;
    out.clear();
    encode_disconnect(out, type, static_cast<status_code>(info.status), info.message);
    disconnect_info again;
    check(parse_disconnect(decode_own(out, 0xFFFFFFFFu).payload, again) == error::none,
          "re-encoded DISCONNECT does not parse");
    check(again.status == info.status && again.message == info.message,
          "DISCONNECT changed in the round trip");
}

void check_ack(const frame& f, std::uint32_t max_frame_size) {
    static std::vector<action> actions;
    static std::vector<action> again;
    const error e = decode_actions(f.payload, actions);
    if (e != error::none) {
        check_error_maps(e);
        return;
    }
    // Write them back with ack_writer under the same limit: every action fits because the
    // original frame did (canonical encodings are never longer).
    static byte_buffer out;
    out.clear();
    ack_writer w(out, f.stream_id, f.frame_id, max_frame_size);
    for (const action& a : actions) {
        const bool ok = a.type == action_type::set_var ? w.set_var(a.scope, a.name, a.value)
                                                       : w.unset_var(a.scope, a.name);
        check(ok, "ack_writer refused an action that fitted the original frame");
    }
    w.finish();
    const frame g = decode_own(out, max_frame_size);
    check(g.type == frame_type::ack && g.fin() && !g.aborted(), "ACK header");
    check(g.stream_id == f.stream_id && g.frame_id == f.frame_id, "ACK ids changed");
    check(decode_actions(g.payload, again) == error::none, "re-encoded ACK does not decode");
    check(again.size() == actions.size(), "ACK action count changed");
    for (std::size_t i = 0; i < actions.size(); ++i) {
        check(again[i].type == actions[i].type && again[i].scope == actions[i].scope &&
                  again[i].name == actions[i].name && again[i].value == actions[i].value,
              "ACK action changed");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    // Byte 0: bits 0-5 pick a small limit (7 .. 7 + 63 * 8 = 511) unless all set, which means
    // HAProxy's 16380, so both "too big" and "fits" paths are reached; bits 6-7 pick our
    // capabilities.
    const std::uint8_t control = data[0];
    const std::uint32_t limit = (control & 0x3F) == 0x3F ? haproxy_default_max_frame_size
                                                         : min_frame_size + 8u * (control & 0x3F);
    agent_capabilities ours;
    ours.max_frame_size = (control & 0x40) != 0 ? 1024 : haproxy_default_max_frame_size;
    ours.pipelining = (control & 0x80) != 0;
    ours.async = (control & 0xC0) == 0xC0;
    ours.fragmentation = (control & 0x40) != 0;

    bytes_view input(data + 1, size - 1);
    fragment_assembler assembler(256);  // small cap so the limit is reached
    while (true) {
        frame f;
        const frame_decode_result r = decode_frame(input, limit, f);
        if (r.status == decode_status::need_more) {
            check(r.size == 0 || r.size > input.size(), "need_more but the frame is there");
            check(r.size != 0 || input.size() < length_prefix_size, "need_more without size");
            break;
        }
        if (r.status == decode_status::error) {
            check_error_maps(r.err);
            check(r.size == 0, "error with a size");
            break;  // errors are fatal for the connection (sticky)
        }
        check(r.err == error::none, "ok with an error");
        check(r.size >= length_prefix_size + min_frame_size, "frame below minimum size");
        check(r.size <= input.size(), "frame larger than the input");
        check(r.size - length_prefix_size <= limit, "frame above the limit");
        check(f.payload.data() >= input.data() &&
                  f.payload.data() + f.payload.size() == input.data() + r.size,
              "payload does not end the frame");
        check(!f.aborted() || f.fin(), "ABORT without FIN accepted");
        {
            // Incremental decoding: one byte less is need_more with the full size announced.
            frame partial;
            const frame_decode_result p = decode_frame(input.first(r.size - 1), limit, partial);
            check(p.status == decode_status::need_more && p.size == r.size,
                  "a strict prefix of a frame is not need_more");
            const frame_decode_result q = decode_frame(input.first(3), limit, partial);
            check(q.status == decode_status::need_more && q.size == 0, "3 bytes are not need_more");
        }

        const bool fragment = f.type == frame_type::unset ||
                              (f.type == frame_type::notify && !f.fin()) ||
                              (f.type == frame_type::notify && assembler.in_progress());
        if (fragment) {
            const fragment_assembler::result res = assembler.feed(f);
            if (res.what == fragment_assembler::outcome::complete) {
                check(!assembler.in_progress(), "complete but still open");
                check(assembler.payload().size() <= 256, "reassembly above the cap");
                check_notify(assembler.payload());
            } else if (res.what == fragment_assembler::outcome::failed) {
                check_error_maps(res.err);
                check(!assembler.in_progress() || res.err == error::interlaced_fragments ||
                          res.err == error::unexpected_frame,
                      "failed but still open");
                assembler.reset();
            } else if (res.what == fragment_assembler::outcome::aborted) {
                check(!assembler.in_progress(), "aborted but still open");
            } else {
                check(assembler.in_progress(), "pending but not open");
            }
        } else {
            switch (f.type) {
                case frame_type::notify:
                    check_notify(f.payload);
                    break;
                case frame_type::haproxy_hello:
                    check(f.stream_id == 0 && f.frame_id == 0, "HELLO ids");
                    check_hello(f.payload, ours);
                    break;
                case frame_type::agent_hello: {
                    kv_reader kv(f.payload);
                    error e = error::none;
                    while (e == error::none && !kv.done()) {
                        std::string_view key;
                        typed_value value;
                        e = kv.next(key, value);
                    }
                    if (e != error::none) check_error_maps(e);
                    break;
                }
                case frame_type::haproxy_disconnect:
                case frame_type::agent_disconnect:
                    check(f.stream_id == 0 && f.frame_id == 0, "DISCONNECT ids");
                    check_disconnect(f.payload, f.type);
                    break;
                case frame_type::ack:
                    check_ack(f, limit);
                    break;
                case frame_type::unset:
                    fail("UNSET not routed to the assembler");
            }
        }
        input = input.subspan(r.size);
    }
    return 0;
}
