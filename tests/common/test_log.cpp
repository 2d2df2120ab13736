// Tests of apps/common/log: the log process, its queue, and Logger.
//
// Each test works in its own mkdtemp directory, removed at the end. Nothing sleeps to
// wait: the tests wait on waitpid(), on stop_and_wait() (which waits on waitpid), or
// poll the log file for a condition with a short back-off, at most 5 s in all.
#include <doctest/doctest.h>

#include "common/log.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <mqueue.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using smtp::LogLevel;

class TempDir {
public:
    TempDir() {
        char templ[] = "/tmp/test_log.XXXXXX";
        REQUIRE(::mkdtemp(templ) != nullptr);
        path_ = templ;
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

private:
    std::string path_;
};

// An output file of the log process (its stdout or stderr), open for the test.
class OutFile {
public:
    explicit OutFile(const std::string& path)
        : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600)) {
        REQUIRE(fd_ >= 0);
    }
    ~OutFile() { static_cast<void>(::close(fd_)); }
    OutFile(const OutFile&) = delete;
    OutFile& operator=(const OutFile&) = delete;
    int fd() const { return fd_; }

private:
    int fd_;
};

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

struct Line {
    std::string program;
    long pid = 0;
    std::string level;
    std::string text;
};

// Every line must have the format; a line that does not is a failure of its own.
std::vector<Line> parse_lines(const std::string& content) {
    static const std::regex format(
        R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z (\S+)\[(\d+)\]: (debug|info|warning|error): (.*)$)");
    std::vector<Line> lines;
    std::istringstream in(content);
    std::string raw;
    while (std::getline(in, raw)) {
        std::smatch m;
        const bool matched = std::regex_match(raw, m, format);
        CHECK_MESSAGE(matched, raw);
        if (!matched) continue;
        lines.push_back({m[1].str(), std::stol(m[2].str()), m[3].str(), m[4].str()});
    }
    CHECK((content.empty() || content.back() == '\n'));
    return lines;
}

std::vector<Line> lines_with_text(const std::vector<Line>& lines, std::string_view prefix) {
    std::vector<Line> found;
    for (const Line& l : lines) {
        if (l.text.compare(0, prefix.size(), prefix) == 0) found.push_back(l);
    }
    return found;
}

// Waits for a condition: a short back-off between looks, 5 s at most.
bool wait_until(const std::function<bool()>& condition) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    long pause_ns = 100'000;
    while (!condition()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        const timespec pause{0, pause_ns};
        ::nanosleep(&pause, nullptr);
        pause_ns = std::min(pause_ns * 2, 20'000'000L);
    }
    return true;
}

// Sends until the record is queued, as a test sender that must not lose any. Returns
// the failed attempts (each a counted drop), or -1 after 5 s.
long send_until_queued(smtp::Logger& logger, LogLevel level, const std::string& text) {
    long failed = 0;
    const bool queued = wait_until([&] {
        if (logger.log(level, text)) return true;
        ++failed;
        return false;
    });
    return queued ? failed : -1;
}

bool no_children() {
    int status = 0;
    return ::waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD;
}

bool queue_gone(const std::string& name) {
    const mqd_t q = ::mq_open(name.c_str(), O_RDONLY);
    if (q != static_cast<mqd_t>(-1)) {
        ::mq_close(q);
        return false;
    }
    return errno == ENOENT;
}

smtp::LogOptions options_in(const TempDir& dir, int stdout_fd, int stderr_fd) {
    smtp::LogOptions o;
    o.program = "smtpd";
    o.file_path = dir.file("log");
    o.min_level = LogLevel::info;
    o.stdout_fd = stdout_fd;
    o.stderr_fd = stderr_fd;
    return o;
}

long proc_long(const char* path) {
    std::ifstream in(path);
    long v = -1;
    in >> v;
    return v;
}

// Stops the log process, so that it reads nothing; waitpid says when it has stopped.
void stop_reading(pid_t pid) {
    REQUIRE(::kill(pid, SIGSTOP) == 0);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, WUNTRACED) == pid);
    REQUIRE(WIFSTOPPED(status));
}

