// apps/common/log_process.cpp: the log process (see log.hpp): its queue, the fork, the
// child's receive-and-write loop, and start, restart and stop.
//
// The records it reads are laid out in log_record.hpp; Logger (logger.cpp) sends them.
#include "common/fd.hpp"
#include "common/log.hpp"
#include "common/log_record.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <ctime>
#include <iterator>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace smtp {

namespace {

using detail::kind_stop;
using detail::no_queue;
using detail::now_realtime;
using detail::record_magic;
using detail::RecordHeader;

// Written by the SIGTERM handler of the log process, read by its loop. A signal
// handler can reach nothing but a global; only the log process installs the handler.
volatile std::sig_atomic_t g_terminate = 0;
extern "C" void on_sigterm(int) { g_terminate = 1; }

// Makes queue names unique within the process; the pid makes them unique system-wide.
std::atomic<unsigned> g_queue_counter{0};

LogError sys_error(int err, std::string what) {
    std::error_code code{err, std::system_category()};
    what += ": ";
    what += code.message();
    return {code, std::move(what)};
}

// Reads a number from /proc/sys/fs/mqueue/...; -1 if it cannot.
long read_proc_long(const char* path) noexcept {
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[32] = {};
    ssize_t n;
    do n = ::read(fd, buf, sizeof buf - 1);
    while (n < 0 && errno == EINTR);
    // A failed close of a file only read loses nothing.
    static_cast<void>(::close(fd));
    if (n <= 0) return -1;
    long value = 0;
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) value = value * 10 + (buf[i] - '0');
    return value;
}

// One step smaller after mq_open refused a size: first to the system's limits
// (msgsize_max, msg_max), then halving the record count. False when nothing is left.
bool shrink_queue(mq_attr& attr) noexcept {
    const long size_max = read_proc_long("/proc/sys/fs/mqueue/msgsize_max");
    const long msg_max = read_proc_long("/proc/sys/fs/mqueue/msg_max");
    if (size_max >= static_cast<long>(log_record_min_bytes) && attr.mq_msgsize > size_max) {
        attr.mq_msgsize = size_max;
        return true;
    }
    if (msg_max > 0 && attr.mq_maxmsg > msg_max) {
        attr.mq_maxmsg = msg_max;
        return true;
    }
    if (attr.mq_maxmsg > 1) {
        attr.mq_maxmsg /= 2;
        return true;
    }
    return false;
}

std::string make_queue_name(std::string_view program) {
    std::string name = "/";
    for (char c : program.substr(0, 32)) {
        const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                           c == '-' || c == '_';
        name.push_back(plain ? c : '_');
    }
    fmt::format_to(std::back_inserter(name), ".{}.{}", ::getpid(), g_queue_counter.fetch_add(1));
    return name;
}

// CR and LF would end the line early and let the rest pose as a line of its own;
// other control bytes can fool a terminal; backslash is escaped so the escaping is
// unambiguous. Bytes >= 0x80 pass: log lines may carry UTF-8 (RFC 6531 addresses).
void append_escaped(std::string& out, std::string_view text) {
    for (const char ch : text) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '\\':
                out += "\\\\";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    fmt::format_to(std::back_inserter(out), "\\x{:02x}", c);
                } else {
                    out.push_back(ch);
                }
        }
    }
}

// ISO 8601 in UTC with microseconds. Plain arithmetic: no time zone, so no glibc
// lock that a thread of the parent might have held at fork.
void append_timestamp(std::string& out, std::int64_t sec, std::int64_t nsec) {
    using namespace std::chrono;
    const sys_seconds t{seconds{sec}};
    const auto day = floor<days>(t);
    const year_month_day ymd{day};
    const hh_mm_ss<seconds> hms{t - day};
    fmt::format_to(std::back_inserter(out), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
                   static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
                   static_cast<unsigned>(ymd.day()), hms.hours().count(), hms.minutes().count(),
                   hms.seconds().count(), nsec / 1000);
    out.push_back('Z');
}

