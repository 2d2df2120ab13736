// apps/smtpc/scheduler.cpp: run_scheduler, smtpc's main loop (see scheduler.hpp).
//
// The state of the loop is one Scheduler: the messages in flight (InFlight, by queue
// id) and the jobs the delivery threads hold (JobState, by job id).
//
// Invariants:
//  - A message is in flight from its load until the last of its domain groups of this
//    attempt is concluded (routing failed, or its job's result is recorded). While in
//    flight only this loop touches its envelope, so Queue::update() and remove() of one
//    message are serialized, as queue.hpp asks, and a scan skips it.
//  - InFlight::outstanding counts the groups not yet concluded, plus one while
//    start_message() is still creating them (so a route answered at once cannot finish
//    the message under its feet). It reaches 0 once; then the bounce is sent, the
//    message leaves messages_ and, if finished, goes to finished_ for removal.
//  - Every posted job is in jobs_ until its result arrives. Each result is recorded in
//    the envelope on disk before the next one is looked at, except the last result of
//    a message it finishes with no bounce owed (record()): that one is never written,
//    the message is removed instead. Either way, when the loop next looks for work
//    (scan, inotify, routing) every result it has taken is durable, as an updated
//    envelope or as a removal, or its message is held (held_) after a write error; a
//    crash before that sends the unrecorded deliveries again (at-least-once).
//  - finished_ holds the finished messages not yet removed. take_results() fills it
//    and removes them all together (Queue::remove(ids): one directory fsync) before
//    it returns; no scan or inotify read runs inside it, so a message waiting there,
//    already out of messages_ but with its old envelope still on disk, cannot be
//    started again. Elsewhere (start_message, routing, stop) a finished message is
//    removed at once, as conclude() ends.
//  - --flush: the first scan takes every queued message (Queue::list) instead of the due
//    ones. Nothing is written for it: the attempt's results set next_attempt as usual,
//    and a flush cut short by a stop is simply not remembered.
//  - --once: every message is attempted at most once per run (attempted_), so a short
//    retry_min cannot keep the run going; it ends when nothing is in flight and a scan
//    starts nothing new (a bounce queued for a remote sender is still sent).
//
// Thread safety: the main thread only. The delivery threads reach it through results_.
#include "scheduler.hpp"

#include "bounce.hpp"
#include "common/maildir.hpp"
#include "common/queue.hpp"
#include "common/resolver.hpp"
#include "delivery_thread.hpp"
#include "job.hpp"
#include "retry_policy.hpp"
#include "routing.hpp"

#include <signal.h>
#include <sys/inotify.h>
#include <sys/select.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace smtp::smtpc {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// recover() at start spares files younger than this: they may belong to a commit of a
// running smtpd (a commit takes milliseconds). The hourly run is more careful still.
constexpr std::int64_t start_recover_grace = 60;
constexpr std::int64_t periodic_recover_grace = 3600;
constexpr auto recover_interval = 1h;
// After a graceful stop has waited command_timeout for the threads, this long more;
// then they are stopped at once, and after this long again no longer waited for.
constexpr auto stop_slack = 5s;
// Messages in flight at most: a huge queue is taken in slices, so memory and the
// threads' job lists stay bounded; the next slice is scanned when half are done.
constexpr std::size_t max_in_flight = 2000;
// What of the original message a bounce gets: enough for any header (RET=HDRS; make_dsn
// cuts a header at 64 KiB), or for RET=FULL the message up to a bound that must stay
// above make_dsn's own (bounce.cpp's max_original, 64 KiB): make_dsn returns the whole
// `original` when it is within its bound, so a cut copy must always be larger than it.
constexpr std::size_t dsn_header_bytes = 64 * 1024;
constexpr std::size_t dsn_full_bytes = 256 * 1024;

std::int64_t wall_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

// ---------------------------------------------------------------- signals

// Written by the handlers, read by the loop. The handled signals are blocked except
// inside pselect(), so the loop reads these only while no handler can run.
volatile std::sig_atomic_t stop_signals = 0;  // SIGTERM/SIGINT seen: 1 graceful, 2 now
volatile std::sig_atomic_t rescan_requested = 0;

extern "C" void on_signal(int sig) {
    if (sig == SIGHUP)
        rescan_requested = 1;
    else if (stop_signals < 2)
        stop_signals = stop_signals + 1;
}

// Blocks SIGTERM, SIGINT and SIGHUP in the process (threads started later inherit
// it), installs the flag handlers, ignores SIGPIPE (a socket closed by a server must
// not kill the daemon), and puts everything back when destroyed.
class Signals {
public:
    Signals() = default;
    Signals(const Signals&) = delete;
    Signals& operator=(const Signals&) = delete;
    ~Signals() { restore(); }

