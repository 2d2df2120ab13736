// apps/common/log.hpp: the log process of smtpd and smtpc (log_process.cpp), and the
// senders' Logger (logger.cpp). The record between them is in log_record.hpp.
//
// One log process per daemon writes every log line. The master (smtpd) or main thread
// (smtpc) calls start_log_process() first, before it forks workers, opens sockets or
// starts threads. That creates a POSIX message queue, forks the log process with fork()
// alone, and returns a LogProcess handle. Every process forked later, and every thread,
// sends records through a Logger built on that handle; the log process writes them as
//
//   2024-05-01T12:34:56.123456Z smtpd[4242]: info: 4F3A2B: client=mail.example[192.0.2.1]
//
// (UTC, microseconds; the time and pid are the sender's, carried in the record) to the
// log file, to stdout, and error lines also to stderr. One record is one line: text is
// bounded (LogOptions::record_bytes) and cut with a visible marker, never split, and
// CR, LF, other control bytes and backslash are escaped by the log process, so text a
// client chose (a HELO name) can never forge a line.
//
// Invariants:
// - The queue name is unlinked before start_log_process() returns, in fact before the
//   fork: the master holds both descriptors and children inherit them. A crash at any
//   moment after start leaves no queue behind; the kernel frees it with the last
//   descriptor.
// - A sender never waits longer than its Logger's LoggerOptions::max_wait for a record,
//   and with max_wait 0 (the default; smtpd) never blocks at all: the descriptor is
//   O_NONBLOCK. A record that does not fit (queue full, log process dead or stopped) is
//   dropped and counted, and the next record that gets through carries the count, so
//   the log shows "N records dropped". A record is never lost silently, unless the
//   sender exits before it sends again.
// - With max_wait above 0 (smtpc) a record that finds the queue full waits for room,
//   max_wait at most, and is dropped only then. A wait that runs out turns waiting off
//   for that Logger: its records drop at once, as with 0, until one of them is sent
//   again. So a dead or stopped log process costs one wait (one per thread already
//   waiting), not one per record.
// - The log process's own lines (start with the queue size in use, drop notices,
//   stop) are written whatever the minimum level.
// - The master keeps the receiving descriptor too, so a log process that died can be
//   replaced by restart_log_process() on the same queue: workers keep their Logger and
//   records queued meanwhile are written by the new process.
//
// The forked log process runs only code of log_process.cpp: it resets every signal
// handler, closes its copy of the sending descriptor, and leaves through _exit() after
// freeing what it allocated, so no destructor or atexit handler of the parent runs
// twice. It uses malloc (fork-safe in glibc) and no stdio; still, start it before any
// thread. It asks for SIGTERM when the thread that forked it ends (PR_SET_PDEATHSIG), so
// call start and restart from the main thread.
//
// Thread safety: Logger::log() and its formatting variants may be called from any
// number of threads at once (mq_send and poll are thread-safe; the drop counter and the
// waiting switch are atomic; all else is immutable after construction). LogProcess and
// the free functions belong to one thread (the master's main thread).
#ifndef SMTP_APPS_COMMON_LOG_HPP
#define SMTP_APPS_COMMON_LOG_HPP

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <mqueue.h>
#include <sys/types.h>

namespace smtp {

enum class LogLevel : std::uint8_t { debug, info, warning, error };

// "debug", "info", "warning", "error".
std::string_view log_level_name(LogLevel level) noexcept;

// A record on the queue is at most this big: the limit of LogOptions::record_bytes.
// 8192 is Linux's default /proc/sys/fs/mqueue/msgsize_max.
inline constexpr std::size_t log_record_max_bytes = 8192;
// Below this a record has too little room for text to be worth a queue.
inline constexpr std::size_t log_record_min_bytes = 256;
// A Logger's name (the "program" of its lines) is cut to this many bytes.
inline constexpr std::size_t log_name_max_bytes = 32;

struct LogOptions {
    // In every line: program[pid]. A Logger may carry its own name ("smtpd/master").
    std::string program = "smtp";
    // Required. Opened by start_log_process() (O_APPEND | O_CREAT, mode 0640) in the
    // calling process, so an error is reported there, before anything else is made.
    std::string file_path;
    // Records below it are not sent (Logger) and not written (log process).
    LogLevel min_level = LogLevel::info;
    // Every line also goes here; -1: nowhere. 1 is stdout.
    int stdout_fd = 1;
    // Error lines, and the log process's own trouble, also go here; -1: error lines
    // nowhere, trouble to fd 2. 2 is stderr.
    int stderr_fd = 2;
    // Asked-for queue size. Linux lets a process without CAP_SYS_RESOURCE have at most
    // /proc/sys/fs/mqueue/msg_max (10) records of msgsize_max (8192) bytes, and
    // RLIMIT_MSGQUEUE (819200 bytes) per user; start falls back to what is allowed and
    // reports the size in use in the first line.
    long queue_records = 256;
    long record_bytes = 1024;  // clamped to [log_record_min_bytes, log_record_max_bytes]
    // Empty: "/<program>.<pid>.<counter>". Set by tests to check it is gone.
    std::string queue_name;
};

struct LogQueueSize {
    long records = 0;  // how many records the queue holds
    long bytes = 0;    // the size of one record, header included
};

// The master's handle on the log process and its queue. Move-only. The destructor
// closes the descriptors it holds and nothing more: it never signals or waits, because
// a forked worker destroys its copy too. Stop the process with stop_and_wait().
class LogProcess {
public:
    LogProcess() noexcept = default;
    LogProcess(LogProcess&& other) noexcept;
    LogProcess& operator=(LogProcess&& other) noexcept;
    LogProcess(const LogProcess&) = delete;
    LogProcess& operator=(const LogProcess&) = delete;
    ~LogProcess();