// The log process's outputs and its batch of lines. Lines collect in batch_ and are
// written with one write(2) per output per batch: line-buffered would cost a system
// call per line under load, a batch is written before the process sleeps again.
class Writer {
public:
    Writer(int file_fd, std::string file_path, int stdout_fd, int stderr_fd)
        : file_fd_(file_fd), file_path_(std::move(file_path)), stdout_fd_(stdout_fd), stderr_fd_(stderr_fd) {}

    void line(std::int64_t sec, std::int64_t nsec, std::string_view program, long pid, LogLevel level,
              std::string_view text, std::uint64_t original_bytes = 0) {
        const std::size_t start = batch_.size();
        append_timestamp(batch_, sec, nsec);
        batch_.push_back(' ');
        append_escaped(batch_, program);
        fmt::format_to(std::back_inserter(batch_), "[{}]: {}: ", pid, log_level_name(level));
        append_escaped(batch_, text);
        if (original_bytes > text.size()) {
            fmt::format_to(std::back_inserter(batch_), "...[truncated, {} bytes in all]", original_bytes);
        }
        batch_.push_back('\n');
        if (level == LogLevel::error && stderr_fd_ >= 0) errors_.append(batch_, start);
        ++lines_;
    }

    // Writes the batch. Returns 0 or the errno of the log file's write.
    int flush() {
        int file_err = 0;
        if (!batch_.empty()) {
            file_err = write_all(file_fd_, batch_).value();
            if (file_err != 0) failed(file_failures_, file_err, file_path_);
            if (stdout_fd_ >= 0) {
                const int err = write_all(stdout_fd_, batch_).value();
                if (err != 0) failed(stdout_failures_, err, "stdout");
            }
        }
        // stderr is where trouble is reported: if even it fails there is no one to tell.
        if (!errors_.empty()) static_cast<void>(write_all(stderr_fd_, errors_));
        batch_.clear();
        errors_.clear();
        return file_err;
    }

    // Says on stderr what could not be written, once at the end.
    void report_failures() {
        if (file_failures_ > 0) trouble(fmt::format("{} writes to {} failed", file_failures_, file_path_));
        if (stdout_failures_ > 0) trouble(fmt::format("{} writes to stdout failed", stdout_failures_));
    }

    void trouble(std::string_view what) {
        const std::string text = fmt::format("log process[{}]: {}\n", ::getpid(), what);
        static_cast<void>(write_all(stderr_fd_ >= 0 ? stderr_fd_ : 2, text));
    }

    std::uint64_t lines() const noexcept { return lines_; }

private:
    // The first failure of an output is reported at once, the rest counted.
    void failed(std::uint64_t& failures, int err, std::string_view what) {
        if (failures++ == 0) {
            trouble(fmt::format("cannot write {}: {}; further failures are counted", what,
                                std::system_category().message(err)));
        }
    }

    int file_fd_;
    std::string file_path_;
    int stdout_fd_;
    int stderr_fd_;
    std::string batch_;
    std::string errors_;
    std::uint64_t file_failures_ = 0;
    std::uint64_t stdout_failures_ = 0;
    std::uint64_t lines_ = 0;
};

// What the log process tells start_log_process() over the ready pipe.
struct ReadyReport {
    int step;  // a Step; ok when it runs
    int err;   // errno
};
enum Step : int { step_ok, step_signals, step_prctl, step_getattr, step_first_line, step_exception };

std::string_view step_name(int step) {
    switch (step) {
        case step_signals:
            return "log process: cannot set up its signals";
        case step_prctl:
            return "log process: prctl(PR_SET_PDEATHSIG)";
        case step_getattr:
            return "log process: mq_getattr";
        case step_first_line:
            return "log process: cannot write the log file";
        case step_exception:
            return "log process: out of memory";
        default:
            return "log process exited during start";
    }
}

struct ChildArgs {
    const LogOptions& options;
    int log_fd;
    mqd_t reader;
    mqd_t sender;
    int ready_fd;
    pid_t parent;
    LogQueueSize size;
    LogQueueSize asked;
    bool restarted;
};