    // Errors: those of sigprocmask and sigaction.
    std::error_code install() {
        stop_signals = 0;
        rescan_requested = 0;
        sigset_t handled;
        sigemptyset(&handled);
        for (const int sig : handled_signals) sigaddset(&handled, sig);
        if (::sigprocmask(SIG_BLOCK, &handled, &old_mask_) != 0) return {errno, std::system_category()};
        mask_saved_ = true;
        wait_mask_ = old_mask_;
        for (const int sig : handled_signals) sigdelset(&wait_mask_, sig);

        struct sigaction action {};
        action.sa_handler = on_signal;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESTART;
        struct sigaction ignore {};
        ignore.sa_handler = SIG_IGN;
        sigemptyset(&ignore.sa_mask);
        for (std::size_t i = 0; i < all_signals.size(); ++i) {
            const int sig = all_signals[i];
            if (::sigaction(sig, sig == SIGPIPE ? &ignore : &action, &old_actions_[i]) != 0)
                return {errno, std::system_category()};
            ++actions_saved_;
        }
        return {};
    }

    // The mask for pselect(): the one we started with, the handled signals let through.
    const sigset_t* wait_mask() const noexcept { return &wait_mask_; }

private:
    static constexpr std::array<int, 3> handled_signals{SIGTERM, SIGINT, SIGHUP};
    static constexpr std::array<int, 4> all_signals{SIGTERM, SIGINT, SIGHUP, SIGPIPE};

    // The mask first: a signal still pending then meets our handler (a flag), not the
    // default action, which would end the process before main() stops the log process.
    void restore() noexcept {
        if (mask_saved_) static_cast<void>(::sigprocmask(SIG_SETMASK, &old_mask_, nullptr));
        for (std::size_t i = 0; i < actions_saved_; ++i)
            static_cast<void>(::sigaction(all_signals[i], &old_actions_[i], nullptr));
        mask_saved_ = false;
        actions_saved_ = 0;
    }

    sigset_t old_mask_{};
    sigset_t wait_mask_{};
    bool mask_saved_ = false;
    std::array<struct sigaction, all_signals.size()> old_actions_{};
    std::size_t actions_saved_ = 0;
};

// ---------------------------------------------------------------- helpers

// The directory whose renames announce new messages (doc/queue-format.md, Layout).
std::string envelope_dir(const std::string& queue_root) { return queue_root + "/envelope"; }

// The pending recipients of `e` (indexes) by domain.
std::map<std::string, std::vector<std::size_t>> pending_by_domain(const queue::Envelope& e) {
    std::map<std::string, std::vector<std::size_t>> groups;
    for (std::size_t i = 0; i < e.recipients.size(); ++i)
        if (e.recipients[i].state == queue::RecipientState::pending)
            groups[e.recipients[i].domain].push_back(i);
    return groups;
}

// What a message's job carries of its envelope.
OutgoingMessage outgoing_message(const queue::Envelope& e, const std::vector<std::size_t>& indexes) {
    OutgoingMessage m;
    m.sender = e.sender;
    m.recipients.reserve(indexes.size());
    for (const std::size_t i : indexes) m.recipients.push_back(e.recipients[i].address);
    m.eight_bit = e.body == Body::eight_bit_mime;
    m.smtputf8 = e.smtputf8;
    m.size = e.content_size;
    return m;
}

// A reply line for recipients whose every endpoint failed before a transaction: the
// delivery thread's reason, made a 4.4.1 reply (RFC 3463: no answer from host) unless
// it already is a reply.
std::string connection_failure_reply(std::string_view error) {
    const bool is_reply = error.size() >= 4 && (error[0] == '4' || error[0] == '5') && error[1] >= '0' &&
                          error[1] <= '9' && error[2] >= '0' && error[2] <= '9' && error[3] == ' ';
    if (is_reply) return std::string(error);
    return fmt::format("451 4.4.1 {}", error.empty() ? std::string_view("no server reachable") : error);
}