    // The log process, or -1 when none runs (stopped, reaped, never started).
    pid_t pid() const noexcept { return pid_; }
    // The sending descriptor (O_NONBLOCK), or (mqd_t)-1. Borrowed by Loggers.
    mqd_t sender() const noexcept { return sender_; }
    // The (already unlinked) queue name, for diagnostics and tests.
    const std::string& queue_name() const noexcept { return queue_name_; }
    LogQueueSize queue_size() const noexcept { return size_; }
    LogQueueSize asked_size() const noexcept { return asked_; }
    LogLevel min_level() const noexcept { return min_level_; }
    // The wait status of the last log process reaped through this handle, or -1.
    int exit_status() const noexcept { return exit_status_; }

    // In a process forked from the master (a worker), first thing: closes the
    // receiving descriptor and forgets the pid, since only the master reaps or
    // restarts the log process. The sending descriptor stays for the worker's Logger.
    void after_fork_in_worker() noexcept;

    // The master reaped the log process itself (waitpid(-1, ...) in its SIGCHLD
    // handling returned pid()): record it, so restart does not wait for a pid that
    // may already belong to another child.
    void note_reaped(int wait_status) noexcept;

private:
    friend struct LogProcessAccess;
    void close_all() noexcept;

    pid_t pid_ = -1;
    mqd_t sender_ = static_cast<mqd_t>(-1);
    mqd_t reader_ = static_cast<mqd_t>(-1);
    std::string queue_name_;
    LogQueueSize size_;
    LogQueueSize asked_;
    LogLevel min_level_ = LogLevel::info;
    int exit_status_ = -1;
};

// What start or restart reports: an error code (errno values, system_category) and
// what failed in words, e.g. "cannot open log file /var/log/x: No such file or directory".
struct LogError {
    std::error_code code;
    std::string what;
    explicit operator bool() const noexcept { return static_cast<bool>(code); }
};

struct LogStart {
    LogProcess process;  // empty when error is set
    LogError error;
};

// Opens the log file, creates and unlinks the queue, forks the log process and waits
// until it has written its first line (the queue size in use). On any error everything
// taken is released: no queue, no child (reaped), no descriptor. Errors: the log file
// cannot be opened (errno of open), the first line cannot be written (e.g. ENOSPC),
// no queue can be had (errno of mq_open), fork fails, bad options (EINVAL).
LogStart start_log_process(const LogOptions& options);

// Replaces a log process that died, on the same queue: Loggers in every process keep
// working and records queued meanwhile are written. Reopens options.file_path (so it
// also serves log rotation). Errors as start; EBUSY if the old process still runs.
LogError restart_log_process(LogProcess& process, const LogOptions& options);

// Asks the log process to stop (SIGCONT, and a stop record, retried while the queue is
// full; SIGTERM if it still does not fit after timeout / 2), waits until it has drained the queue, written
// its last line and exited, and reaps it; after `timeout` it is killed (SIGKILL) and reaped, and the error is
// timed_out. Then closes both descriptors: Loggers on this handle drop from now on.
// Returns {} if it exited with status 0; io_error otherwise (see exit_status()).
std::error_code stop_and_wait(LogProcess& process,
                              std::chrono::milliseconds timeout = std::chrono::seconds(5));

// How a Logger sends; read once, by its constructor.
struct LoggerOptions {
    // The program shown in this Logger's lines (copied); empty: LogOptions::program.
    std::string_view name{};  // {}: else g++ -Wextra warns if {.max_wait = } leaves it out
    // How long a record that finds the queue full may wait for room before it is
    // dropped. 0: never wait, for a process that serves clients (smtpd). Negative: 0.
    std::chrono::milliseconds max_wait{0};
};

// The sending side. Borrows the handle's sending descriptor: the LogProcess must
// outlive it (in a worker: the worker's copy of the handle). Copying is not allowed
// (the drop counter is per Logger); share one by reference among threads.
class Logger {
public:
    // A Logger with no queue: every record is dropped and counted, without waiting.
    Logger() noexcept = default;
    // name: the program shown in this Logger's lines; empty: LogOptions::program.
    // Never waits (max_wait 0).
    explicit Logger(const LogProcess& process, std::string_view name = {}) noexcept;
    Logger(const LogProcess& process, const LoggerOptions& options) noexcept;
    Logger(const Logger&) = delete;
    Logger& operator=(const Logger&) = delete;