class LogProcessMain {
public:
    LogProcessMain(const ChildArgs& args, Writer& writer) : a_(args), out_(writer) {}

    // Returns the exit status.
    int run() {
        int ready_fd = a_.ready_fd;
        // Tells the parent how the start went; returns the exit status for a failure.
        const auto report = [&ready_fd](int step, int err) {
            if (ready_fd < 0) return 71;
            const ReadyReport r{step, err};
            // If the parent is gone there is nobody to tell; PDEATHSIG stops us.
            static_cast<void>(
                write_all(ready_fd, std::string_view(reinterpret_cast<const char*>(&r), sizeof r)));
            static_cast<void>(::close(ready_fd));
            ready_fd = -1;
            return 71;
        };

        if (int err = set_up_signals(); err != 0) return report(step_signals, err);
        if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) return report(step_prctl, errno);
        // The parent may have died before prctl took effect.
        if (::getppid() != a_.parent) g_terminate = 1;

        mq_attr attr{};
        if (::mq_getattr(a_.reader, &attr) != 0) return report(step_getattr, errno);
        buffer_.resize(static_cast<std::size_t>(attr.mq_msgsize));

        own_line(
            LogLevel::info,
            fmt::format("log process {}: queue of {} records of {} bytes (asked {} of {}), minimum level {}",
                        a_.restarted ? "restarted" : "started", a_.size.records, a_.size.bytes,
                        a_.asked.records, a_.asked.bytes, log_level_name(a_.options.min_level)));
        if (int err = out_.flush(); err != 0) return report(step_first_line, err);
        static_cast<void>(report(step_ok, 0));

        int status = loop();
        if (status == 0) {
            own_line(LogLevel::info, fmt::format("log process stopping ({}): {} lines written, {} records "
                                                 "dropped by senders, {} malformed records",
                                                 stop_record_ ? "stop record" : "SIGTERM", out_.lines() + 1,
                                                 dropped_, malformed_));
            static_cast<void>(out_.flush());
        }
        out_.report_failures();
        return status;
    }

