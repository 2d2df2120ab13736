// tests/smtpc/delivery_probe.cpp: smtpc's DeliveryThreads without the scheduler, for
// manual runs and system tests against real servers (smtp-sink, a Python server), and
// for valgrind and ThreadSanitizer.
//
//   delivery_probe [OPTIONS] --endpoint IP:PORT [--endpoint IP:PORT...]
//
// Makes a queue in a new temporary directory with --messages messages (queue::Writer),
// starts --threads DeliveryThreads, posts one job per message (to the endpoints in
// turn, each job to delivery_thread_for() its endpoint, as the scheduler does), waits
// for every result, stops the threads gracefully and joins them. Prints one line per
// recipient result or not_connected job, in the order they arrive:
//   job=3 msg=c08fd2dd5115 finished to=<a@example.test> delivered: 250 2.0.0 Ok
//   job=4 msg=c08fd2dd5116 not_connected: connect to 127.0.0.1[127.0.0.1]:2526: Connection refused
// then one summary line (bytes: the content of every message together):
//   summary: jobs=200 answered=200 finished=200 not_connected=0 delivered=200 temporary=0
//            permanent=0 bytes=190400 seconds=0.41
//
// Options:
//   --endpoint IP:PORT       where to deliver (repeatable; messages go round-robin)
//   --messages N             messages to queue and send (default 10)
//   --rcpt ADDRESS           a recipient of every message (repeatable; default
//                            user@example.test)
//   --size BYTES             body size of each message (default 1000)
//   --threads K              delivery threads (default 2)
//   --max-connections N      per thread (default 64)
//   --idle-timeout S         seconds an idle session waits for more jobs (default 1)
//   --connect-timeout S      (default 5)
//   --command-timeout S      every reply timeout (default 10)
//   --missing N              removes the first N messages from the queue before their
//                            jobs are posted: their content is gone
//   --unreadable N           replaces the content file of the N messages after those
//                            (--missing) by a directory: it opens, but reading it
//                            fails (EISDIR) once DATA is under way
//   --stop-after N MODE      after N results, stop(graceful|now) every thread; the
//                            jobs still out must come back all the same
//   --spread-ms MS           post the jobs over MS milliseconds instead of at once, so
//                            later ones join sessions already open
//   --burn-fds N             once the threads run, opens N descriptors (of /dev/null),
//                            so that with `ulimit -n` above FD_SETSIZE the sockets the
//                            threads open are past FD_SETSIZE: jobs come back
//                            not_connected "too many open files"
//   --timeout S              give up waiting for results after S seconds (default 120)
//   --log                    print smtpc's log lines (log level debug) at the end
//   --quiet                  no per-result lines, only the summary
// Exit status: 0 when every job was answered exactly once, every finished result has
// exactly one result per recipient, and no result came after the threads were joined;
// 1 otherwise (or on timeout); 2 on a setup error; 64 on a usage error.
#include "common/log.hpp"
#include "common/network.hpp"
#include "common/queue.hpp"
#include "delivery_thread.hpp"
#include "job.hpp"
#include "settings.hpp"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace {

using smtp::smtpc::DeliveryThread;
using smtp::smtpc::Job;
using smtp::smtpc::JobResult;
using Clock = std::chrono::steady_clock;

struct Options {
    std::vector<smtp::smtpc::Endpoint> endpoints;
    unsigned messages = 10;
    std::vector<std::string> rcpts;
    std::size_t size = 1000;
    unsigned threads = 2;
    unsigned max_connections = 64;
    unsigned idle_timeout = 1;
    unsigned connect_timeout = 5;
    unsigned command_timeout = 10;
    unsigned missing = 0;
    unsigned unreadable = 0;
    std::optional<unsigned> stop_after;
    bool stop_now = false;
    unsigned spread_ms = 0;
    unsigned burn_fds = 0;
    unsigned timeout = 120;
    bool log = false;
    bool quiet = false;
};

bool parse_number(std::string_view text, unsigned& out) {
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size();
}