// The head of the content of `e` for its DSN (see dsn_header_bytes), into `out`.
// Errors: those of Queue::open_content and read(2).
std::error_code read_original(const queue::Queue& queue, const queue::Envelope& e, std::string& out) {
    out.clear();
    Fd fd;
    if (auto ec = queue.open_content(e.id, fd)) return ec;
    const std::size_t limit = e.ret == Ret::full ? dsn_full_bytes : dsn_header_bytes;
    out.resize(static_cast<std::size_t>(std::min<std::uint64_t>(e.content_size, limit)));
    std::size_t got = 0;
    while (got < out.size()) {
        const ssize_t n = ::read(fd.get(), out.data() + got, out.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const std::error_code ec{errno, std::system_category()};
            out.clear();
            return ec;
        }
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    out.resize(got);
    return {};
}

std::string describe(const queue::RecoverReport& r) {
    return fmt::format(
        "removed {} temporary files, {} contents without envelope, {} stale markers; added {} missing "
        "markers",
        r.temps_removed, r.contents_removed, r.markers_removed, r.markers_added);
}

// ---------------------------------------------------------------- the scheduler

// One message being attempted.
struct InFlight {
    queue::Envelope envelope;
    std::string sid;                   // short_id, for log lines
    std::uint32_t attempt = 0;         // the number of this attempt, for the jobs
    std::size_t outstanding = 0;       // groups not concluded (+1 while being started)
    std::size_t routing = 0;           // of which waiting for the Router
    std::vector<std::size_t> bounced;  // bounced in this attempt with a DSN due
    bool vanished = false;             // the envelope is gone (ENOENT): no bounce, no remove
    bool write_failed = false;         // an update or the remove failed: hold it (held_)
};

// A job the delivery threads hold: one domain group of a message and where to try it.
struct JobState {
    std::string message_id;
    std::vector<std::size_t> indexes;  // envelope recipients
    std::vector<Endpoint> endpoints;   // from the Router, in order
    std::size_t current = 0;           // endpoints[current] has the job
    TlsLevel tls = TlsLevel::may;      // the domain's: the same for every endpoint tried
};

class Scheduler {
public:
    Scheduler(const Settings& settings, const Resolved& resolved, Logger& log)
        : settings_(settings),
          resolved_(resolved),
          log_(log),
          queue_(settings.queue_root),
          policy_{settings.retry_min, settings.retry_max, settings.queue_lifetime} {}

    int run();

private:
    // Start-up; false (logged) when something the daemon needs is missing.
    bool start();
    bool start_threads();
    void open_inotify();
    void recover(std::int64_t grace);

    void loop();
    void handle_signals();
    // Scans when due; returns false when a --once run is over.
    bool scan_if_due();
    void wait();
    Clock::time_point next_deadline() const;

    // Finding work. Each returns how many messages it started.
    std::size_t scan(bool every_message);
    std::size_t read_inotify();
    bool may_start(const std::string& id);
    bool start_message(const std::string& id, std::int64_t now, bool only_if_due);

    // Routing and jobs.
    void route_group(const std::string& id, const std::string& domain, std::vector<std::size_t> indexes);
    void on_routed(const std::string& id, std::vector<std::size_t> indexes, TlsLevel tls,
                   const RouteResult& result);
    void post_job(JobState state);

    // Results.
    void take_results();
    void on_result(JobResult result);
    void on_not_connected(InFlight& m, JobState state, const JobResult& result);
    void fail_group(InFlight& m, const std::vector<std::size_t>& indexes, Outcome outcome,
                    const std::string& reply);
    static void rebase_attempts(InFlight& m);
    void record(InFlight& m, const Applied& applied);
    void log_failures(const InFlight& m, const std::vector<std::size_t>& indexes, std::string_view status);
    void conclude(const std::string& id, std::size_t groups = 1);
    void finish(const std::string& id, InFlight& m);
    // Removes the messages in finished_ together, logs each, holds those that failed.
    void remove_finished();
    // Stores the DSN for m.bounced; false (logged) when it could not be stored.
    bool send_dsn(InFlight& m);
    static queue::Envelope storable(const InFlight& m);

    // Stopping.
    void begin_stop();
    void stop_now();
    void shutdown();

    const Settings& settings_;
    const Resolved& resolved_;
    Logger& log_;
    Signals signals_;  // before threads_: restored once they are gone
    queue::Queue queue_;
    RetryPolicy policy_;
    MailRoot mail_root_;
    std::unique_ptr<Resolver> resolver_;
    std::optional<Router> router_;
    Mailbox<JobResult> results_;
    std::vector<std::unique_ptr<DeliveryThread>> threads_;  // after all they reference
    Fd inotify_;

    std::map<std::string, InFlight> messages_;  // a map: references survive other inserts
    std::unordered_map<std::uint64_t, JobState> jobs_;
    std::uint64_t last_job_id_ = 0;
    std::set<std::string> attempted_;   // --once: started in this run
    std::set<std::string> unreadable_;  // envelopes reported as unreadable (once each)
    // Messages whose results could not be written (disk full...): their file still
    // says due, so without this hold a scan would send them again every scan_interval.
    std::map<std::string, Clock::time_point> held_;
    // Finished messages, out of messages_, whose removal is pending (see the top).
    std::vector<std::string> finished_;
    bool taking_results_ = false;  // inside take_results(): removals wait for its end

    Clock::time_point next_scan_{};
    Clock::time_point next_recover_{};
    bool first_scan_ = true;
    bool backlog_ = false;  // a scan stopped at max_in_flight
    bool stopping_ = false;
    bool stopped_now_ = false;
    Clock::time_point stop_deadline_{};
};

int Scheduler::run() {
    if (!start()) return 1;
    loop();
    shutdown();
    return 0;
}

// ---------------------------------------------------------------- start-up

bool Scheduler::start() {
    if (auto ec = queue_.prepare()) {
        log_.error("cannot prepare queue {}: {}", queue_.root(), ec.message());
        return false;
    }
    recover(start_recover_grace);
    // A missing mail root is an error, as for smtpd: bounces to local senders must be
    // deliverable, and a typo must not show up only when the first bounce is lost.
    std::error_code ec;
    mail_root_ = MailRoot::open(settings_.mail_root, ec, resolved_.hostname);
    if (ec) {
        log_.error("cannot open mail root {} (bounces to local senders go there): {}", settings_.mail_root,
                   ec.message());
        return false;
    }
    ResolverOptions options;
    options.server = settings_.dns_server;
    options.timeout = settings_.dns_timeout;
    resolver_ = Resolver::create(options, ec);
    if (!resolver_) {
        log_.error("cannot create the DNS resolver{}{}: {}", settings_.dns_server.empty() ? "" : " for ",
                   settings_.dns_server, ec.message());
        return false;
    }
    router_.emplace(resolved_, *resolver_, settings_.port);
    if ((ec = results_.open()) || results_.wake_fd() >= FD_SETSIZE) {
        log_.error("cannot open the results pipe: {}", ec ? ec.message() : "descriptor too high for select");
        return false;
    }
    // Before the threads: they inherit the blocked signals, so only pselect() takes them.
    if ((ec = signals_.install())) {
        log_.error("cannot set up signals: {}", ec.message());
        return false;
    }
    if (!start_threads()) return false;
    open_inotify();
    log_.info("scheduler started: queue={} mail_root={} threads={} scan_interval={}s inotify={}{}{}",
              queue_.root(), settings_.mail_root, threads_.size(), settings_.scan_interval.count(),
              inotify_ ? "on" : "off", settings_.once ? " once" : "", settings_.flush ? " flush" : "");
    return true;
}

bool Scheduler::start_threads() {
    if (settings_.threads == 0) {
        log_.error("threads must be at least 1");
        return false;
    }
    for (unsigned i = 0; i < settings_.threads; ++i) {
        auto thread = std::make_unique<DeliveryThread>(settings_, resolved_, queue_, log_, results_, i);
        if (auto ec = thread->start()) {
            log_.error("cannot start delivery thread {}: {}", i, ec.message());
            return false;  // the started ones stop and join in their destructors
        }
        threads_.push_back(std::move(thread));
    }
    return true;
}

// Without inotify the scans alone find new mail, scan_interval later.
void Scheduler::open_inotify() {
    Fd fd{::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)};
    if (!fd) {
        log_.warning("inotify unavailable ({}): new mail is found by the scans only", std::strerror(errno));
        return;
    }
    if (fd.get() >= FD_SETSIZE) {
        log_.warning("inotify descriptor too high for select: new mail is found by the scans only");
        return;
    }
    const std::string dir = envelope_dir(queue_.root());
    if (::inotify_add_watch(fd.get(), dir.c_str(), IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
        log_.warning("cannot watch {} ({}): new mail is found by the scans only", dir, std::strerror(errno));
        return;
    }
    inotify_ = std::move(fd);
}

void Scheduler::recover(std::int64_t grace) {
    queue::RecoverReport report;
    if (auto ec = queue_.recover(wall_now(), grace, report)) {
        log_.error("queue recovery failed: {}", ec.message());
        return;
    }
    const bool repaired =
        report.temps_removed + report.contents_removed + report.markers_removed + report.markers_added > 0;
    if (repaired)
        log_.info("queue recovered: {}", describe(report));
    else
        log_.debug("queue recovered: nothing to repair");
    if (!report.corrupt.empty())
        log_.warning("queue: {} unreadable envelopes or missing contents, left for the admin: {}",
                     report.corrupt.size(), fmt::join(report.corrupt, " "));
}

// ---------------------------------------------------------------- the loop

void Scheduler::loop() {
    const auto now = Clock::now();
    next_scan_ = now;
    next_recover_ = now + recover_interval;
    for (;;) {
        handle_signals();
        if (!stopping_) {
            if (!scan_if_due()) return;
            if (Clock::now() >= next_recover_) {
                recover(periodic_recover_grace);
                next_recover_ = Clock::now() + recover_interval;
            }
        } else if (jobs_.empty()) {
            return;
        } else if (Clock::now() >= stop_deadline_) {
            if (stopped_now_) {
                log_.error("delivery threads did not report {} jobs: leaving them", jobs_.size());
                return;
            }
            log_.warning("delivery threads still busy after the graceful stop period: stopping them now");
            stop_now();
        }
        wait();
    }
}

void Scheduler::handle_signals() {
    if (stop_signals > 0 && !stopping_) {
        log_.info("stop requested: {} messages, {} jobs in flight", messages_.size(), jobs_.size());
        begin_stop();
    }
    if (stop_signals > 1 && !stopped_now_) {
        log_.info("second stop request: stopping the delivery threads now");
        stop_now();
    }
    if (rescan_requested) {
        rescan_requested = 0;
        if (!stopping_) {
            log_.info("SIGHUP: rescanning the queue");
            next_scan_ = Clock::now();
        }
    }
}

bool Scheduler::scan_if_due() {
    if (backlog_ && messages_.size() <= max_in_flight / 2) {
        backlog_ = false;
        next_scan_ = Clock::now();
    }
    // --once scans whenever it is idle: the run ends with a scan that starts nothing.
    const bool idle_once = settings_.once && messages_.empty();
    if (!idle_once && Clock::now() < next_scan_) return true;
    const std::size_t started = scan(first_scan_ && settings_.flush);
    first_scan_ = false;
    next_scan_ = Clock::now() + settings_.scan_interval;
    if (settings_.once && started == 0 && messages_.empty() && !backlog_) {
        log_.info("queue run done: nothing left to do now");
        return false;
    }
    return true;
}

Clock::time_point Scheduler::next_deadline() const {
    if (stopping_) return stop_deadline_;
    return std::min(next_scan_, next_recover_);
}

void Scheduler::wait() {
    fd_set read_set;
    fd_set write_set;
    FD_ZERO(&read_set);
    FD_ZERO(&write_set);
    FD_SET(results_.wake_fd(), &read_set);
    int max_fd = results_.wake_fd();
    if (inotify_) {
        FD_SET(inotify_.get(), &read_set);
        max_fd = std::max(max_fd, inotify_.get());
    }
    max_fd = resolver_->add_fds(read_set, write_set, max_fd);

    auto timeout = std::max(Clock::duration::zero(), next_deadline() - Clock::now());
    if (const auto dns = resolver_->timeout(); dns != std::chrono::milliseconds::max())
        timeout = std::min<Clock::duration>(timeout, dns);
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count();
    const timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};

    const int n = ::pselect(max_fd + 1, &read_set, &write_set, nullptr, &ts, signals_.wait_mask());
    if (n < 0) {
        // EINTR: a signal, handled at the top of the loop. The sets are undefined now;
        // the resolver still gets its turn for its timeouts.
        if (errno != EINTR) log_.error("pselect: {}", std::strerror(errno));
        FD_ZERO(&read_set);
        FD_ZERO(&write_set);
    }
    resolver_->process(read_set, write_set);
    if (inotify_ && FD_ISSET(inotify_.get(), &read_set)) read_inotify();
    if (FD_ISSET(results_.wake_fd(), &read_set)) take_results();
}