private:
    int set_up_signals() {
        // Handlers inherited from the parent point into its state: reset them all.
        // glibc reserves two real-time signals and refuses them with EINVAL.
        struct sigaction sa {};
        sa.sa_handler = SIG_DFL;
        sigemptyset(&sa.sa_mask);
        for (int sig = 1; sig < NSIG; ++sig) {
            if (sig == SIGKILL || sig == SIGSTOP) continue;
            if (::sigaction(sig, &sa, nullptr) != 0 && errno != EINVAL) return errno;
        }
        // SIGINT from a terminal reaches the whole process group; the master decides
        // when logging ends, so that its shutdown is still logged. A closed stdout
        // must not kill the log process: the write fails and is counted.
        sa.sa_handler = SIG_IGN;
        if (::sigaction(SIGINT, &sa, nullptr) != 0) return errno;
        if (::sigaction(SIGPIPE, &sa, nullptr) != 0) return errno;
        sa.sa_handler = on_sigterm;
        if (::sigaction(SIGTERM, &sa, nullptr) != 0) return errno;
        // SIGTERM stays blocked except inside ppoll(), so it cannot slip in between the
        // check of g_terminate and the wait (a lost wake-up).
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        if (::sigprocmask(SIG_SETMASK, &mask, nullptr) != 0) return errno;
        return 0;
    }

    int loop() {
        sigset_t unblocked;
        sigemptyset(&unblocked);
        while (!stop_record_ && g_terminate == 0) {
            // Linux: a message queue descriptor is a file descriptor and can be polled
            // (mq_overview(7)); ppoll lets SIGTERM in atomically with the wait.
            pollfd p{a_.reader, POLLIN, 0};
            if (::ppoll(&p, 1, nullptr, &unblocked) < 0 && errno != EINTR) {
                out_.trouble(fmt::format("ppoll: {}", std::system_category().message(errno)));
                return 71;
            }
            for (;;) {
                long got = 0;
                if (!drain(batch_records, got)) return 71;
                static_cast<void>(out_.flush());
                if (got < batch_records || stop_record_) break;
            }
        }
        // Stopping: write what is queued now, not what keeps coming, so that busy
        // senders cannot keep the log process from ever stopping.
        mq_attr attr{};
        if (::mq_getattr(a_.reader, &attr) != 0) {
            out_.trouble(fmt::format("mq_getattr: {}", std::system_category().message(errno)));
            return 71;
        }
        long got = 0;
        if (!drain(attr.mq_curmsgs, got)) return 71;
        static_cast<void>(out_.flush());
        return 0;
    }

    // Receives up to `limit` records without blocking. False on a queue error.
    bool drain(long limit, long& got) {
        for (got = 0; got < limit; ++got) {
            const ssize_t n = ::mq_receive(a_.reader, buffer_.data(), buffer_.size(), nullptr);
            if (n < 0) {
                if (errno == EAGAIN) return true;
                if (errno == EINTR) continue;
                out_.trouble(fmt::format("mq_receive: {}", std::system_category().message(errno)));
                return false;
            }
            handle(std::string_view(buffer_.data(), static_cast<std::size_t>(n)));
        }
        return true;
    }

    void handle(std::string_view record) {
        RecordHeader h{};
        if (record.size() >= sizeof h) std::memcpy(&h, record.data(), sizeof h);
        if (record.size() < sizeof h || h.magic != record_magic || h.kind > kind_stop ||
            h.level > static_cast<std::uint8_t>(LogLevel::error) || h.name_bytes > log_name_max_bytes ||
            sizeof h + h.name_bytes + std::size_t{h.text_bytes} != record.size() || h.nsec < 0 ||
            h.nsec > 999'999'999) {
            ++malformed_;
            own_line(LogLevel::warning, fmt::format("malformed record of {} bytes ignored", record.size()));
            return;
        }
        std::string_view name = record.substr(sizeof h, h.name_bytes);
        if (name.empty()) name = a_.options.program;
        if (h.dropped > 0) {
            dropped_ += h.dropped;
            out_.line(h.sec, h.nsec, name, h.pid, LogLevel::warning,
                      fmt::format("{} record{} dropped before this one (queue full or no log process)",
                                  h.dropped, h.dropped == 1 ? "" : "s"));
        }
        if (h.kind == kind_stop) {
            stop_record_ = true;
            return;
        }
        const auto level = static_cast<LogLevel>(h.level);
        if (level < a_.options.min_level) return;
        out_.line(h.sec, h.nsec, name, h.pid, level, record.substr(sizeof h + h.name_bytes),
                  h.original_bytes);
    }

    void own_line(LogLevel level, std::string_view text) {
        const timespec ts = now_realtime();
        out_.line(ts.tv_sec, ts.tv_nsec, a_.options.program, ::getpid(), level, text);
    }

    static constexpr long batch_records = 64;  // records per write(2)

    const ChildArgs& a_;
    Writer& out_;
    std::vector<char> buffer_;
    bool stop_record_ = false;
    std::uint64_t dropped_ = 0;
    std::uint64_t malformed_ = 0;
};

// The log process after fork(). Never returns: every resource the child owns is
// released, then _exit() skips the parent's destructors and atexit handlers, whose
// state the child has only a copy of.
[[noreturn]] void log_process_main(const ChildArgs& args) {
    int status = 70;
    // The sending descriptor is the parent's; the log process writes its own lines.
    static_cast<void>(::mq_close(args.sender));
    try {
        Writer writer(args.log_fd, args.options.file_path, args.options.stdout_fd, args.options.stderr_fd);
        LogProcessMain main(args, writer);
        status = main.run();
    } catch (...) {
        // Only bad_alloc can get here. If the ready report is still due the parent
        // sees EOF and reports the start as failed.
        status = 70;
    }
    static_cast<void>(::mq_close(args.reader));
    static_cast<void>(::close(args.log_fd));
    ::_exit(status);
}