// Returns the usage error, or empty.
std::string parse_options(int argc, char** argv, Options& o) {
    std::vector<std::string_view> args(argv + 1, argv + argc);
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string_view a = args[i];
        const auto value = [&]() -> std::optional<std::string_view> {
            if (i + 1 >= args.size()) return std::nullopt;
            return args[++i];
        };
        const auto number = [&](unsigned& out) -> std::string {
            const auto v = value();
            if (!v || !parse_number(*v, out)) return fmt::format("{} needs a number", a);
            return {};
        };
        std::string error;
        if (a == "--endpoint") {
            const auto v = value();
            if (!v) return "--endpoint needs IP:PORT";
            const auto parsed = smtp::parse_ip_endpoint(*v, 25);
            if (!parsed) return parsed.error;
            smtp::smtpc::Endpoint e;
            e.address = *parsed.value->address;
            e.port = parsed.value->port;
            e.host = parsed.value->host;
            o.endpoints.push_back(e);
        } else if (a == "--rcpt") {
            const auto v = value();
            if (!v) return "--rcpt needs an address";
            o.rcpts.emplace_back(*v);
        } else if (a == "--size") {
            unsigned size = 0;
            error = number(size);
            o.size = size;
        } else if (a == "--messages") {
            error = number(o.messages);
        } else if (a == "--threads") {
            error = number(o.threads);
            if (error.empty() && o.threads == 0) error = "--threads must be at least 1";
        } else if (a == "--max-connections") {
            error = number(o.max_connections);
            if (error.empty() && o.max_connections == 0) error = "--max-connections must be at least 1";
        } else if (a == "--idle-timeout") {
            error = number(o.idle_timeout);
        } else if (a == "--connect-timeout") {
            error = number(o.connect_timeout);
        } else if (a == "--command-timeout") {
            error = number(o.command_timeout);
        } else if (a == "--missing") {
            error = number(o.missing);
        } else if (a == "--unreadable") {
            error = number(o.unreadable);
        } else if (a == "--spread-ms") {
            error = number(o.spread_ms);
        } else if (a == "--burn-fds") {
            error = number(o.burn_fds);
        } else if (a == "--timeout") {
            error = number(o.timeout);
        } else if (a == "--stop-after") {
            unsigned n = 0;
            error = number(n);
            const auto mode = value();
            if (error.empty() && (!mode || (*mode != "graceful" && *mode != "now")))
                error = "--stop-after needs N graceful|now";
            o.stop_after = n;
            o.stop_now = mode && *mode == "now";
        } else if (a == "--log") {
            o.log = true;
        } else if (a == "--quiet") {
            o.quiet = true;
        } else {
            return fmt::format("unknown option '{}'", a);
        }
        if (!error.empty()) return error;
    }
    if (o.endpoints.empty()) return "at least one --endpoint IP:PORT is needed";
    if (o.rcpts.empty()) o.rcpts.emplace_back("user@example.test");
    return {};
}

// Writes the message's content: headers, then lines of text up to `size` bytes, one
// of them beginning with a dot (the session must stuff it). In pieces: a big message
// is never in memory here, so the probe's memory shows the delivery's.
std::error_code write_content(smtp::queue::Writer& writer, unsigned n, const Options& o) {
    const std::string head = fmt::format(
        "From: <probe@example.org>\r\nTo: <{}>\r\nSubject: delivery probe message {}\r\n"
        "Message-ID: <probe.{}.{}@example.org>\r\n\r\n.a line that begins with a dot\r\n",
        o.rcpts.front(), n, ::getpid(), n);
    if (const std::error_code ec = writer.write(head)) return ec;
    const std::string line = std::string(70, static_cast<char>('a' + n % 26)) + "\r\n";
    std::string lines;
    for (std::size_t i = 0; i < 1000; ++i) lines += line;
    std::uint64_t left = o.size > writer.size() ? (o.size - writer.size()) / line.size() * line.size() : 0;
    while (left > 0) {
        const std::size_t piece = static_cast<std::size_t>(std::min<std::uint64_t>(left, lines.size()));
        if (const std::error_code ec = writer.write(std::string_view(lines).substr(0, piece))) return ec;
        left -= piece;
    }
    return {};
}

struct Tally {
    std::vector<unsigned> answers;  // per job id (1-based)
    unsigned answered = 0, finished = 0, not_connected = 0;
    unsigned delivered = 0, temporary = 0, permanent = 0;
    bool bad = false;
};

