// apps/common/logger.cpp: Logger, the sending side of the log queue (see log.hpp).
//
// A record (log_record.hpp) is built on the sender's stack and sent without blocking;
// one that does not fit is counted, and the next one that gets through carries the count.
#include "common/log.hpp"
#include "common/log_record.hpp"

#include <algorithm>
#include <cstring>

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
    : mqd_(process.sender()),
      min_level_(process.min_level()),
      record_bytes_(static_cast<std::size_t>(process.queue_size().bytes)) {
    if (mqd_ == no_queue || record_bytes_ < log_record_min_bytes || record_bytes_ > log_record_max_bytes) {
        mqd_ = no_queue;
        record_bytes_ = log_record_min_bytes;
    }
    name_bytes_ = std::min(name.size(), log_name_max_bytes);
    std::memcpy(name_, name.data(), name_bytes_);
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
    // O_NONBLOCK: EAGAIN when full. Any error (EBADF after stop) is a drop too.
    if (mqd_ != no_queue && ::mq_send(mqd_, record, text_offset() + kept, 0) == 0) return true;
    dropped_.fetch_add(h.dropped + 1, std::memory_order_relaxed);
    return false;
}

}  // namespace smtp
