// apps/common/logger.cpp: Logger, the sending side of the log queue (see log.hpp).
//
// A record (log_record.hpp) is built on the sender's stack and sent without blocking;
// if the queue is full and the Logger has a max_wait, it waits in poll() for room, up
// to that long. One that does not get through is counted, and the next one that gets
// through carries the count.
#include "common/log.hpp"
#include "common/log_record.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include <poll.h>
#include <unistd.h>

namespace smtp {

namespace {

using detail::kind_line;
using detail::no_queue;
using detail::now_realtime;
using detail::record_magic;
using detail::RecordHeader;

}  // namespace

Logger::Logger(const LogProcess& process, std::string_view name) noexcept
    : Logger(process, LoggerOptions{name, std::chrono::milliseconds{0}}) {}

Logger::Logger(const LogProcess& process, const LoggerOptions& options) noexcept
    : mqd_(process.sender()),
      min_level_(process.min_level()),
      record_bytes_(static_cast<std::size_t>(process.queue_size().bytes)),
      max_wait_(std::max(options.max_wait, std::chrono::milliseconds{0})),
      waiting_(max_wait_.count() > 0) {
    if (mqd_ == no_queue || record_bytes_ < log_record_min_bytes || record_bytes_ > log_record_max_bytes) {
        mqd_ = no_queue;
        record_bytes_ = log_record_min_bytes;
        waiting_.store(false, std::memory_order_relaxed);  // nothing to wait for
    }
    name_bytes_ = std::min(options.name.size(), log_name_max_bytes);
    std::memcpy(name_, options.name.data(), name_bytes_);
}

std::size_t Logger::text_offset() const noexcept { return sizeof(RecordHeader) + name_bytes_; }

bool Logger::log(LogLevel level, std::string_view text) noexcept {
    if (level < min_level_) return true;
    char record[log_record_max_bytes];
    std::memcpy(record + text_offset(), text.data(), std::min(text.size(), max_text_bytes()));
    return send(record, level, text.size());
}

bool Logger::send(char* record, LogLevel level, std::size_t text_bytes) noexcept {
    const std::size_t kept = std::min(text_bytes, max_text_bytes());
    const timespec ts = now_realtime();
    RecordHeader h{};
    h.magic = record_magic;
    h.kind = kind_line;
    h.level = static_cast<std::uint8_t>(level);
    h.name_bytes = static_cast<std::uint8_t>(name_bytes_);
    h.pid = static_cast<std::int32_t>(::getpid());
    h.text_bytes = static_cast<std::uint32_t>(kept);
    h.original_bytes = text_bytes;
    h.sec = ts.tv_sec;
    h.nsec = ts.tv_nsec;
    // Taken out before the send and put back if it fails: with several threads each
    // drop is reported by exactly one record.
    h.dropped = dropped_.exchange(0, std::memory_order_relaxed);
    std::memcpy(record, &h, sizeof h);
    std::memcpy(record + sizeof h, name_, name_bytes_);
    // O_NONBLOCK: EAGAIN when full, and only then is waiting worth it. Any other error
    // (EBADF after stop) is a drop at once.
    const std::size_t bytes = text_offset() + kept;
    if (mqd_ != no_queue) {
        if (::mq_send(mqd_, record, bytes, 0) == 0) {
            // Sent: the log process reads again, so a full queue is worth a wait again.
            // Loaded first, so that a running log process costs no store per record.
            if (max_wait_.count() > 0 && !waiting_.load(std::memory_order_relaxed)) {
                waiting_.store(true, std::memory_order_relaxed);
            }
            return true;
        }
        if (errno == EAGAIN && waiting_.load(std::memory_order_relaxed) && wait_and_send(record, bytes)) {
            return true;
        }
    }
    dropped_.fetch_add(h.dropped + 1, std::memory_order_relaxed);
    return false;
}

bool Logger::wait_and_send(const char* record, std::size_t bytes) noexcept {
    using std::chrono::steady_clock;  // CLOCK_MONOTONIC: a clock set back cannot stretch the wait
    const steady_clock::time_point deadline = steady_clock::now() + max_wait_;
    for (;;) {
        const steady_clock::duration left = deadline - steady_clock::now();
        if (left <= steady_clock::duration::zero()) break;
        // Rounded up: a timeout of 0 for the last part of a millisecond would spin.
        const auto timeout = std::min(std::chrono::ceil<std::chrono::milliseconds>(left),
                                      std::chrono::milliseconds{std::numeric_limits<int>::max()});
        // Linux: a message queue descriptor is a file descriptor, POLLOUT when the queue
        // has room (mq_overview(7)); every mq_receive wakes the pollers.
        pollfd p{mqd_, POLLOUT, 0};
        const int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
        if (ready < 0) {
            if (errno == EINTR) continue;  // a signal: wait the rest
            return false;
        }
        if (ready == 0) continue;  // the deadline is checked above
        // POLLNVAL: the descriptor was closed (stop_and_wait); POLLERR: nothing to wait for.
        if ((p.revents & POLLOUT) == 0) return false;
        if (::mq_send(mqd_, record, bytes, 0) == 0) return true;
        // Another sender took the room first: wait again, within the same deadline.
        if (errno != EAGAIN) return false;
    }
    // The log process did not read for max_wait_: dead or stopped, most likely. Later
    // records drop at once until one is sent (send() turns waiting back on).
    waiting_.store(false, std::memory_order_relaxed);
    return false;
}

}  // namespace smtp