void record(const JobResult& r, const std::vector<Job>& jobs, const Options& o, Tally& t) {
    if (r.job_id == 0 || r.job_id > jobs.size()) {
        fmt::print("bad result: unknown job {}\n", r.job_id);
        t.bad = true;
        return;
    }
    const Job& job = jobs[r.job_id - 1];
    if (++t.answers[r.job_id - 1] != 1) {
        fmt::print("bad result: job {} answered twice\n", r.job_id);
        t.bad = true;
    }
    ++t.answered;
    const std::string sid = smtp::queue::short_id(r.message_id);
    if (r.message_id != job.message_id || !(r.endpoint == job.endpoint)) {
        fmt::print("bad result: job {} has another message or endpoint\n", r.job_id);
        t.bad = true;
    }
    if (r.kind == JobResult::Kind::not_connected) {
        ++t.not_connected;
        if (!o.quiet) fmt::print("job={} msg={} not_connected: {}\n", r.job_id, sid, r.error);
        return;
    }
    ++t.finished;
    std::vector<bool> seen(job.message.recipients.size());
    for (const auto& rr : r.recipients) {
        if (rr.index >= seen.size() || seen[rr.index]) {
            fmt::print("bad result: job {} recipient index {} out of range or repeated\n", r.job_id,
                       rr.index);
            t.bad = true;
            continue;
        }
        seen[rr.index] = true;
        if (rr.outcome == smtp::Outcome::delivered) ++t.delivered;
        if (rr.outcome == smtp::Outcome::temporary) ++t.temporary;
        if (rr.outcome == smtp::Outcome::permanent) ++t.permanent;
        if (!o.quiet)
            fmt::print("job={} msg={} finished to=<{}> {}: {}\n", r.job_id, sid,
                       job.message.recipients[rr.index], smtp::outcome_name(rr.outcome), rr.reply);
    }
    if (r.recipients.size() != seen.size()) {
        fmt::print("bad result: job {} has {} results for {} recipients\n", r.job_id, r.recipients.size(),
                   seen.size());
        t.bad = true;
    }
}

// Everything the probe made, removed however main() ends.
struct TempDir {
    std::string path;
    ~TempDir() {
        if (path.empty()) return;
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
        if (ec) std::cerr << "delivery_probe: cannot remove " << path << ": " << ec.message() << '\n';
    }
};