// Sends records until the (stopped) log process's queue is full; each must fit.
void fill_queue(smtp::Logger& logger, const smtp::LogProcess& log, std::string_view what) {
    for (long i = 0;; ++i) {
        mq_attr attr{};
        REQUIRE(::mq_getattr(log.sender(), &attr) == 0);
        if (attr.mq_curmsgs >= attr.mq_maxmsg) return;
        REQUIRE(logger.info("{} {}", what, i));
    }
}

// Signals caught by count_signal.
std::atomic<int> g_signals{0};
extern "C" void count_signal(int) { g_signals.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

TEST_SUITE("log") {
    TEST_CASE("lines from the parent, a forked child and four threads are written once each, in order") {
        TempDir dir;
        OutFile out(dir.file("stdout"));
        OutFile err(dir.file("stderr"));
        smtp::LogStart started = start_log_process(options_in(dir, out.fd(), err.fd()));
        REQUIRE_MESSAGE(!started.error, started.error.what);
        smtp::LogProcess& log = started.process;
        REQUIRE(log.pid() > 0);
        CHECK(queue_gone(log.queue_name()));

        // 20 records from each of six senders do not fit in a queue of 10 (msg_max
        // without CAP_SYS_RESOURCE): senders retry what was dropped, so each text
        // arrives once, and the drops must show in the log, exactly.
        const long capacity = log.queue_size().records;
        const int n = 20;
        smtp::Logger logger(log);
        std::atomic<long> failed{0};

        // The queue is empty: these fit.
        CHECK(logger.log(LogLevel::debug, "parent debug"));  // below the minimum: not sent
        CHECK(logger.log(LogLevel::info, "parent info"));
        CHECK(logger.warning("parent {}", "warning"));
        CHECK(logger.error("parent error {}", 42));

        int report[2];
        REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            log.after_fork_in_worker();
            logger.after_fork();
            long child_failed = 0;
            for (int i = 0; i < n && child_failed >= 0; ++i) {
                const long f = send_until_queued(logger, LogLevel::info, fmt::format("child {}", i));
                child_failed = f < 0 ? -1 : child_failed + f;
            }
            const bool told = ::write(report[1], &child_failed, sizeof child_failed) == sizeof child_failed;
            ::_exit(told ? 0 : 1);
        }
        REQUIRE(::close(report[1]) == 0);
        long child_failed = -2;
        CHECK(::read(report[0], &child_failed, sizeof child_failed) == sizeof child_failed);
        REQUIRE(::close(report[0]) == 0);
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        REQUIRE(child_failed >= 0);
        failed += child_failed;

        std::vector<std::thread> threads;
        std::atomic<bool> timed_out{false};
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&logger, &failed, &timed_out, t] {
                for (int i = 0; i < n; ++i) {
                    // i % 4 == 0 is debug: below the minimum, never sent, never fails.
                    const long f = send_until_queued(logger, static_cast<LogLevel>(i % 4),
                                                     fmt::format("thread {} line {}", t, i));
                    if (f < 0) timed_out = true;
                    if (f > 0) failed += f;
                }
            });
        }
        for (auto& th : threads) th.join();
        CHECK(!timed_out);
        // The last record of each sender got through and carried what was pending.
        CHECK(logger.dropped_pending() == 0);

        const pid_t log_pid = log.pid();
        CHECK(smtp::stop_and_wait(log) == std::error_code{});
        CHECK(WIFEXITED(log.exit_status()));
        CHECK(WEXITSTATUS(log.exit_status()) == 0);
        CHECK(log.pid() == -1);
        CHECK(no_children());

        const std::string content = read_file(dir.file("log"));
        const std::vector<Line> all_lines = parse_lines(content);
        // Drop notices aside, the lines are exactly these.
        std::vector<Line> lines;
        long noticed = 0;
        static const std::regex notice(
            R"((\d+) records? dropped before this one \(queue full or no log process\))");
        for (const Line& l : all_lines) {
            std::smatch m;
            if (std::regex_match(l.text, m, notice)) {
                noticed += std::stol(m[1].str());
                CHECK(l.level == "warning");
                CHECK((l.pid == ::getpid() || l.pid == child));
            } else {
                lines.push_back(l);
            }
        }
        CHECK(noticed == failed.load());
        int thread_lines = 0;
        for (int i = 0; i < n; ++i) thread_lines += (i % 4 != 0) ? 4 : 0;
        REQUIRE(lines.size() == static_cast<std::size_t>(2 + 3 + n + thread_lines));

        CHECK(lines.front().pid == log_pid);
        CHECK(lines.front().level == "info");
        CHECK(lines.front().text ==
              fmt::format("log process started: queue of {} records of {} bytes (asked 256 "
                          "of 1024), minimum level info",
                          capacity, log.queue_size().bytes));
        CHECK(lines.back().pid == log_pid);
        CHECK(lines.back().text ==
              fmt::format(
                  "log process stopping (stop record): {} lines written, {} records dropped by senders, 0 "
                  "malformed records",
                  all_lines.size(), failed.load()));

        CHECK(lines_with_text(lines, "parent debug").empty());
        const auto parent = lines_with_text(lines, "parent ");
        REQUIRE(parent.size() == 3);
        CHECK(parent[0].text == "parent info");
        CHECK(parent[0].level == "info");
        CHECK(parent[1].text == "parent warning");
        CHECK(parent[1].level == "warning");
        CHECK(parent[2].text == "parent error 42");
        CHECK(parent[2].level == "error");
        for (const Line& l : parent) {
            CHECK(l.pid == ::getpid());
            CHECK(l.program == "smtpd");
        }

        const auto from_child = lines_with_text(lines, "child ");
        REQUIRE(from_child.size() == static_cast<std::size_t>(n));
        for (int i = 0; i < n; ++i) {
            CHECK(from_child[static_cast<std::size_t>(i)].text == fmt::format("child {}", i));
            CHECK(from_child[static_cast<std::size_t>(i)].pid == child);
            CHECK(from_child[static_cast<std::size_t>(i)].level == "info");
        }

        for (int t = 0; t < 4; ++t) {
            const auto mine = lines_with_text(lines, fmt::format("thread {} line ", t));
            std::size_t k = 0;
            for (int i = 0; i < n; ++i) {
                if (i % 4 == 0) continue;
                REQUIRE(k < mine.size());
                CHECK(mine[k].text == fmt::format("thread {} line {}", t, i));
                CHECK(mine[k].level == smtp::log_level_name(static_cast<LogLevel>(i % 4)));
                CHECK(mine[k].pid == ::getpid());
                ++k;
            }
            CHECK(k == mine.size());
        }

        // stdout gets every line; stderr the error lines only.
        CHECK(read_file(dir.file("stdout")) == content);
        std::string errors;
        std::istringstream in(content);
        for (std::string raw; std::getline(in, raw);) {
            if (raw.find("]: error: ") != std::string::npos) errors += raw + "\n";
        }
        CHECK(read_file(dir.file("stderr")) == errors);
        CHECK(errors.find("parent error 42") != std::string::npos);
    }

    TEST_CASE("the queue name is unlinked once start returns") {
        TempDir dir;
        smtp::LogOptions o = options_in(dir, -1, -1);
        o.queue_name = fmt::format("/smtpd-test.{}.unlinked", ::getpid());
        smtp::LogStart started = start_log_process(o);
        REQUIRE_MESSAGE(!started.error, started.error.what);
        CHECK(started.process.queue_name() == o.queue_name);
        CHECK(queue_gone(o.queue_name));
        CHECK(smtp::stop_and_wait(started.process) == std::error_code{});
        CHECK(no_children());
    }

    TEST_CASE("a full queue drops records without blocking and the log says exactly how many") {
        TempDir dir;
        smtp::LogStart started = start_log_process(options_in(dir, -1, -1));
        REQUIRE_MESSAGE(!started.error, started.error.what);
        smtp::LogProcess& log = started.process;
        smtp::Logger logger(log);

        mq_attr attr{};
        REQUIRE(::mq_getattr(log.sender(), &attr) == 0);
        CHECK((attr.mq_flags & O_NONBLOCK) != 0);

        // The log process stops reading; waitpid says when it has stopped.
        REQUIRE(::kill(log.pid(), SIGSTOP) == 0);
        int status = 0;
        REQUIRE(::waitpid(log.pid(), &status, WUNTRACED) == log.pid());
        REQUIRE(WIFSTOPPED(status));

        const long capacity = log.queue_size().records;
        const long extra = 44;
        long sent = 0;
        long dropped = 0;
        const auto begin = std::chrono::steady_clock::now();
        for (long i = 0; i < capacity + extra; ++i) {
            if (logger.info("fill {}", i)) {
                ++sent;
            } else {
                ++dropped;
            }
        }
        const auto elapsed = std::chrono::steady_clock::now() - begin;
        CHECK(elapsed < std::chrono::seconds(1));
        CHECK(sent == capacity);
        CHECK(dropped == extra);
        CHECK(logger.dropped_pending() == static_cast<std::uint64_t>(extra));

        REQUIRE(::kill(log.pid(), SIGCONT) == 0);
        const std::string path = dir.file("log");
        const std::string last_fill = fmt::format("info: fill {}\n", capacity - 1);
        REQUIRE(wait_until([&] { return read_file(path).find(last_fill) != std::string::npos; }));

        CHECK(logger.info("after"));
        CHECK(logger.dropped_pending() == 0);
        CHECK(smtp::stop_and_wait(log) == std::error_code{});
        CHECK(no_children());

        const std::vector<Line> lines = parse_lines(read_file(path));
        REQUIRE(lines.size() == static_cast<std::size_t>(capacity + 4));
        for (long i = 0; i < capacity; ++i) {
            CHECK(lines[static_cast<std::size_t>(i + 1)].text == fmt::format("fill {}", i));
        }
        const Line& notice = lines[static_cast<std::size_t>(capacity + 1)];
        CHECK(notice.level == "warning");
        CHECK(notice.pid == ::getpid());
        CHECK(notice.text == "44 records dropped before this one (queue full or no log process)");
        CHECK(lines[static_cast<std::size_t>(capacity + 2)].text == "after");
        CHECK(lines.back().text.find("44 records dropped by senders") != std::string::npos);
    }

    TEST_CASE("hostile text gives one escaped line each, cut with a marker") {
        TempDir dir;
        smtp::LogStart started = start_log_process(options_in(dir, -1, -1));
        REQUIRE_MESSAGE(!started.error, started.error.what);
        smtp::LogProcess& log = started.process;
        smtp::Logger logger(log);
        smtp::Logger evil(log, "evil\nname");

        const std::string long_text(5000, 'x');
        CHECK(logger.log(LogLevel::info, "\r\nFAKE: line"));
        CHECK(logger.log(LogLevel::info, std::string_view("a\0b", 3)));
        CHECK(logger.log(LogLevel::info, long_text));
        CHECK(logger.info("{}", std::string(5000, 'y')));
        CHECK(logger.log(LogLevel::info, "tab\there back\\slash del\x7f utf8 \xc3\xa9"));
        CHECK(evil.log(LogLevel::warning, "named"));
        CHECK(smtp::stop_and_wait(log) == std::error_code{});

        const std::string content = read_file(dir.file("log"));
        CHECK(content.find("\nFAKE") == std::string::npos);
        const std::vector<Line> lines = parse_lines(content);
        REQUIRE(lines.size() == 8);
        CHECK(lines[1].text == R"(\r\nFAKE: line)");
        CHECK(lines[2].text == R"(a\x00b)");
        const std::size_t kept = logger.max_text_bytes();
        CHECK(kept == 1024 - 48);
        CHECK(lines[3].text == std::string(kept, 'x') + "...[truncated, 5000 bytes in all]");
        CHECK(lines[4].text == std::string(kept, 'y') + "...[truncated, 5000 bytes in all]");
        CHECK(lines[5].text == "tab\\there back\\\\slash del\\x7f utf8 \xc3\xa9");
        CHECK(lines[6].program == R"(evil\nname)");
        CHECK(lines[6].text == "named");
    }

    TEST_CASE("a log file that cannot be opened is an error at start, with nothing left behind") {
        TempDir dir;
        smtp::LogOptions o = options_in(dir, -1, -1);
        o.file_path = dir.file("missing/log");
        o.queue_name = fmt::format("/smtpd-test.{}.missing", ::getpid());
        smtp::LogStart started = start_log_process(o);
        CHECK(started.error.code == std::errc::no_such_file_or_directory);
        CHECK(started.error.what == "cannot open log file " + o.file_path + ": No such file or directory");
        CHECK(started.process.pid() == -1);
        CHECK(started.process.sender() == static_cast<mqd_t>(-1));
        CHECK(no_children());
        CHECK(queue_gone(o.queue_name));
    }

    TEST_CASE("a log file that cannot be written is an error at start: the child is reaped, the queue gone") {
        TempDir dir;
        OutFile err(dir.file("stderr"));
        smtp::LogOptions o = options_in(dir, -1, err.fd());
        o.file_path = "/dev/full";
        o.queue_name = fmt::format("/smtpd-test.{}.full", ::getpid());
        smtp::LogStart started = start_log_process(o);
        CHECK(started.error.code == std::errc::no_space_on_device);
        CHECK(started.error.what == "log process: cannot write the log file: No space left on device");
        CHECK(started.process.pid() == -1);
        CHECK(no_children());
        CHECK(queue_gone(o.queue_name));
        // The log process said it on its stderr too, once.
        const std::string said = read_file(dir.file("stderr"));
        CHECK(said.find("cannot write /dev/full: No space left on device; further failures are counted\n") !=
              std::string::npos);
        CHECK(std::count(said.begin(), said.end(), '\n') == 1);
    }

    TEST_CASE("a queue bigger than the system allows falls back to what it allows") {
        // 100000 records is over msg_max for anyone and over HARD_MSGMAX (65536) even
        // with CAP_SYS_RESOURCE: EINVAL, then msg_max.
        TempDir dir;
        smtp::LogOptions o = options_in(dir, -1, -1);
        o.queue_records = 100000;
        smtp::LogStart started = start_log_process(o);
        REQUIRE_MESSAGE(!started.error, started.error.what);
        const long msg_max = proc_long("/proc/sys/fs/mqueue/msg_max");
        CHECK(started.process.queue_size().records == msg_max);
        CHECK(started.process.queue_size().bytes == 1024);
        CHECK(started.process.asked_size().records == 100000);
        CHECK(smtp::stop_and_wait(started.process) == std::error_code{});
        const std::vector<Line> lines = parse_lines(read_file(dir.file("log")));
        REQUIRE(lines.size() == 2);
        CHECK(lines[0].text ==
              fmt::format("log process started: queue of {} records of 1024 bytes (asked 100000 "
                          "of 1024), minimum level info",
                          msg_max));
    }

    TEST_CASE("over RLIMIT_MSGQUEUE (EMFILE) the queue shrinks until it fits") {
        TempDir dir;
        const std::string path = dir.file("log");
        // In a child, so that the lowered limit stays there.
        const pid_t child = ::fork();
        REQUIRE(child >= 0);
        if (child == 0) {
            // 8000 bytes: 10 records of 1024 do not fit (EMFILE), 5 do (5120 + the
            // kernel's index of 5 entries). Queues other processes of this user hold
            // count too, so this assumes there are none.
            const rlimit small{8000, 8000};
            if (::setrlimit(RLIMIT_MSGQUEUE, &small) != 0) ::_exit(2);
            smtp::LogOptions o;
            o.program = "smtpd";
            o.file_path = path;
            o.stdout_fd = -1;
            o.stderr_fd = -1;
            int code = 3;
            {
                smtp::LogStart started = start_log_process(o);
                if (!started.error) {
                    const long records = started.process.queue_size().records;
                    code = smtp::stop_and_wait(started.process) ? 4 : (records == 5 ? 0 : 5);
                }
            }
            ::_exit(code);
        }
        int status = 0;
        REQUIRE(::waitpid(child, &status, 0) == child);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        const std::vector<Line> lines = parse_lines(read_file(path));
        REQUIRE(lines.size() == 2);
        CHECK(
            lines[0].text ==
            "log process started: queue of 5 records of 1024 bytes (asked 256 of 1024), minimum level info");
    }

    TEST_CASE("SIGTERM makes the log process drain the queue, write a last line and exit 0") {
        TempDir dir;
        smtp::LogStart started = start_log_process(options_in(dir, -1, -1));
        REQUIRE_MESSAGE(!started.error, started.error.what);
        smtp::LogProcess& log = started.process;
        smtp::Logger logger(log);
        REQUIRE(::kill(log.pid(), SIGSTOP) == 0);
        int status = 0;
        REQUIRE(::waitpid(log.pid(), &status, WUNTRACED) == log.pid());
        for (int i = 0; i < 5; ++i) CHECK(logger.info("queued {}", i));
        // SIGTERM waits behind SIGSTOP; SIGCONT lets it act with five records queued.
        REQUIRE(::kill(log.pid(), SIGTERM) == 0);
        REQUIRE(::kill(log.pid(), SIGCONT) == 0);
        REQUIRE(::waitpid(log.pid(), &status, 0) == log.pid());
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
        log.note_reaped(status);
        CHECK(smtp::stop_and_wait(log) == std::error_code{});
        const std::vector<Line> lines = parse_lines(read_file(dir.file("log")));
        REQUIRE(lines.size() == 7);
        for (int i = 0; i < 5; ++i)
            CHECK(lines[static_cast<std::size_t>(i + 1)].text == fmt::format("queued {}", i));
        CHECK(lines[6].text.rfind("log process stopping (SIGTERM): 7 lines written", 0) == 0);
    }

    TEST_CASE("a dead log process never blocks senders, and a restart on the same queue writes what waited") {
        TempDir dir;
        const smtp::LogOptions o = options_in(dir, -1, -1);
        smtp::LogStart started = start_log_process(o);
        REQUIRE_MESSAGE(!started.error, started.error.what);
        smtp::LogProcess& log = started.process;
        smtp::Logger logger(log);
        const pid_t first = log.pid();

        REQUIRE(::kill(first, SIGKILL) == 0);
        int status = 0;
        REQUIRE(::waitpid(first, &status, 0) == first);
        log.note_reaped(status);

        const long capacity = log.queue_size().records;
        long sent = 0;
        const auto begin = std::chrono::steady_clock::now();
        for (long i = 0; i < capacity + 3; ++i) sent += logger.info("while down {}", i) ? 1 : 0;
        CHECK(std::chrono::steady_clock::now() - begin < std::chrono::seconds(1));
        CHECK(sent == capacity);
        CHECK(logger.dropped_pending() == 3);

        const smtp::LogError e = restart_log_process(log, o);
        REQUIRE_MESSAGE(!e, e.what);
        CHECK(log.pid() > 0);
        CHECK(log.pid() != first);
        const std::string path = dir.file("log");
        const std::string last = fmt::format("info: while down {}\n", capacity - 1);
        REQUIRE(wait_until([&] { return read_file(path).find(last) != std::string::npos; }));
        CHECK(logger.info("after restart"));
        CHECK(smtp::stop_and_wait(log) == std::error_code{});
        CHECK(no_children());

        const std::vector<Line> lines = parse_lines(read_file(path));
        // started, restarted, the queued records, the drop notice, "after restart", stopping.
        REQUIRE(lines.size() == static_cast<std::size_t>(capacity + 5));
        CHECK(lines[0].text.rfind("log process started: ", 0) == 0);
        CHECK(lines[1].text.rfind("log process restarted: ", 0) == 0);
        CHECK(lines[1].pid != lines[0].pid);
        for (long i = 0; i < capacity; ++i) {
            CHECK(lines[static_cast<std::size_t>(i + 2)].text == fmt::format("while down {}", i));
        }
        CHECK(lines[static_cast<std::size_t>(capacity + 2)].text ==
              "3 records dropped before this one (queue full or no log process)");
        CHECK(lines[static_cast<std::size_t>(capacity + 3)].text == "after restart");
    }

    TEST_CASE(
        "with max_wait, bursts of 5000 records from one thread and from four are all written, none dropped") {
        TempDir dir;
        smtp::LogStart started = start_log_process(options_in(dir, -1, -1));
        REQUIRE_MESSAGE(!started.error, started.error.what);
        smtp::LogProcess& log = started.process;
        // Far more than the log process needs to make room, even under valgrind: this
        // test is about no record being lost, not about how long a wait lasts.
        smtp::Logger logger(log, smtp::LoggerOptions{.max_wait = std::chrono::seconds(10)});
        CHECK(logger.max_wait() == std::chrono::seconds(10));
        CHECK(logger.waits_when_full());

        // 500 times the queue of 10 an unprivileged process gets: without the wait most
        // of these would be dropped.
        const int n = 5000;
        const int threads_n = 4;
        long failed = 0;
        for (int i = 0; i < n; ++i) failed += logger.info("burst {}", i) ? 0 : 1;
        std::atomic<long> thread_failed{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < threads_n; ++t) {
            threads.emplace_back([&logger, &thread_failed, t] {
                for (int i = 0; i < n / threads_n; ++i) {
                    if (!logger.info("thread {} burst {}", t, i)) thread_failed.fetch_add(1);
                }
            });
        }
        for (auto& th : threads) th.join();
        CHECK(failed == 0);
        CHECK(thread_failed.load() == 0);
        CHECK(logger.dropped_pending() == 0);
        CHECK(logger.waits_when_full());
        CHECK(smtp::stop_and_wait(log) == std::error_code{});
        CHECK(no_children());

        const std::vector<Line> lines = parse_lines(read_file(dir.file("log")));
        // started, the bursts, stopping: no drop notice.
        REQUIRE(lines.size() == static_cast<std::size_t>(2 + 2 * n));
        const auto burst = lines_with_text(lines, "burst ");
        REQUIRE(burst.size() == static_cast<std::size_t>(n));
        for (int i = 0; i < n; ++i)
            CHECK(burst[static_cast<std::size_t>(i)].text == fmt::format("burst {}", i));
        for (int t = 0; t < threads_n; ++t) {
            const auto mine = lines_with_text(lines, fmt::format("thread {} burst ", t));
            REQUIRE(mine.size() == static_cast<std::size_t>(n / threads_n));
            for (int i = 0; i < n / threads_n; ++i) {
                CHECK(mine[static_cast<std::size_t>(i)].text == fmt::format("thread {} burst {}", t, i));
            }
        }
        CHECK(lines_with_text(lines, "log process stopping").size() == 1);
        CHECK(lines.back().text.find(" 0 records dropped by senders") != std::string::npos);
    }

    TEST_CASE(
        "with max_wait, a stopped log process costs one wait, then records drop at once until one is sent") {
        TempDir dir;
        smtp::LogStart started = start_log_process(options_in(dir, -1, -1));
        REQUIRE_MESSAGE(!started.error, started.error.what);
        smtp::LogProcess& log = started.process;
        const std::chrono::milliseconds max_wait{200};
        smtp::Logger logger(log, smtp::LoggerOptions{.name = "smtpc", .max_wait = max_wait});
        const long capacity = log.queue_size().records;

        stop_reading(log.pid());
        fill_queue(logger, log, "fill");
        CHECK(logger.waits_when_full());
        // Timed only from below: a loaded machine may wake the sender late, never early.
        auto begin = std::chrono::steady_clock::now();
        CHECK_FALSE(logger.info("waited in vain"));
        CHECK(std::chrono::steady_clock::now() - begin >= max_wait / 2);
        CHECK_FALSE(logger.waits_when_full());
        // No wait now: each drops at once, which the switch above shows (no timing).
        long dropped = 0;
        for (int i = 0; i < 20; ++i) dropped += logger.info("dropped {}", i) ? 0 : 1;
        CHECK(dropped == 20);
        CHECK(logger.dropped_pending() == 21);
        CHECK_FALSE(logger.waits_when_full());

        REQUIRE(::kill(log.pid(), SIGCONT) == 0);
        const std::string path = dir.file("log");
        const std::string last_fill = fmt::format("info: fill {}\n", capacity - 1);
        REQUIRE(wait_until([&] { return read_file(path).find(last_fill) != std::string::npos; }));
        CHECK(logger.info("after"));
        CHECK(logger.dropped_pending() == 0);
        CHECK(logger.waits_when_full());

        // Sent once, it waits again: the next full queue costs a wait again.
        stop_reading(log.pid());
        fill_queue(logger, log, "refill");
        begin = std::chrono::steady_clock::now();
        CHECK_FALSE(logger.info("waited in vain again"));
        CHECK(std::chrono::steady_clock::now() - begin >= max_wait / 2);
        CHECK_FALSE(logger.waits_when_full());
        CHECK(logger.dropped_pending() == 1);

        REQUIRE(::kill(log.pid(), SIGCONT) == 0);
        // Not waiting, so this may find the queue still full a few times: each a drop.
        const long failed = send_until_queued(logger, LogLevel::info, "last");
        REQUIRE(failed >= 0);
        CHECK(logger.waits_when_full());
        CHECK(smtp::stop_and_wait(log) == std::error_code{});
        CHECK(no_children());

        const std::vector<Line> lines = parse_lines(read_file(path));
        const auto refill = lines_with_text(lines, "refill ");
        // started, fill, notice, after, refill, notice, last, stopping.
        REQUIRE(lines.size() == static_cast<std::size_t>(capacity + refill.size() + 6));
        for (long i = 0; i < capacity; ++i) {
            CHECK(lines[static_cast<std::size_t>(i + 1)].text == fmt::format("fill {}", i));
        }
        std::size_t k = static_cast<std::size_t>(capacity + 1);
        CHECK(lines[k].text == "21 records dropped before this one (queue full or no log process)");
        CHECK(lines[k].program == "smtpc");
        CHECK(lines[k + 1].text == "after");
        k += 2;
        for (std::size_t i = 0; i < refill.size(); ++i)
            CHECK(lines[k + i].text == fmt::format("refill {}", i));
        k += refill.size();
        CHECK(lines[k].text ==
              fmt::format("{} record{} dropped before this one (queue full or no log process)", 1 + failed,
                          failed == 0 ? "" : "s"));
        CHECK(lines[k + 1].text == "last");
        CHECK(lines.back().text.find(fmt::format(" {} records dropped by senders", 22 + failed)) !=
              std::string::npos);
    }

    TEST_CASE("with max_wait, a signal during the wait does not cut it short") {
        TempDir dir;
        smtp::LogStart started = start_log_process(options_in(dir, -1, -1));
        REQUIRE_MESSAGE(!started.error, started.error.what);
        smtp::LogProcess& log = started.process;
        const std::chrono::milliseconds max_wait{200};
        smtp::Logger logger(log, smtp::LoggerOptions{.max_wait = max_wait});
        stop_reading(log.pid());
        fill_queue(logger, log, "fill");

        // No SA_RESTART, and poll() is never restarted anyway: each signal is an EINTR.
        struct sigaction sa {};
        struct sigaction old {};
        sa.sa_handler = count_signal;
        sigemptyset(&sa.sa_mask);
        REQUIRE(::sigaction(SIGUSR1, &sa, &old) == 0);
        g_signals = 0;
        std::atomic<bool> done{false};
        bool sent = true;
        std::chrono::steady_clock::duration waited{};
        std::thread sender([&] {
            const auto begin = std::chrono::steady_clock::now();
            sent = logger.info("interrupted");
            waited = std::chrono::steady_clock::now() - begin;
            done = true;
        });
        // Paced, not waiting for anything: a signal every 2 ms while the sender waits.
        while (!done) {
            CHECK(::pthread_kill(sender.native_handle(), SIGUSR1) == 0);
            const timespec pace{0, 2'000'000};
            ::nanosleep(&pace, nullptr);
        }
        sender.join();
        REQUIRE(::sigaction(SIGUSR1, &old, nullptr) == 0);
        CHECK(g_signals.load() >= 2);
        CHECK_FALSE(sent);
        CHECK(waited >= max_wait / 2);
        CHECK(logger.dropped_pending() == 1);

        REQUIRE(::kill(log.pid(), SIGCONT) == 0);
        CHECK(smtp::stop_and_wait(log) == std::error_code{});
        CHECK(no_children());
    }
}