// ---------------------------------------------------------------- finding work

bool Scheduler::may_start(const std::string& id) {
    if (messages_.count(id) > 0) return false;
    if (const auto it = held_.find(id); it != held_.end()) {
        if (Clock::now() < it->second) return false;
        held_.erase(it);
    }
    return !settings_.once || attempted_.count(id) == 0;
}

std::size_t Scheduler::scan(bool every_message) {
    const std::int64_t now = wall_now();
    std::vector<std::string> ids;
    const auto ec = every_message ? queue_.list(ids) : queue_.list_due(now, ids);
    if (ec) {
        log_.error("cannot list the queue {}: {}", queue_.root(), ec.message());
        return 0;
    }
    std::size_t started = 0;
    for (const auto& id : ids) {
        if (messages_.size() >= max_in_flight) {
            backlog_ = true;
            break;
        }
        if (may_start(id) && start_message(id, now, false)) ++started;
    }
    return started;
}

// New envelopes (smtpd's commits, our own bounces, and our own updates, which are not
// due yet) are loaded directly; an overflow of the event queue asks for a full scan.
std::size_t Scheduler::read_inotify() {
    alignas(inotify_event) char buffer[4096];
    std::set<std::string> ids;
    for (;;) {
        const ssize_t n = ::read(inotify_.get(), buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) break;
        if (n <= 0) {
            log_.error("inotify: {}: new mail is found by the scans only",
                       n < 0 ? std::strerror(errno) : "EOF");
            static_cast<void>(inotify_.close());
            break;
        }
        for (std::size_t offset = 0; offset + sizeof(inotify_event) <= static_cast<std::size_t>(n);) {
            inotify_event event;
            std::memcpy(&event, buffer + offset, sizeof event);
            const char* name = buffer + offset + sizeof event;
            offset += sizeof event + event.len;
            if (event.mask & IN_Q_OVERFLOW) next_scan_ = Clock::now();
            if (event.mask & IN_IGNORED) {
                log_.warning("{} is no longer watched: new mail is found by the scans only",
                             envelope_dir(queue_.root()));
                static_cast<void>(inotify_.close());
                break;
            }
            const std::string_view id{name, ::strnlen(name, event.len)};
            if (queue::is_valid_id(id)) ids.emplace(id);
        }
        if (!inotify_) break;
    }
    if (stopping_) return 0;
    const std::int64_t now = wall_now();
    std::size_t started = 0;
    for (const auto& id : ids) {
        if (messages_.size() >= max_in_flight) {
            backlog_ = true;
            break;
        }
        if (may_start(id) && start_message(id, now, true)) ++started;
    }
    return started;
}