LogError open_log_file(const std::string& path, int& fd) {
    if (path.empty()) return {std::make_error_code(std::errc::invalid_argument), "no log file configured"};
    fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (fd < 0) return sys_error(errno, fmt::format("cannot open log file {}", path));
    return {};
}

}  // namespace

// The free functions' way into LogProcess.
struct LogProcessAccess {
    static LogError open_queue(LogProcess& p, const LogOptions& options);
    static LogError fork_child(LogProcess& p, const LogOptions& options, int log_fd, bool restarted);
    static LogStart start(const LogOptions& options);
    static LogError restart(LogProcess& p, const LogOptions& options);
    static std::error_code stop(LogProcess& p, std::chrono::milliseconds timeout);
};

std::string_view log_level_name(LogLevel level) noexcept {
    switch (level) {
        case LogLevel::debug:
            return "debug";
        case LogLevel::info:
            return "info";
        case LogLevel::warning:
            return "warning";
        case LogLevel::error:
            return "error";
    }
    return "unknown";
}

LogProcess::LogProcess(LogProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      sender_(std::exchange(other.sender_, no_queue)),
      reader_(std::exchange(other.reader_, no_queue)),
      queue_name_(std::move(other.queue_name_)),
      size_(other.size_),
      asked_(other.asked_),
      min_level_(other.min_level_),
      exit_status_(other.exit_status_) {}

LogProcess& LogProcess::operator=(LogProcess&& other) noexcept {
    if (this != &other) {
        close_all();
        pid_ = std::exchange(other.pid_, -1);
        sender_ = std::exchange(other.sender_, no_queue);
        reader_ = std::exchange(other.reader_, no_queue);
        queue_name_ = std::move(other.queue_name_);
        size_ = other.size_;
        asked_ = other.asked_;
        min_level_ = other.min_level_;
        exit_status_ = other.exit_status_;
    }
    return *this;
}

LogProcess::~LogProcess() { close_all(); }

void LogProcess::close_all() noexcept {
    // mq_close fails only for a bad descriptor, which would be a bug here; there is
    // nothing to undo either way.
    if (sender_ != no_queue) static_cast<void>(::mq_close(std::exchange(sender_, no_queue)));
    if (reader_ != no_queue) static_cast<void>(::mq_close(std::exchange(reader_, no_queue)));
}

void LogProcess::after_fork_in_worker() noexcept {
    if (reader_ != no_queue) static_cast<void>(::mq_close(std::exchange(reader_, no_queue)));
    pid_ = -1;
}

void LogProcess::note_reaped(int wait_status) noexcept {
    pid_ = -1;
    exit_status_ = wait_status;
}

LogError LogProcessAccess::open_queue(LogProcess& p, const LogOptions& options) {
    const bool generated = options.queue_name.empty();
    std::string name = generated ? make_queue_name(options.program) : options.queue_name;
    if (name.size() < 2 || name.size() > 255 || name[0] != '/' || name.find('/', 1) != std::string::npos) {
        return {std::make_error_code(std::errc::invalid_argument),
                fmt::format("bad message queue name \"{}\"", name)};
    }
    mq_attr attr{};
    attr.mq_maxmsg = p.asked_.records;
    attr.mq_msgsize = p.asked_.bytes;
    mqd_t reader = no_queue;
    for (int collisions = 0;;) {
        // The log process reads without blocking: it waits in ppoll() instead.
        reader = ::mq_open(name.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_NONBLOCK, 0600, &attr);
        if (reader != no_queue) break;
        const int err = errno;
        if (err == EEXIST && generated && ++collisions < 100) {
            name = make_queue_name(options.program);
            continue;
        }
        // EINVAL: over msg_max/msgsize_max without CAP_SYS_RESOURCE; EMFILE: over
        // RLIMIT_MSGQUEUE; EPERM, ENOMEM: other refusals of the size.
        if ((err == EINVAL || err == EMFILE || err == EPERM || err == ENOMEM) && shrink_queue(attr)) continue;
        return sys_error(err, fmt::format("cannot create message queue {} ({} records of {} bytes)", name,
                                          attr.mq_maxmsg, attr.mq_msgsize));
    }
    const auto fail = [&](int err, std::string_view what) {
        static_cast<void>(::mq_close(reader));
        if (p.sender_ != no_queue) static_cast<void>(::mq_close(std::exchange(p.sender_, no_queue)));
        static_cast<void>(::mq_unlink(name.c_str()));  // ENOENT if it was unlinked already
        return sys_error(err, fmt::format("{} {}", what, name));
    };
    p.sender_ = ::mq_open(name.c_str(), O_WRONLY | O_NONBLOCK);
    if (p.sender_ == no_queue) return fail(errno, "cannot open message queue");
    // Both descriptors are held and children will inherit them: the name has served.
    if (::mq_unlink(name.c_str()) != 0) return fail(errno, "cannot unlink message queue");
    mq_attr got{};
    if (::mq_getattr(reader, &got) != 0) return fail(errno, "mq_getattr on message queue");
    p.reader_ = reader;
    p.queue_name_ = std::move(name);
    p.size_ = {got.mq_maxmsg, got.mq_msgsize};
    return {};
}

LogError LogProcessAccess::fork_child(LogProcess& p, const LogOptions& options, int log_fd, bool restarted) {
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) {
        const int err = errno;
        static_cast<void>(::close(log_fd));
        return sys_error(err, "log process: pipe2");
    }
    // All signals blocked across fork(): none of the parent's handlers may run in the
    // child before it has reset them, and none is lost in the parent.
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    if (const int err = ::pthread_sigmask(SIG_SETMASK, &all, &old); err != 0) {
        static_cast<void>(::close(ready[0]));
        static_cast<void>(::close(ready[1]));
        static_cast<void>(::close(log_fd));
        return sys_error(err, "log process: pthread_sigmask");
    }
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
        static_cast<void>(::close(ready[0]));
        log_process_main(
            ChildArgs{options, log_fd, p.reader_, p.sender_, ready[1], parent, p.size_, p.asked_, restarted});
    }
    const int fork_err = errno;
    // Restoring a mask saved a moment ago cannot fail.
    static_cast<void>(::pthread_sigmask(SIG_SETMASK, &old, nullptr));
    static_cast<void>(::close(ready[1]));
    static_cast<void>(::close(log_fd));  // the child has its copy
    if (pid < 0) {
        static_cast<void>(::close(ready[0]));
        return sys_error(fork_err, "log process: fork");
    }

    ReadyReport report{-1, 0};
    std::size_t have = 0;
    while (have < sizeof report) {
        const ssize_t n = ::read(ready[0], reinterpret_cast<char*>(&report) + have, sizeof report - have);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // EOF: the child died before it reported
        have += static_cast<std::size_t>(n);
    }
    static_cast<void>(::close(ready[0]));
    if (have == sizeof report && report.step == step_ok) {
        p.pid_ = pid;
        return {};
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (have == sizeof report && report.err != 0)
        return sys_error(report.err, std::string(step_name(report.step)));
    return {std::make_error_code(std::errc::no_child_process),
            fmt::format("{} (wait status {:#x})", step_name(-1), status)};
}

