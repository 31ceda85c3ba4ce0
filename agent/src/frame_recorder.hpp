#pragma once
// spoa-agent --record: appends every complete NOTIFY received and every ACK sent to a file, in
// the format of spoa/protocol/recording.hpp, for `spoa-cli replay`.
//
// Ownership and threads: created once by the first worker the agent constructs, before any loop
// thread runs (worker.cpp), owned by shared_context, and destroyed with it after every loop
// thread has been joined. Every loop thread calls record() at the same time: one mutex
// serialises the size check and the write, so records never interleave and the size bound is
// exact. A record is one writev() of a header on the stack and the caller's payload (a view
// that only has to live for the call): nothing is allocated per frame. When the next record
// would pass the bound, or a write fails, the recorder closes the file, logs one line, and every
// later call returns at its first check (an atomic flag, no lock). When recording is off there
// is no recorder at all: the loops test one pointer per frame.
//
// The write is a blocking write() to a file on a loop thread: recording is for an operator's
// session (a configuration change to check), not for running all the time.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "spoa/protocol/bytes.hpp"
#include "spoa/protocol/recording.hpp"

namespace spdlog {
class logger;
}

namespace spoa::detail {

class frame_recorder {
  public:
    /// Creates (truncates) `path` and writes the magic. Throws std::runtime_error when the file
    /// cannot be written or `max_bytes` cannot hold even the magic.
    [[nodiscard]] static std::unique_ptr<frame_recorder> open(const std::string& path,
                                                              std::uint64_t max_bytes,
                                                              spdlog::logger& log);
    frame_recorder(const frame_recorder&) = delete;
    frame_recorder& operator=(const frame_recorder&) = delete;
    ~frame_recorder();

    /// Appends one record; thread-safe, never throws.
    void record(protocol::record_kind kind, std::uint64_t connection_id, std::uint64_t stream_id,
                std::uint64_t frame_id, protocol::bytes_view payload) noexcept;

    /// Bytes in the file so far (for tests).
    [[nodiscard]] std::uint64_t size() const noexcept;

  private:
    frame_recorder(int fd, std::string path, std::uint64_t max_bytes, spdlog::logger& log);
    /// Closes the file and logs why; called under the mutex.
    void stop(const std::string& why) noexcept;

    int fd_;
    std::string path_;
    std::uint64_t max_bytes_;
    spdlog::logger& log_;
    mutable std::mutex mutex_;
    std::uint64_t written_ = 0;  ///< guarded by mutex_
    std::atomic<bool> stopped_{false};
};

}  // namespace spoa::detail