// Loads `id` and starts its attempt: expiry first, then one route per domain of its
// pending recipients. `only_if_due`: skip it unless its next attempt has come (an
// inotify event is also what our own update() of a deferred message causes).
bool Scheduler::start_message(const std::string& id, std::int64_t now, bool only_if_due) {
    queue::Envelope envelope;
    std::string why;
    if (auto ec = queue_.load(id, envelope, &why)) {
        if (ec == std::errc::no_such_file_or_directory) return false;  // removed meanwhile
        if (unreadable_.insert(id).second)
            log_.error("{}: cannot load envelope {}: {}", queue::short_id(id), id,
                       why.empty() ? ec.message() : why);
        return false;
    }
    if (only_if_due && envelope.next_attempt > now) return false;
    unreadable_.erase(id);
    if (settings_.once) attempted_.insert(id);

    InFlight& m = messages_[id];
    m.envelope = std::move(envelope);
    m.sid = queue::short_id(id);
    m.attempt = m.envelope.attempts + 1;
    m.outstanding = 1;  // the hold, released at the end

    const auto& recipients = m.envelope.recipients;
    const auto pending = std::count_if(recipients.begin(), recipients.end(), [](const queue::Recipient& r) {
        return r.state == queue::RecipientState::pending;
    });
    log_.info("{}: from=<{}>, size={}, nrcpt={} (queue active)", m.sid, m.envelope.sender,
              m.envelope.content_size, pending);

    const Applied expired = expire(m.envelope, now, policy_);
    if (!expired.bounced.empty()) {
        log_failures(m, expired.bounced, "bounced");
        record(m, expired);
    }
    auto groups = pending_by_domain(m.envelope);
    for (auto& [domain, indexes] : groups) route_group(id, domain, std::move(indexes));
    conclude(id);  // the hold: finishes the message now if nothing was left to route
    return true;
}

