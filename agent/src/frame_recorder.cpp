#include "frame_recorder.hpp"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include <spdlog/spdlog.h>

namespace spoa::detail {
namespace {

std::uint64_t unix_time_ns() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u +
           static_cast<std::uint64_t>(ts.tv_nsec);
}

/// writev until everything is written; false (errno set) on a failure.
bool write_all(int fd, iovec* iov, int count) noexcept {
    while (count > 0) {
        const ssize_t n = ::writev(fd, iov, count);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        auto left = static_cast<std::size_t>(n);
        while (count > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            ++iov;
            --count;
        }
        if (count > 0) {
            iov->iov_base = static_cast<char*>(iov->iov_base) + left;
            iov->iov_len -= left;
        }
    }
    return true;
}

}  // namespace

std::unique_ptr<frame_recorder> frame_recorder::open(const std::string& path,
                                                     std::uint64_t max_bytes, spdlog::logger& log) {
    const std::uint64_t magic_size = protocol::recording_magic.size();
    if (max_bytes < magic_size) {
        throw std::runtime_error("--record-max-bytes must be at least " +
                                 std::to_string(magic_size));
    }
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) throw std::runtime_error("--record " + path + ": " + std::strerror(errno));
    iovec iov{const_cast<std::uint8_t*>(protocol::recording_magic.data()), magic_size};
    if (!write_all(fd, &iov, 1)) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error("--record " + path + ": " + std::strerror(err));
    }
    std::unique_ptr<frame_recorder> r(new frame_recorder(fd, path, max_bytes, log));
    r->written_ = magic_size;
    log.info("recording NOTIFY and ACK frames to {} (at most {} bytes)", path, max_bytes);
    return r;
}

frame_recorder::frame_recorder(int fd, std::string path, std::uint64_t max_bytes,
                               spdlog::logger& log)
    : fd_(fd), path_(std::move(path)), max_bytes_(max_bytes), log_(log) {}

frame_recorder::~frame_recorder() {
    if (fd_ >= 0) ::close(fd_);
}

void frame_recorder::record(protocol::record_kind kind, std::uint64_t connection_id,
                            std::uint64_t stream_id, std::uint64_t frame_id,
                            protocol::bytes_view payload) noexcept {
    if (stopped_.load(std::memory_order_relaxed)) return;
    std::uint8_t header[protocol::record_header_size];
    protocol::encode_record_header({kind, static_cast<std::uint32_t>(payload.size()), connection_id,
                                    stream_id, frame_id, unix_time_ns()},
                                   std::span<std::uint8_t, protocol::record_header_size>(header));
    const std::uint64_t size = protocol::record_header_size + payload.size();
    std::lock_guard lock(mutex_);
    if (fd_ < 0) return;
    if (written_ + size > max_bytes_) {
        stop("the next record would pass --record-max-bytes " + std::to_string(max_bytes_));
        return;
    }
    iovec iov[2] = {{header, sizeof header},
                    {const_cast<std::uint8_t*>(payload.data()), payload.size()}};
    if (!write_all(fd_, iov, payload.empty() ? 1 : 2)) {
        stop(std::string("write failed: ") + std::strerror(errno));
        return;
    }
    written_ += size;
}

std::uint64_t frame_recorder::size() const noexcept {
    std::lock_guard lock(mutex_);
    return written_;
}

void frame_recorder::stop(const std::string& why) noexcept {
    stopped_.store(true, std::memory_order_relaxed);
    ::close(fd_);
    fd_ = -1;
    try {
        log_.warn("recording to {} stopped after {} bytes: {}", path_, written_, why);
    } catch (...) {  // NOLINT(bugprone-empty-catch): logging must not take the loop down
    }
}

}  // namespace spoa::detail