LogStart LogProcessAccess::start(const LogOptions& options) {
    LogStart start;
    LogProcess& p = start.process;
    if (options.queue_records < 1) {
        start.error = {std::make_error_code(std::errc::invalid_argument), "queue_records must be at least 1"};
        return start;
    }
    p.asked_ = {options.queue_records,
                std::clamp(options.record_bytes, static_cast<long>(log_record_min_bytes),
                           static_cast<long>(log_record_max_bytes))};
    p.min_level_ = options.min_level;
    // The file first: the likeliest error, and nothing else is taken yet.
    int log_fd = -1;
    if ((start.error = open_log_file(options.file_path, log_fd))) return start;
    if ((start.error = LogProcessAccess::open_queue(p, options))) {
        static_cast<void>(::close(log_fd));
        return start;
    }
    // fork_child takes log_fd on every path.
    if ((start.error = LogProcessAccess::fork_child(p, options, log_fd, false))) p = LogProcess{};
    return start;
}

LogStart start_log_process(const LogOptions& options) { return LogProcessAccess::start(options); }

LogError LogProcessAccess::restart(LogProcess& p, const LogOptions& options) {
    if (p.reader_ == no_queue) {
        return {std::make_error_code(std::errc::invalid_argument), "restart: this handle has no queue"};
    }
    if (p.pid_ > 0) {
        int status = 0;
        const pid_t r = ::waitpid(p.pid_, &status, WNOHANG);
        if (r == 0)
            return {std::make_error_code(std::errc::device_or_resource_busy), "restart: log process runs"};
        if (r == p.pid_) {
            p.exit_status_ = status;
        } else if (errno != ECHILD) {
            return sys_error(errno, "restart: waitpid");
        }
        p.pid_ = -1;
    }
    p.min_level_ = options.min_level;
    int log_fd = -1;
    if (LogError e = open_log_file(options.file_path, log_fd)) return e;
    return fork_child(p, options, log_fd, true);
}