// ---------------------------------------------------------------- routing and jobs

void Scheduler::route_group(const std::string& id, const std::string& domain,
                            std::vector<std::size_t> indexes) {
    InFlight& m = messages_.at(id);
    ++m.outstanding;
    ++m.routing;
    // The level is the recipients' domain's, whatever the route (tls_policy): a
    // smarthost or an MX fallback does not lower it.
    const TlsLevel tls = resolved_.tls_level_for(domain);
    router_->route(domain, [this, id, indexes = std::move(indexes), tls](const RouteResult& result) mutable {
        on_routed(id, std::move(indexes), tls, result);
    });
}

void Scheduler::on_routed(const std::string& id, std::vector<std::size_t> indexes, TlsLevel tls,
                          const RouteResult& result) {
    const auto it = messages_.find(id);
    if (it == messages_.end()) return;
    InFlight& m = it->second;
    --m.routing;
    if (result.status == RouteResult::Status::ok && !result.endpoints.empty()) {
        post_job(JobState{id, std::move(indexes), result.endpoints, 0, tls});
        return;
    }
    const bool permanent = result.status == RouteResult::Status::permanent;
    std::string reply = result.reply;
    if (reply.empty()) reply = permanent ? "550 5.4.4 Unable to route" : "451 4.4.3 Unable to route for now";
    fail_group(m, indexes, permanent ? Outcome::permanent : Outcome::temporary, reply);
    conclude(id);
}

// Hands the group to the thread of its current endpoint. Recipients no longer pending
// (expired meanwhile by another group's results) are left out; with none left the
// group is concluded.
void Scheduler::post_job(JobState state) {
    const InFlight& m = messages_.at(state.message_id);
    std::erase_if(state.indexes, [&](std::size_t i) {
        return m.envelope.recipients[i].state != queue::RecipientState::pending;
    });
    if (state.indexes.empty()) {
        conclude(state.message_id);
        return;
    }
    Job job;
    job.id = ++last_job_id_;
    job.message_id = state.message_id;
    job.message = outgoing_message(m.envelope, state.indexes);
    job.recipient_indexes = state.indexes;
    job.endpoint = state.endpoints[state.current];
    job.tls = state.tls;
    job.arrival = m.envelope.arrival;
    job.attempts = m.attempt;
    const std::size_t thread = delivery_thread_for(job.endpoint, threads_.size());
    jobs_.emplace(job.id, std::move(state));
    threads_[thread]->post(std::move(job));
}

