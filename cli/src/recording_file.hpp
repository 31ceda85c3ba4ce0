#pragma once
// Reading a spoa-agent --record file (spoa/protocol/recording.hpp) into NOTIFY/ACK exchanges:
// each ACK pairs with the earliest unanswered NOTIFY of the same connection, stream-id and
// frame-id (HAProxy 2.6 may reuse a pair after a timeout, protocol/README.md §8).

#include <cstdint>
#include <string>
#include <vector>

#include "spoa/protocol/bytes.hpp"

namespace spoa::cli {

struct recorded_exchange {
    std::uint64_t connection_id = 0;
    std::uint64_t stream_id = 0;
    std::uint64_t frame_id = 0;
    std::vector<std::uint8_t> notify;  ///< NOTIFY messages payload
    std::vector<std::uint8_t> ack;     ///< ACK actions payload
};

struct recording_contents {
    std::vector<recorded_exchange> exchanges;  ///< in NOTIFY order, answered ones only
    std::size_t unanswered = 0;   ///< NOTIFYs without an ACK (connection closed, bound reached)
    std::size_t orphan_acks = 0;  ///< ACKs whose NOTIFY is not in the file
    bool truncated = false;       ///< the last record is incomplete (agent killed mid-write)
};

/// Pure: the exchanges of a whole file's bytes. Throws std::invalid_argument on a missing magic
/// or an unknown record kind.
[[nodiscard]] recording_contents parse_recording(protocol::bytes_view file);

/// Reads and parses `path`; throws cli_error(bad_file).
[[nodiscard]] recording_contents read_recording(const std::string& path);

}  // namespace spoa::cli