LogError restart_log_process(LogProcess& process, const LogOptions& options) {
    return LogProcessAccess::restart(process, options);
}

std::error_code LogProcessAccess::stop(LogProcess& p, std::chrono::milliseconds timeout) {
    if (p.pid_ <= 0) {
        p.close_all();
        return {};
    }
    // The stop record queues behind every record already sent, so they are written
    // first. While the queue is full it is tried again as the log process drains it;
    // if it still does not fit by half the timeout, SIGTERM (which drains the queue
    // too, but cannot say which records came before it).
    RecordHeader h{};
    h.magic = record_magic;
    h.kind = kind_stop;
    h.pid = static_cast<std::int32_t>(::getpid());
    const timespec ts = now_realtime();
    h.sec = ts.tv_sec;
    h.nsec = ts.tv_nsec;
    const auto send_stop = [&] {
        return ::mq_send(p.sender_, reinterpret_cast<const char*>(&h), sizeof h, 0) == 0;
    };
    bool asked = send_stop();
    // A stopped (SIGSTOP) log process could act on neither. ESRCH: it is gone
    // already, the wait below collects it.
    if (::kill(p.pid_, SIGCONT) != 0 && errno != ESRCH) return {errno, std::system_category()};

    using clock = std::chrono::steady_clock;
    const auto now = clock::now();
    const auto term_at = now + timeout / 2;
    const auto deadline = now + timeout;
    long backoff_ns = 1'000'000;
    int status = 0;
    std::error_code result;
    for (;;) {
        const pid_t r = ::waitpid(p.pid_, &status, WNOHANG);
        if (r == p.pid_) break;
        if (r < 0) {
            if (errno == EINTR) continue;
            // ECHILD: someone else reaped it; its status is theirs.
            result = {errno, std::system_category()};
            status = -1;
            break;
        }
        if (!asked) asked = send_stop();
        if (!asked && clock::now() >= term_at) {
            if (::kill(p.pid_, SIGTERM) != 0 && errno != ESRCH) return {errno, std::system_category()};
            asked = true;
        }
        if (clock::now() >= deadline) {
            if (::kill(p.pid_, SIGKILL) != 0 && errno != ESRCH) return {errno, std::system_category()};
            while (::waitpid(p.pid_, &status, 0) < 0) {
                if (errno != EINTR) return {errno, std::system_category()};
            }
            result = std::make_error_code(std::errc::timed_out);
            break;
        }
        // Polling with back-off: a library cannot take SIGCHLD from the program.
        const timespec pause{0, backoff_ns};
        static_cast<void>(::nanosleep(&pause, nullptr));  // EINTR only shortens the pause
        backoff_ns = std::min(backoff_ns * 2, 50'000'000L);
    }
    p.pid_ = -1;
    p.exit_status_ = status;
    p.close_all();
    if (!result && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        result = std::make_error_code(std::errc::io_error);
    return result;
}

std::error_code stop_and_wait(LogProcess& process, std::chrono::milliseconds timeout) {
    return LogProcessAccess::stop(process, timeout);
}

}  // namespace smtp
