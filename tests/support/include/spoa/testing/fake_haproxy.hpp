#pragma once
/// A small fake HAProxy for agent tests: a blocking TCP or Unix client that speaks SPOP with the
/// spoa::protocol encoders and decoders, reads frames with timeouts (poll), and owns what it
/// reads, so a received frame stays valid after the next read.
///
/// Errors (connect failure, read timeout when a frame is required, a write that fails) throw
/// `std::runtime_error` with a message naming what was expected: in a Catch2 test that fails
/// the test with that message.

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "spoa/protocol/action.hpp"
#include "spoa/protocol/client_hello.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/notify.hpp"
#include "spoa/protocol/owned_value.hpp"
#include "spoa/protocol/status_code.hpp"
#include "spoa/protocol/typed_value.hpp"

namespace spoa::testing {

using namespace std::chrono_literals;
using std::chrono::milliseconds;

/// Default time to wait for something the test expects to arrive.
inline constexpr milliseconds default_timeout = 3000ms;

/// Values and actions that own their bytes (spoa/protocol/owned_value.hpp).
using owned_value = protocol::owned_value;
using owned_action = protocol::owned_action;

/// A frame received from the agent, owning its bytes.
struct received_frame {
    protocol::frame_type type = protocol::frame_type::unset;
    std::uint32_t flags = 0;
    std::uint64_t stream_id = 0;
    std::uint64_t frame_id = 0;
    std::vector<std::uint8_t> payload;
    std::vector<std::uint8_t> raw;  ///< the whole frame, length prefix included

    [[nodiscard]] bool fin() const noexcept { return (flags & protocol::frame_flags::fin) != 0; }
    /// KV-LIST payload (HELLO / DISCONNECT) as (key, value) pairs in wire order. Throws on a
    /// malformed list.
    [[nodiscard]] std::vector<std::pair<std::string, owned_value>> kv() const;
    /// The value of `key` in a KV-LIST payload, or nullopt.
    [[nodiscard]] std::optional<owned_value> kv_get(std::string_view key) const;
    /// STRING value of `key`; throws if missing or not a STRING.
    [[nodiscard]] std::string kv_string(std::string_view key) const;
    /// Integer value of `key`; throws if missing or not an integer.
    [[nodiscard]] std::uint64_t kv_uint(std::string_view key) const;
    /// DISCONNECT status-code (throws when this is not a DISCONNECT).
    [[nodiscard]] std::uint32_t status() const;
    /// ACK actions (throws when this is not a decodable ACK).
    [[nodiscard]] std::vector<owned_action> actions() const;
    /// e.g. "ACK sid=3 fid=1 flags=1 len=11".
    [[nodiscard]] std::string describe() const;
};

/// The HAPROXY-HELLO to send (spoa/protocol/client_hello.hpp). Optional keys are left out when
/// nullopt.
using hello_options = protocol::haproxy_hello_options;

/// Payload of a HAPROXY-HELLO built from `opts`.
[[nodiscard]] std::vector<std::uint8_t> hello_payload(const hello_options& opts);

/// One SPOE message to put in a NOTIFY. Argument values view strings owned by the caller.
struct message_spec {
    std::string name;
    std::vector<protocol::argument> args;
};

/// NOTIFY payload holding `messages` in order.
[[nodiscard]] std::vector<std::uint8_t> notify_payload(std::span<const message_spec> messages);
[[nodiscard]] std::vector<std::uint8_t> notify_payload(const message_spec& message);

/// A whole frame: length prefix, header, payload. `len_override` replaces the computed LEN.
[[nodiscard]] std::vector<std::uint8_t> encode_frame(std::uint8_t type, std::uint32_t flags,
                                                     std::uint64_t stream_id,
                                                     std::uint64_t frame_id,
                                                     std::span<const std::uint8_t> payload);

/// Hex dump "00 01 ff" (for messages).
[[nodiscard]] std::string hex(std::span<const std::uint8_t> bytes);
/// Parses "00 01 ff" / "0001ff" (whitespace ignored).
[[nodiscard]] std::vector<std::uint8_t> from_hex(std::string_view text);

/// What `wait_closed` observed.
enum class close_kind : std::uint8_t {
    eof,      ///< orderly close (FIN)
    reset,    ///< ECONNRESET
    timeout,  ///< still open after the timeout
    data,     ///< bytes arrived instead (they stay buffered for read_frame)
};
[[nodiscard]] std::string_view to_string(close_kind k) noexcept;

class fake_haproxy {
  public:
    /// Connects (blocking) to host:port.
    [[nodiscard]] static fake_haproxy connect_tcp(const std::string& host, std::uint16_t port);
    /// Connects to a Unix stream socket.
    [[nodiscard]] static fake_haproxy connect_unix(const std::string& path);