// ---------------------------------------------------------------- results

// Every result posted since the last call. The messages they finish are removed
// together at the end: one fsync of the envelope directory for all of them.
void Scheduler::take_results() {
    taking_results_ = true;
    for (auto& result : results_.take_all()) on_result(std::move(result));
    taking_results_ = false;
    remove_finished();
}

void Scheduler::on_result(JobResult result) {
    auto node = jobs_.extract(result.job_id);
    if (node.empty()) {
        log_.warning("{}: result for unknown job {}", queue::short_id(result.message_id), result.job_id);
        return;
    }
    JobState state = std::move(node.mapped());
    const auto it = messages_.find(state.message_id);
    if (it == messages_.end()) return;
    InFlight& m = it->second;

    if (result.kind == JobResult::Kind::not_connected) {
        on_not_connected(m, std::move(state), result);
        return;
    }

    rebase_attempts(m);
    const Applied applied = apply_results(m.envelope, result.recipients, wall_now(), policy_);
    // The thread logged its recipients as sent, deferred or bounced; a deferred one
    // that the expiry inside apply_results bounced is ours to log.
    std::vector<std::size_t> expired;
    for (const std::size_t i : applied.bounced) {
        const bool logged_bounced = std::any_of(
            result.recipients.begin(), result.recipients.end(),
            [i](const RecipientResult& r) { return r.index == i && r.outcome == Outcome::permanent; });
        if (!logged_bounced) expired.push_back(i);
    }
    log_failures(m, expired, "bounced");
    record(m, applied);
    conclude(state.message_id);
}

// The next endpoint, if any; else the group's recipients fail temporarily with the
// last reason. Stopping: the group was not attempted; it stays due for the next start.
void Scheduler::on_not_connected(InFlight& m, JobState state, const JobResult& result) {
    const std::string id = state.message_id;
    if (!stopping_ && state.current + 1 < state.endpoints.size()) {
        log_.debug("{}: {} not reachable ({}): trying {}", m.sid, result.endpoint.to_string(), result.error,
                   state.endpoints[state.current + 1].to_string());
        ++state.current;
        post_job(std::move(state));
        return;
    }
    if (!stopping_) fail_group(m, state.indexes, Outcome::temporary, connection_failure_reply(result.error));
    conclude(id);
}

void Scheduler::fail_group(InFlight& m, const std::vector<std::size_t>& indexes, Outcome outcome,
                           const std::string& reply) {
    rebase_attempts(m);
    const Applied applied = apply_failure(m.envelope, indexes, outcome, reply, wall_now(), policy_);
    log_failures(m, applied.deferred, "deferred");
    log_failures(m, applied.bounced, "bounced");
    record(m, applied);
}

// apply_results() and apply_failure() count one attempt of the message per call, but
// an attempt here is one call per domain group (and per exhausted route): each call
// starts from the count before this attempt, so the message's attempts, and the retry
// delay that follows from them, grow by one per attempt, whatever its domains.
void Scheduler::rebase_attempts(InFlight& m) { m.envelope.attempts = m.attempt - 1; }

// Writes the envelope at once (a delivery is recorded as soon as it is known) and
// keeps what needs a bounce at the end of the attempt.
void Scheduler::record(InFlight& m, const Applied& applied) {
    if (applied.bounce_due) m.bounced.insert(m.bounced.end(), applied.bounced.begin(), applied.bounced.end());
    if (m.vanished) return;
    // The last group of a message now finished, with no bounce owed and no earlier
    // write failed: its conclusion follows at once and finish() removes the message,
    // so this envelope would be written only to be unlinked. The durable state goes
    // from the old envelope straight to removed. At-least-once holds: until the
    // removal is durable the old envelope shows these recipients pending, so a crash
    // (or a failed removal, held_) sends them again, as a crash before the update
    // would. Kept: a deferral (not finished), another group outstanding (the envelope
    // must say what this one did), a bounce owed (a failed DSN leaves the message
    // queued, and its delivered recipients must not be sent again).
    if (m.outstanding == 1 && m.bounced.empty() && !m.write_failed && m.envelope.finished()) return;
    if (auto ec = queue_.update(storable(m))) {
        if (ec == std::errc::no_such_file_or_directory) {
            log_.warning("{}: the message was removed from the queue during its delivery", m.sid);
            m.vanished = true;
        } else {
            // The old envelope stays: what it lacks is attempted again (at-least-once),
            // after a hold.
            log_.error("{}: cannot record the delivery results: {}", m.sid, ec.message());
            m.write_failed = true;
        }
    }
}

// The envelope as it may be stored before the attempt ends: recipients whose bounce is
// owed but not yet stored are still pending there, so a crash (or a failed DSN) before
// the DSN is stored makes them tried again and bounced again, never silently dropped.
queue::Envelope Scheduler::storable(const InFlight& m) {
    queue::Envelope e = m.envelope;
    for (const std::size_t i : m.bounced) e.recipients[i].state = queue::RecipientState::pending;
    return e;
}

