#pragma once
// spoa-cli's side of one SPOP connection: HAPROXY-HELLO, NOTIFYs one at a time, HAPROXY-DISCONNECT.
// Blocking socket, every wait bounded by poll(). Built on spoa::protocol's encoders and decoders;
// every failure is a cli_error whose exit code says what went wrong (exit_code.hpp).
//
// One object per connection and per thread: it is neither shared nor thread-safe.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "spoa/protocol/byte_buffer.hpp"
#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/client_hello.hpp"
#include "spoa/protocol/frame.hpp"
#include "spoa/protocol/owned_value.hpp"
#include "target.hpp"

namespace spoa::cli {

/// What the agent announced in its AGENT-HELLO, owned.
struct announced_hello {
    std::string version;
    std::uint32_t max_frame_size = 0;
    std::string capabilities;
};

class spop_client {
  public:
    /// Connects; throws cli_error (connection_failed, timeout).
    spop_client(const target& t, std::chrono::milliseconds timeout);
    spop_client(const spop_client&) = delete;
    spop_client& operator=(const spop_client&) = delete;
    ~spop_client();

    /// HAPROXY-HELLO, then the AGENT-HELLO. Throws cli_error (agent_disconnect with the status
    /// and message, timeout, connection_failed, protocol_error).
    announced_hello handshake(const protocol::haproxy_hello_options& hello);

    /// Sends one NOTIFY with `payload` and returns its ACK's raw actions payload. Ids are the
    /// 3.x shape: a new odd stream-id per NOTIFY, frame-id 1. Throws as handshake().
    protocol::bytes_view notify(protocol::bytes_view payload);

    /// HAPROXY-DISCONNECT status 0 ("normal"); errors are ignored (the work is done).
    void disconnect() noexcept;

  private:
    void send_all(protocol::bytes_view bytes);
    /// The next whole frame (its payload views rx_, valid until the next read).
    protocol::frame read_frame();
    /// Turns an AGENT-DISCONNECT into its cli_error.
    [[noreturn]] void agent_disconnected(const protocol::frame& f) const;
    /// Reads more bytes before the deadline; throws on timeout or a closed connection.
    void fill(std::chrono::steady_clock::time_point deadline);

    target target_;
    std::chrono::milliseconds timeout_;
    int fd_ = -1;
    std::uint64_t next_stream_id_ = 1;
    std::uint32_t max_frame_size_ = protocol::haproxy_default_max_frame_size;
    protocol::byte_buffer tx_;
    std::vector<std::uint8_t> rx_;
    std::size_t consumed_ = 0;  ///< bytes of rx_ already returned as frames
};

}  // namespace spoa::cli