int run(const Options& o) {
    TempDir dir;
    {
        std::string templ = (std::filesystem::temp_directory_path() / "delivery-probe.XXXXXX").string();
        if (::mkdtemp(templ.data()) == nullptr) {
            std::cerr << "delivery_probe: mkdtemp: " << std::strerror(errno) << '\n';
            return 2;
        }
        dir.path = templ;
    }

    // The log process forks: before any thread.
    smtp::LogOptions log_options;
    log_options.program = "smtpc";
    log_options.file_path = dir.path + "/smtpc.log";
    log_options.min_level = smtp::LogLevel::debug;
    log_options.stdout_fd = -1;
    log_options.stderr_fd = -1;
    smtp::LogStart log_start = smtp::start_log_process(log_options);
    if (log_start.error) {
        std::cerr << "delivery_probe: " << log_start.error.what << '\n';
        return 2;
    }
    smtp::LogProcess& log_process = log_start.process;

    int status = 0;
    {
        smtp::Logger log{log_process};
        const smtp::queue::Queue queue{dir.path + "/queue"};
        if (const std::error_code ec = queue.prepare()) {
            std::cerr << "delivery_probe: queue: " << ec.message() << '\n';
            static_cast<void>(smtp::stop_and_wait(log_process));
            return 2;
        }

        // The messages, and one job each.
        std::vector<Job> jobs;
        std::uint64_t content_bytes = 0;
        const std::int64_t now = std::time(nullptr);
        for (unsigned n = 0; n < o.messages; ++n) {
            std::error_code ec;
            smtp::queue::Writer writer = queue.create(ec);
            smtp::queue::Envelope envelope;
            envelope.arrival = now;
            envelope.sender = "probe@example.org";
            for (const std::string& r : o.rcpts)
                envelope.recipients.push_back(smtp::queue::make_recipient(r));
            if (!ec) ec = write_content(writer, n, o);
            const std::uint64_t size = writer.size();
            if (!ec) ec = writer.commit(envelope);
            if (ec) {
                std::cerr << "delivery_probe: queueing message " << n << ": " << ec.message() << '\n';
                static_cast<void>(smtp::stop_and_wait(log_process));
                return 2;
            }
            Job job;
            job.id = n + 1;
            job.message_id = envelope.id;
            job.message.sender = envelope.sender;
            job.message.recipients = o.rcpts;
            job.message.size = size;
            content_bytes += size;
            for (std::size_t i = 0; i < o.rcpts.size(); ++i) job.recipient_indexes.push_back(i);
            job.endpoint = o.endpoints[n % o.endpoints.size()];
            job.arrival = envelope.arrival;
            job.attempts = 1;
            jobs.push_back(std::move(job));
        }
        for (unsigned n = 0; n < o.missing && n < jobs.size(); ++n) {
            if (const std::error_code ec = queue.remove(jobs[n].message_id)) {
                std::cerr << "delivery_probe: removing a message: " << ec.message() << '\n';
                status = 2;
            }
        }
        for (unsigned n = o.missing; n < o.missing + o.unreadable && n < jobs.size(); ++n) {
            // doc/queue-format.md: <root>/content/<id>.
            const std::filesystem::path content = queue.root() + "/content/" + jobs[n].message_id;
            std::error_code ec;
            std::filesystem::remove(content, ec);
            if (!ec) std::filesystem::create_directory(content, ec);
            if (ec) {
                std::cerr << "delivery_probe: --unreadable: " << ec.message() << '\n';
                status = 2;
            }
        }

        smtp::smtpc::Settings settings;
        settings.max_connections = o.max_connections;
        settings.idle_timeout = std::chrono::seconds(o.idle_timeout);
        settings.connect_timeout = std::chrono::seconds(o.connect_timeout);
        settings.command_timeout = std::chrono::seconds(o.command_timeout);
        smtp::smtpc::Resolved resolved;
        resolved.hostname = "probe.example";
        resolved.local_domain = {"probe.example"};

        smtp::smtpc::Mailbox<JobResult> results;
        if (const std::error_code ec = results.open()) {
            std::cerr << "delivery_probe: results mailbox: " << ec.message() << '\n';
            static_cast<void>(smtp::stop_and_wait(log_process));
            return 2;
        }
        std::vector<std::unique_ptr<DeliveryThread>> threads;
        for (unsigned i = 0; i < o.threads && status == 0; ++i) {
            threads.push_back(std::make_unique<DeliveryThread>(settings, resolved, queue, log, results, i));
            if (const std::error_code ec = threads.back()->start()) {
                std::cerr << "delivery_probe: starting thread " << i << ": " << ec.message() << '\n';
                status = 2;
            }
        }

        std::vector<smtp::Fd> burnt;
        for (unsigned i = 0; i < o.burn_fds && status == 0; ++i) {
            burnt.emplace_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
            if (!burnt.back()) {
                std::cerr << "delivery_probe: --burn-fds: " << std::strerror(errno) << '\n';
                status = 2;
            }
        }

        Tally tally;
        tally.answers.assign(jobs.size(), 0);
        const Clock::time_point start = Clock::now();
        const Clock::time_point give_up = start + std::chrono::seconds(o.timeout);
        bool stopped = false;
        std::size_t posted = 0;
        while (status == 0 && tally.answered < jobs.size()) {
            const Clock::time_point t = Clock::now();
            // --spread-ms: job k is due at start + k * spread / count.
            while (posted < jobs.size() &&
                   (o.spread_ms == 0 || t >= start + std::chrono::milliseconds(std::uint64_t{o.spread_ms} *
                                                                               posted / jobs.size()))) {
                const Job& job = jobs[posted++];
                threads[smtp::smtpc::delivery_thread_for(job.endpoint, threads.size())]->post(job);
            }
            if (t >= give_up) {
                fmt::print("timeout: {} of {} jobs answered\n", tally.answered, jobs.size());
                status = 1;
                break;
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(give_up - t).count();
            int wait_ms = static_cast<int>(std::min<long long>(left, 1000));
            if (posted < jobs.size()) wait_ms = std::min(wait_ms, 5);
            pollfd p{results.wake_fd(), POLLIN, 0};
            if (::poll(&p, 1, wait_ms) < 0 && errno != EINTR) {
                std::cerr << "delivery_probe: poll: " << std::strerror(errno) << '\n';
                status = 2;
                break;
            }
            for (const JobResult& r : results.take_all()) record(r, jobs, o, tally);
            if (o.stop_after && !stopped && tally.answered >= *o.stop_after) {
                for (auto& thread : threads) thread->stop(o.stop_now);
                stopped = true;
            }
        }
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        for (auto& thread : threads) thread->stop(false);
        for (auto& thread : threads) thread->join();
        for (const JobResult& r : results.take_all()) {
            fmt::print("bad result: job {} answered after the threads ended\n", r.job_id);
            tally.bad = true;
        }
        threads.clear();
        if (tally.bad && status == 0) status = 1;
        fmt::print(
            "summary: jobs={} answered={} finished={} not_connected={} delivered={} temporary={} "
            "permanent={} bytes={} seconds={:.2f}\n",
            jobs.size(), tally.answered, tally.finished, tally.not_connected, tally.delivered,
            tally.temporary, tally.permanent, content_bytes, seconds);
    }

    if (const std::error_code ec = smtp::stop_and_wait(log_process)) {
        std::cerr << "delivery_probe: log process: " << ec.message() << '\n';
        if (status == 0) status = 2;
    }
    if (o.log) {
        std::ifstream in(log_options.file_path, std::ios::binary);
        std::cout << "--- log\n" << in.rdbuf();
    }
    std::cout.flush();
    return status;
}

}  // namespace

int main(int argc, char** argv) {
    Options options;
    if (const std::string error = parse_options(argc, argv, options); !error.empty()) {
        std::cerr << "delivery_probe: " << error
                  << "\nusage: delivery_probe [OPTIONS] --endpoint IP:PORT...\n";
        return 64;
    }
    return run(options);
}