void Scheduler::log_failures(const InFlight& m, const std::vector<std::size_t>& indexes,
                             std::string_view status) {
    for (const std::size_t i : indexes) {
        const auto& r = m.envelope.recipients[i];
        log_.info("{}: to=<{}>, status={} ({})", m.sid, r.address, status, r.last_error);
    }
}

// `groups` of the message are concluded; the last one finishes the message.
void Scheduler::conclude(const std::string& id, std::size_t groups) {
    const auto it = messages_.find(id);
    if (it == messages_.end()) return;
    InFlight& m = it->second;
    m.outstanding -= std::min(groups, m.outstanding);
    if (m.outstanding > 0) return;
    finish(it->first, m);
    messages_.erase(it);
    if (!taking_results_) remove_finished();
}

void Scheduler::finish(const std::string& id, InFlight& m) {
    if (m.vanished) return;
    if (!m.bounced.empty()) {
        if (!send_dsn(m)) {
            // The stored envelope shows those recipients pending: they are retried.
            held_[id] = Clock::now() + policy_.retry_min;
            return;
        }
        m.bounced.clear();
        if (!m.envelope.finished()) record(m, Applied{});  // now with their bounced states
    }
    // Removed by remove_finished(), with the others finished in the same burst. Else it
    // waits for next_attempt, written by update().
    if (m.envelope.finished()) finished_.push_back(id);
    if (m.write_failed) held_[id] = Clock::now() + policy_.retry_min;
}

// "removed" is logged only once the envelope's unlink is durable. A failure holds the
// message: its envelope, if still there, is attempted again after retry_min.
void Scheduler::remove_finished() {
    if (finished_.empty()) return;
    const std::vector<std::error_code> errors = queue_.remove(finished_);
    for (std::size_t i = 0; i < finished_.size(); ++i) {
        const std::string& id = finished_[i];
        if (errors[i]) {
            log_.error("{}: cannot remove the finished message: {}", queue::short_id(id),
                       errors[i].message());
            held_[id] = Clock::now() + policy_.retry_min;
        } else {
            log_.info("{}: removed", queue::short_id(id));
        }
    }
    finished_.clear();
}

bool Scheduler::send_dsn(InFlight& m) {
    std::sort(m.bounced.begin(), m.bounced.end());
    m.bounced.erase(std::unique(m.bounced.begin(), m.bounced.end()), m.bounced.end());
    std::string original;
    if (auto ec = read_original(queue_, m.envelope, original))
        log_.warning("{}: cannot read the message for its bounce: {}", m.sid, ec.message());
    const std::int64_t now = wall_now();
    const BounceContext context{resolved_.hostname, now, m.envelope.id};
    const std::string dsn = make_dsn(m.envelope, m.bounced, original, context);
    std::string delivered_to;
    if (auto ec =
            send_bounce(m.envelope, dsn, resolved_.local_domain, mail_root_, queue_, now, delivered_to)) {
        log_.error("{}: cannot store the sender non-delivery notification to <{}>: {}", m.sid,
                   m.envelope.sender, ec.message());
        return false;
    }
    log_.info("{}: sender non-delivery notification: {}", m.sid, delivered_to);
    return true;
}

// ---------------------------------------------------------------- stopping

// No new scans or routes; the threads finish what they have begun and give back the
// rest. Groups still being routed were not attempted: they just end.
void Scheduler::begin_stop() {
    stopping_ = true;
    stop_deadline_ = Clock::now() + settings_.command_timeout + stop_slack;
    router_->cancel_all();
    for (auto& thread : threads_) thread->stop(false);
    std::vector<std::pair<std::string, std::size_t>> routing;
    for (auto& [id, m] : messages_)
        if (m.routing > 0) routing.emplace_back(id, std::exchange(m.routing, 0));
    for (const auto& [id, groups] : routing) conclude(id, groups);
}

void Scheduler::stop_now() {
    if (!stopping_) begin_stop();
    stopped_now_ = true;
    stop_deadline_ = Clock::now() + stop_slack;
    for (auto& thread : threads_) thread->stop(true);
}

// After the loop: the threads end, and what they reported last is recorded.
void Scheduler::shutdown() {
    if (!stopping_) begin_stop();
    for (auto& thread : threads_) thread->join();
    take_results();
    if (!messages_.empty())
        log_.warning("{} messages left unfinished: they are attempted again at the next start",
                     messages_.size());
}

}  // namespace

int run_scheduler(const Settings& settings, const Resolved& resolved, Logger& log) {
    Scheduler scheduler{settings, resolved, log};
    return scheduler.run();
}

}  // namespace smtp::smtpc
