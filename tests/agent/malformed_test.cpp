// Malformed input over a socket: the exact AGENT-DISCONNECT status, then close; the error is
// sticky and other connections are unaffected (protocol/README.md §2, §7).

#include "agent_test_util.hpp"
#include "spoa/handlers/examples.hpp"

namespace spoa::testing {
namespace {

struct malformed_case {
    const char* name;
    bool after_hello;  ///< sent on a running connection (else as the first bytes)
    const char* bytes;
    std::uint32_t status;
};

// Each is a whole frame (or just a length prefix when the length alone is fatal).
const malformed_case cases[] = {
    {"LEN 0", false, "00 00 00 00", 4},
    {"LEN 6 (< 7)", true, "00 00 00 06 03 00 00 00 01 01", 4},
    {"LEN above our max-frame-size before HELLO", false, "00 00 40 00", 3},
    {"LEN above the negotiated max-frame-size", true, "00 00 3f fd", 3},
    {"unknown frame type 4", true, "00 00 00 07 04 00 00 00 01 01 01", 4},
    {"unknown frame type 200 before HELLO", false, "00 00 00 07 c8 00 00 00 01 00 00", 4},
    {"reserved data type 10 in a NOTIFY argument", true,
     "00 00 00 10 03 00 00 00 01 01 01 04 65 63 68 6f 01 01 61 0a", 4},
    {"truncated stream-id varint", true, "00 00 00 07 03 00 00 00 01 f0 f0", 4},
    {"truncated integer varint in an argument", true,
     "00 00 00 11 03 00 00 00 01 01 01 04 65 63 68 6f 01 01 61 04 f0", 4},
    {"11-byte stream-id varint", true,
     "00 00 00 11 03 00 00 00 01 ff ff ff ff ff ff ff ff ff ff 00 01", 4},
    {"11-byte varint in an INT64 argument", true,
     "00 00 00 1b 03 00 00 00 01 01 01 04 65 63 68 6f 01 01 61 04 "
     "ff ff ff ff ff ff ff ff ff ff 00",
     4},
    {"message name length past the end", true, "00 00 00 0c 03 00 00 00 01 01 01 10 65 63 68 6f",
     4},
    {"string value length past the end", true,
     "00 00 00 13 03 00 00 00 01 01 01 04 65 63 68 6f 01 01 61 08 05 61 62", 4},
    {"nb-args past the end", true,
     "00 00 00 12 03 00 00 00 01 01 01 04 65 63 68 6f 02 01 61 08 01 78", 4},
    {"nb-args byte missing", true, "00 00 00 0c 03 00 00 00 01 01 01 04 65 63 68 6f", 4},
    {"HELLO with stream-id 1", false, "00 00 00 07 01 00 00 00 01 01 00", 4},
    {"HELLO with frame-id 1", false, "00 00 00 07 01 00 00 00 01 00 01", 4},
    {"HAPROXY-DISCONNECT with non-zero ids", true, "00 00 00 07 02 00 00 00 01 00 01", 4},
    {"ACK sent by HAProxy", true, "00 00 00 07 67 00 00 00 01 01 01", 4},
    {"ACK sent by HAProxy before HELLO", false, "00 00 00 07 67 00 00 00 01 01 01", 4},
    {"AGENT-HELLO sent by HAProxy", true, "00 00 00 07 65 00 00 00 01 00 00", 4},
    {"AGENT-DISCONNECT sent by HAProxy", true, "00 00 00 07 66 00 00 00 01 00 00", 4},
    {"ABORT without FIN", true, "00 00 00 07 00 00 00 00 02 01 01", 4},
    {"HELLO with an empty key", false, "00 00 00 09 01 00 00 00 01 00 00 00 00", 4},
    {"HELLO with a truncated KV value", false, "00 00 00 0d 01 00 00 00 01 00 00 03 61 62 63 08 05",
     4},
};

}  // namespace

TEST_CASE("malformed: each codec error arrives as its status, then the agent closes",
          "[malformed]") {
    test_agent a;
    handlers::register_echo(a.agent());
    a.start();
    for (const auto& mc : cases) {
        INFO(mc.name << ": " << mc.bytes);
        auto c = a.connect();
        if (mc.after_hello) {
            hello_options h;
            h.max_frame_size = 16380;
            (void)c.handshake(h);
        }
        c.send_raw(mc.bytes);
        const auto f = c.expect(ft::agent_disconnect);
        CHECK(f.status() == mc.status);
        CHECK(f.flags == fin);
        CHECK(f.stream_id == 0);
        CHECK(f.frame_id == 0);
        CHECK(c.wait_closed() == close_kind::eof);
    }
    CHECK(a.metric("spoa_errors_total{status=\"4\",reason=\"invalid frame received\"}") ==
          static_cast<double>(std::count_if(std::begin(cases), std::end(cases),
                                            [](const auto& mc) { return mc.status == 4; })));
    CHECK(a.metric("spoa_errors_total{status=\"3\",reason=\"frame is too big\"}") == 2);
}

TEST_CASE("malformed: a frame split byte by byte is still judged at the right byte",
          "[malformed]") {
    test_agent a;
    handlers::register_echo(a.agent());
    a.start();
    auto c = a.connect_ready();
    // A valid NOTIFY one byte at a time: answered.
    const auto good = encode_frame(3, fin, 1, 1, notify_payload(one_arg("echo", "x")));
    for (const auto& b : good) {
        c.send_raw(std::vector<std::uint8_t>{b});
        if (&b != &good.back()) CHECK(c.silent_for(1ms));
    }
    CHECK(c.expect(ft::ack).actions() ==
          std::vector<owned_action>{set_txn("v", typed_value::string("x"))});
    // A length that is too big is refused as soon as its 4 bytes are in.
    for (const auto b : from_hex("00 01 00")) {
        c.send_raw(std::vector<std::uint8_t>{b});
        CHECK(c.silent_for(20ms));
    }
    c.send_raw("00");  // LEN 65536 > 16380
    CHECK(c.expect_disconnect() == 3);
    CHECK(c.wait_closed() == close_kind::eof);
}

TEST_CASE("malformed: the error is sticky, later bytes are ignored", "[malformed]") {
    test_agent a;
    handlers::register_echo(a.agent());
    a.start();
    auto c = a.connect_ready();
    // A bad frame and a valid NOTIFY in the same write: only the DISCONNECT comes back.
    auto bytes = from_hex("00 00 00 07 04 00 00 00 01 01 01");
    const auto good = encode_frame(3, fin, 1, 1, notify_payload(one_arg("echo", "x")));
    bytes.insert(bytes.end(), good.begin(), good.end());
    c.send_raw(bytes);
    CHECK(c.expect_disconnect() == 4);
    // More input after the DISCONNECT: still nothing but the close.
    c.send_raw(good);
    c.send_hello();
    CHECK(c.wait_closed() == close_kind::eof);
    CHECK(a.metric("spoa_frames_sent_total{type=\"ACK\"}") == 0);
    CHECK(a.metric("spoa_frames_sent_total{type=\"AGENT-DISCONNECT\"}") == 1);
}

TEST_CASE("malformed: other connections are unaffected", "[malformed]") {
    auto cfg = test_config();
    cfg.threads = 2;
    test_agent a(cfg);
    handlers::register_echo(a.agent());
    a.start();
    std::vector<fake_haproxy> good;
    for (int i = 0; i < 4; ++i)
        good.push_back(a.connect_ready());
    auto bad = a.connect_ready();
    for (std::size_t i = 0; i < good.size(); ++i) {
        good[i].send_notify(1, 1, one_arg("echo", "before"));
        CHECK(good[i].expect(ft::ack).frame_id == 1);
    }
    bad.send_raw("00 00 00 11 03 00 00 00 01 ff ff ff ff ff ff ff ff ff ff 00 01");
    CHECK(bad.expect_disconnect() == 4);
    CHECK(bad.wait_closed() == close_kind::eof);
    for (std::size_t i = 0; i < good.size(); ++i) {
        good[i].send_notify(1, 2, one_arg("echo", "after"));
        const auto ack = good[i].expect(ft::ack);
        CHECK(ack.frame_id == 2);
        CHECK(ack.actions() ==
              std::vector<owned_action>{set_txn("v", typed_value::string("after"))});
    }
}

}  // namespace spoa::testing
