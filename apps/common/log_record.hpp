// apps/common/log_record.hpp (private to apps/common): a record on the log queue.
//
// A record on the queue is a RecordHeader, then the sender's name, then the text, all
// raw bytes: sender and reader are the same program on the same machine, so the
// native layout is the format. The reader trusts nothing of it but the layout: every
// length is checked against the size mq_receive reported, and escaping happens in the
// log process, so even a buggy sender cannot break a line.
//
// Written by Logger (logger.cpp: line records) and stop_and_wait() (log_process.cpp:
// the stop record); read by the log process (log_process.cpp).
// Thread safety: constants, a plain struct and a function without state.
#ifndef SMTP_APPS_COMMON_LOG_RECORD_HPP
#define SMTP_APPS_COMMON_LOG_RECORD_HPP

#include <cstdint>
#include <ctime>

#include <mqueue.h>

namespace smtp::detail {

inline constexpr std::uint32_t record_magic = 0x534c4731;  // "SLG1": catches a stray writer
inline constexpr std::uint8_t kind_line = 0;
inline constexpr std::uint8_t kind_stop = 1;
// What mq_open returns on failure; a LogProcess or Logger without a queue holds it.
inline constexpr mqd_t no_queue = static_cast<mqd_t>(-1);

struct RecordHeader {
    std::uint32_t magic;
    std::uint8_t kind;
    std::uint8_t level;
    std::uint8_t name_bytes;
    std::uint8_t reserved;
    std::int32_t pid;
    std::uint32_t text_bytes;      // in this record
    std::uint64_t original_bytes;  // before the sender cut it
    std::uint64_t dropped;         // records this sender dropped before this one
    std::int64_t sec;              // the sender's CLOCK_REALTIME
    std::int64_t nsec;
};

inline timespec now_realtime() noexcept {
    timespec ts{};
    // CLOCK_REALTIME cannot fail with a valid pointer; if it did, the epoch marks it.
    if (::clock_gettime(CLOCK_REALTIME, &ts) != 0) ts = timespec{};
    return ts;
}

}  // namespace smtp::detail

#endif