    // Sends one record. Returns true if it was queued or is below the minimum level;
    // false if it was dropped (and counted). Never blocks with max_wait 0; otherwise a
    // full queue makes it wait for room, max_wait at most (see the invariants above).
    // Text longer than max_text_bytes() is cut, and the line says how long it was.
    bool log(LogLevel level, std::string_view text) noexcept;

    // fmt-formatted variants, formatted straight into the record (no allocation).
    template <typename... Args>
    bool debug(fmt::format_string<Args...> format, Args&&... args) {
        return log_fmt(LogLevel::debug, format, std::forward<Args>(args)...);
    }
    template <typename... Args>
    bool info(fmt::format_string<Args...> format, Args&&... args) {
        return log_fmt(LogLevel::info, format, std::forward<Args>(args)...);
    }
    template <typename... Args>
    bool warning(fmt::format_string<Args...> format, Args&&... args) {
        return log_fmt(LogLevel::warning, format, std::forward<Args>(args)...);
    }
    template <typename... Args>
    bool error(fmt::format_string<Args...> format, Args&&... args) {
        return log_fmt(LogLevel::error, format, std::forward<Args>(args)...);
    }

    // Records dropped and not yet reported in a record that got through.
    std::uint64_t dropped_pending() const noexcept { return dropped_.load(std::memory_order_relaxed); }
    // The longest text a record carries whole.
    std::size_t max_text_bytes() const noexcept { return record_bytes_ - text_offset(); }
    LogLevel min_level() const noexcept { return min_level_; }
    std::chrono::milliseconds max_wait() const noexcept { return max_wait_; }
    // Whether a record that finds the queue full now waits: max_wait() is above 0 and
    // no wait has run out since the last record that was sent.
    bool waits_when_full() const noexcept { return waiting_.load(std::memory_order_relaxed); }

    // In a child right after fork(): the count inherited from the parent is the
    // parent's to report, not the child's.
    void after_fork() noexcept { dropped_.store(0, std::memory_order_relaxed); }

private:
    template <typename... Args>
    bool log_fmt(LogLevel level, fmt::format_string<Args...> format, Args&&... args) {
        if (level < min_level_) return true;
        char record[log_record_max_bytes];
        const auto result =
            fmt::format_to_n(record + text_offset(), max_text_bytes(), format, std::forward<Args>(args)...);
        return send(record, level, result.size);
    }
    std::size_t text_offset() const noexcept;
    // Completes the record whose text (cut to max_text_bytes()) is already in place.
    bool send(char* record, LogLevel level, std::size_t text_bytes) noexcept;
    // After mq_send found the queue full: waits for room and sends again, for max_wait_
    // at most. False if the record is still not sent; if time ran out, waiting_ is off.
    bool wait_and_send(const char* record, std::size_t bytes) noexcept;

    mqd_t mqd_ = static_cast<mqd_t>(-1);
    LogLevel min_level_ = LogLevel::info;
    std::size_t record_bytes_ = log_record_min_bytes;
    char name_[log_name_max_bytes] = {};
    std::size_t name_bytes_ = 0;
    std::atomic<std::uint64_t> dropped_{0};
    std::chrono::milliseconds max_wait_{0};
    // Off after a wait ran out, on again after a record was sent (max_wait_ above 0).
    std::atomic<bool> waiting_{false};
};

}  // namespace smtp

#endif