    explicit fake_haproxy(int fd) noexcept : fd_(fd) {}
    fake_haproxy(fake_haproxy&& other) noexcept;
    fake_haproxy& operator=(fake_haproxy&& other) noexcept;
    fake_haproxy(const fake_haproxy&) = delete;
    fake_haproxy& operator=(const fake_haproxy&) = delete;
    ~fake_haproxy();

    [[nodiscard]] int fd() const noexcept { return fd_; }

    // ---- sending (each call is one write of whole bytes; throws on failure) ----
    void send_raw(std::span<const std::uint8_t> bytes);
    void send_raw(std::string_view hex_text) { send_raw(from_hex(hex_text)); }
    void send_frame(protocol::frame_type type, std::uint32_t flags, std::uint64_t stream_id,
                    std::uint64_t frame_id, std::span<const std::uint8_t> payload);
    void send_hello(const hello_options& opts = {});
    void send_notify(std::uint64_t stream_id, std::uint64_t frame_id,
                     std::span<const std::uint8_t> payload,
                     std::uint32_t flags = protocol::frame_flags::fin);
    void send_notify(std::uint64_t stream_id, std::uint64_t frame_id, const message_spec& message);
    /// A NOTIFY split into fragments: NOTIFY (no FIN) with the first chunk, then UNSET frames
    /// (no FIN) and a last UNSET with FIN. `chunks` are the sizes of all but the last fragment.
    void send_fragmented_notify(std::uint64_t stream_id, std::uint64_t frame_id,
                                std::span<const std::uint8_t> payload,
                                std::span<const std::size_t> chunks);
    void send_unset(std::uint64_t stream_id, std::uint64_t frame_id,
                    std::span<const std::uint8_t> payload, std::uint32_t flags);
    /// UNSET with FIN|ABORT and an empty payload (HAProxy's cancel, protocol/README.md §9).
    void send_abort(std::uint64_t stream_id, std::uint64_t frame_id);
    void send_disconnect(std::uint32_t status, std::string_view message);

    // ---- receiving ----
    /// The next frame, or nullopt on timeout / EOF / reset (see closed()).
    [[nodiscard]] std::optional<received_frame> try_read_frame(milliseconds timeout);
    /// The next frame; throws when none arrives in time or the connection ends.
    [[nodiscard]] received_frame read_frame(milliseconds timeout = default_timeout);
    /// Reads the next frame and checks it is `type`; throws otherwise (with a description).
    [[nodiscard]] received_frame expect(protocol::frame_type type,
                                        milliseconds timeout = default_timeout);
    /// Reads an AGENT-DISCONNECT and returns its status; throws on anything else.
    [[nodiscard]] std::uint32_t expect_disconnect(milliseconds timeout = default_timeout);
    /// Waits for the peer to close; bytes that arrive instead are kept for read_frame.
    [[nodiscard]] close_kind wait_closed(milliseconds timeout = default_timeout);
    /// True when nothing at all arrives (and the connection stays open) for `period`.
    [[nodiscard]] bool silent_for(milliseconds period);
    /// True once EOF or a reset was seen.
    [[nodiscard]] bool closed() const noexcept { return closed_; }
    /// Bytes received but not yet returned as a frame.
    [[nodiscard]] std::size_t buffered() const noexcept { return rx_.size(); }

    /// HELLO then AGENT-HELLO; throws if the reply is not an AGENT-HELLO.
    received_frame handshake(const hello_options& opts = {});

    /// Closes with SO_LINGER 0: the peer sees a reset.
    void reset_close() noexcept;
    /// Orderly close.
    void close() noexcept;
    /// Half-close the write side.
    void shutdown_write() noexcept;

  private:
    /// Reads what is available within `timeout`; false on timeout. Sets closed_ on EOF/reset.
    bool fill(milliseconds timeout);

    int fd_ = -1;
    std::vector<std::uint8_t> rx_;
    bool closed_ = false;
    bool reset_ = false;
};

}  // namespace spoa::testing
