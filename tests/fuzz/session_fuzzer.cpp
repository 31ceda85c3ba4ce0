// libFuzzer target for the connection state machine (spoa/protocol/session.hpp), without sockets:
// bytes from "HAProxy" are fed in fuzzer-chosen chunks exactly as connection.cpp does (keeping
// an unconsumed tail), NOTIFYs are answered like the agent's fast path, backpressure pauses
// come and go, and every byte the session writes is checked:
//   - only whole, decodable agent frames (AGENT-HELLO, AGENT-DISCONNECT, ACK), FIN always set;
//   - AGENT-HELLO at most once and first; nothing after AGENT-DISCONNECT;
//   - every ACK within the negotiated frame size;
//   - once closing, the session consumes everything and writes nothing more.
//
// Input: byte 0 = control (bits 0-3: chunk size 1 + n*7, bit 4: fragmentation, bit 5: small
// own max-frame-size 256, bit 6: pause every other NOTIFY, bit 7: tiny reassembly cap), then
// the byte stream. Shares the frame corpus (tests/fuzz/corpus/frame).

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "spoa/protocol/action.hpp"
#include "spoa/protocol/notify.hpp"
#include "spoa/protocol/session.hpp"

namespace {

using namespace spoa;
using spoa::protocol::session;

[[noreturn]] void fail(const char* why) {
    (void)why;
    std::abort();
}

struct host final : protocol::session_host {
    protocol::byte_buffer& out;
    session* s = nullptr;
    protocol::notify_decoder decoder;
    bool pause_mode = false;
    unsigned notifies = 0;
    mutable bool paused_now = false;

    explicit host(protocol::byte_buffer& o) : out(o) {}

    void on_notify(std::uint64_t sid, std::uint64_t fid, protocol::bytes_view payload) override {
        ++notifies;
        if (pause_mode && notifies % 2 == 0) paused_now = true;
        if (decoder.decode(payload) != protocol::error::none) {
            s->fail(protocol::error::truncated);
            return;
        }
        protocol::ack_writer ack(out, sid, fid, s->frame_limit());
        for (const auto& m : decoder.messages()) {
            (void)ack.set_var(
                protocol::var_scope::txn, "args",
                protocol::typed_value::int64(static_cast<std::int64_t>(m.args.size())));
            for (const auto& a : m.args) {
                if (!a.name.empty() && a.name.size() < 40)
                    (void)ack.set_var(protocol::var_scope::txn, "v", a.value);
            }
        }
        if (ack.payload_size() == 0) (void)ack.unset_var(protocol::var_scope::txn, "spoa_noop");
        ack.finish();
    }
    [[nodiscard]] bool paused() const noexcept override { return paused_now; }
};

/// Checks everything written since `from`; updates the running state.
void check_output(const protocol::byte_buffer& out, std::size_t from, const session& s,
                  bool& seen_hello, bool& seen_disconnect, std::size_t& frames) {
    protocol::bytes_view rest(out.data() + from, out.size() - from);
    while (!rest.empty()) {
        protocol::frame f;
        const auto r = protocol::decode_frame(rest, 1u << 24, f);
        if (r.status != protocol::decode_status::ok) fail("partial or invalid frame written");
        if (!f.fin() || f.aborted()) fail("agent frame without FIN (or with ABORT)");
        if (seen_disconnect) fail("frame after AGENT-DISCONNECT");
        switch (f.type) {
            case protocol::frame_type::agent_hello:
                if (seen_hello || frames != 0) fail("AGENT-HELLO not first or twice");
                seen_hello = true;
                break;
            case protocol::frame_type::agent_disconnect:
                seen_disconnect = true;
                break;
            case protocol::frame_type::ack:
                if (!seen_hello) fail("ACK before AGENT-HELLO");
                if (r.size - protocol::length_prefix_size > s.frame_limit()) fail("ACK too big");
                break;
            default:
                fail("not an agent frame");
        }
        ++frames;
        rest = rest.subspan(r.size);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t control = data[0];
    const std::size_t chunk = 1 + (control & 0x0F) * 7;
    protocol::session_settings settings;
    settings.capabilities.fragmentation = (control & 0x10) != 0;
    settings.capabilities.max_frame_size = (control & 0x20) ? 256 : 16380;
    settings.max_reassembled_size = (control & 0x80) ? 300 : 1024 * 1024;

    protocol::byte_buffer out;
    host h(out);
    h.pause_mode = (control & 0x40) != 0;
    session s(settings, h, out);
    h.s = &s;

    protocol::byte_buffer pending;  // what connection.cpp keeps between reads
    bool seen_hello = false;
    bool seen_disconnect = false;
    std::size_t frames = 0;
    const std::uint8_t* p = data + 1;
    std::size_t left = size - 1;
    while (left > 0 || !pending.empty()) {
        const std::size_t n = left < chunk ? left : chunk;
        pending.append(p, n);
        p += n;
        left -= n;
        const bool was_closing = s.current() == session::state::closing;
        const std::size_t before = out.size();
        const std::size_t consumed = s.feed(pending.view());
        if (consumed > pending.size()) fail("consumed more than given");
        if (was_closing && (consumed != pending.size() || out.size() != before)) {
            fail("a closing session must swallow input silently");
        }
        check_output(out, before, s, seen_hello, seen_disconnect, frames);
        pending.consume_front(consumed);
        if (h.paused_now) {
            h.paused_now = false;  // the frame "completes": reading resumes
            continue;
        }
        if (n == 0 && consumed == 0) break;  // input exhausted and only a partial frame left
    }
    return 0;
}
