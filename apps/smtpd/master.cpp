// apps/smtpd/master.cpp: start-up, the workers' supervision, stop and reload.
#include "master.hpp"

#include "common/log.hpp"
#include "common/maildir.hpp"
#include "common/queue.hpp"
#include "common/startup.hpp"
#include "listener.hpp"
#include "privileges.hpp"
#include "settings.hpp"
#include "worker.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace smtp::smtpd {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// A worker that dies sooner than this after its start is restarted only after this
// long again, so a worker that cannot start (a broken mail root) cannot spin.
constexpr auto restart_throttle = 1s;
// After shutdown_grace, what workers get to send their 421s and exit before SIGKILL.
constexpr auto stop_slack = 10s;

struct Loaded {
    Settings settings;
    Resolved resolved;
    config::Outcome outcome;
    std::string error;  // from resolve(); outcome.errors are the config's own
};

// Reads the configuration: the file and the command line, then their checked forms.
Loaded load_configuration(int argc, char** argv) {
    Loaded l;
    auto table = make_table(l.settings);
    l.outcome = config::load(table, argc, argv, default_config_file);
    if (l.outcome.ok()) l.error = resolve(l.settings, l.resolved);
    return l;
}

// "off", "starttls" or "required" (for relay clients), for the start and reload lines.
std::string_view tls_mode(const Settings& s) {
    if (s.tls_cert.empty()) return "off";
    return s.require_tls ? "required" : "starttls";
}

std::string describe_exit(int status) {
    if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
    if (WIFSIGNALED(status))
        return fmt::format("signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
    return fmt::format("wait status {}", status);
}

// The settings that only a restart changes: named when a reload finds them changed.
std::vector<std::string> fixed_settings_changed(const Settings& a, const Settings& b) {
    std::vector<std::string> changed;
    const auto check = [&](bool differs, const char* name) {
        if (differs) changed.emplace_back(name);
    };
    check(a.port != b.port, "port");
    check(a.bind != b.bind, "bind");
    check(a.user != b.user, "user");
    check(a.group != b.group, "group");
    check(a.log_file != b.log_file, "log_file");
    check(a.log_level != b.log_level, "log_level");
    check(a.mail_root != b.mail_root, "mail_root");
    check(a.queue_root != b.queue_root, "queue_root");
    return changed;
}

void keep_fixed_settings(const Settings& from, Settings& to) {
    to.port = from.port;
    to.bind = from.bind;
    to.user = from.user;
    to.group = from.group;
    to.log_file = from.log_file;
    to.log_level = from.log_level;
    to.mail_root = from.mail_root;
    to.queue_root = from.queue_root;
}

struct WorkerSlot {
    pid_t pid = -1;
    Clock::time_point started;
    std::optional<Clock::time_point> restart_at;  // set while a restart waits
};

class Master {
public:
    Master(int argc, char** argv, Loaded loaded) : argc_(argc), argv_(argv), loaded_(std::move(loaded)) {}

    // The master's whole life after the configuration was read. In a worker, returns
    // the worker's exit status instead (see run_smtpd).
    int run();

private:
    bool start();
    int supervise();
    // Forks the worker of `slot`. Returns false in the parent (also on fork failure,
    // which schedules a retry); true in the child, which has set child_status_.
    bool fork_worker(std::size_t index);
    void reap_children();
    void on_worker_exit(pid_t pid, int status);
    void reload();
    void stop_workers();
    std::optional<Clock::duration> next_restart_delay() const;

    int argc_;
    char** argv_;
    Loaded loaded_;
    LogOptions log_options_;
    LogProcess log_process_;
    std::optional<Logger> log_;  // made once the log process runs
    std::vector<Listener> listeners_;
    std::vector<WorkerSlot> slots_;
    std::vector<pid_t> draining_;  // old workers finishing their sessions after a reload
    bool stopping_ = false;
    std::optional<int> child_status_;  // set in a forked worker
};

int Master::run() {
    if (!start()) {
        static_cast<void>(stop_and_wait(log_process_));
        return 1;
    }
    const int status = supervise();
    if (child_status_) return *child_status_;
    log_->info("stopped");
    if (auto ec = stop_and_wait(log_process_))
        std::fprintf(stderr, "smtpd: log process: %s\n", ec.message().c_str());
    return status;
}

bool Master::start() {
    const Settings& s = loaded_.settings;
    if (auto error = create_default_directories(default_directories(s)); !error.empty()) {
        std::fprintf(stderr, "smtpd: %s\n", error.c_str());
        return false;
    }
    log_options_.program = "smtpd";
    log_options_.file_path = s.log_file;
    log_options_.min_level = s.log_level;
    auto started = start_log_process(log_options_);
    if (started.error) {
        std::fprintf(stderr, "smtpd: %s\n", started.error.what.c_str());
        return false;
    }
    log_process_ = std::move(started.process);
    log_.emplace(log_process_);

    std::string error;
    listeners_ = open_listeners(loaded_.resolved.bind, s.port, error);
    if (listeners_.empty()) {
        log_->error("{}", error);
        return false;
    }
    if (!s.user.empty()) {
        if (auto why = drop_privileges(s.user, s.group); !why.empty()) {
            log_->error("cannot drop privileges: {}", why);
            return false;
        }
    } else if (::geteuid() == 0) {
        log_->warning("running as root: set user (and group) to drop privileges after binding");
    }
    std::error_code ec;
    MailRoot root = MailRoot::open(s.mail_root, ec, loaded_.resolved.hostname);
    if (ec) {
        log_->error("cannot open mail root {}: {}", s.mail_root, ec.message());
        return false;
    }
    if ((ec = queue::Queue{s.queue_root}.prepare())) {
        log_->error("cannot prepare queue {}: {}", s.queue_root, ec.message());
        return false;
    }
    for (const auto& l : listeners_) log_->info("listening on {}", l.name);
    log_->info(
        "started: hostname={} workers={} max_connections={} local_domain={} relay_net={} rdns={} tls={}",
        loaded_.resolved.hostname, s.workers, s.max_connections,
        fmt::join(loaded_.resolved.local_domain, ","), loaded_.resolved.relay_net.to_string(),
        s.rdns ? (s.dns_server.empty() ? "system" : s.dns_server) : "off", tls_mode(s));
    return true;
}

bool Master::fork_worker(std::size_t index) {
    WorkerSlot& slot = slots_[index];
    std::fflush(nullptr);  // nothing buffered may be written twice
    const pid_t pid = ::fork();
    if (pid < 0) {
        log_->error("cannot fork worker {}: {}; retrying", index, std::strerror(errno));
        slot.restart_at = Clock::now() + restart_throttle;
        return false;
    }
    if (pid > 0) {
        slot.pid = pid;
        slot.started = Clock::now();
        slot.restart_at.reset();
        log_->info("worker {} started pid={}", index, pid);
        return false;
    }
    // The worker. The master's signals stay blocked until run_worker has installed its
    // handlers (and unblocks them), so none can kill it half-started.
    log_process_.after_fork_in_worker();
    log_->after_fork();
    WorkerSetup setup;
    setup.settings = &loaded_.settings;
    setup.resolved = &loaded_.resolved;
    for (const auto& l : listeners_) setup.listeners.push_back(l.fd.get());
    setup.log = &*log_;
    setup.index = static_cast<unsigned>(index);
    child_status_ = run_worker(setup);
    return true;
}

std::optional<Clock::duration> Master::next_restart_delay() const {
    std::optional<Clock::duration> delay;
    const auto now = Clock::now();
    for (const auto& slot : slots_) {
        if (!slot.restart_at) continue;
        const auto d = std::max(Clock::duration::zero(), *slot.restart_at - now);
        if (!delay || d < *delay) delay = d;
    }
    return delay;
}

int Master::supervise() {
    slots_.resize(loaded_.settings.workers);
    for (std::size_t i = 0; i < slots_.size(); ++i)
        if (fork_worker(i)) return 0;

    sigset_t signals;
    sigemptyset(&signals);
    for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, sig);
    Clock::time_point kill_at{};  // when stopping_: SIGKILL for workers still alive
    for (;;) {
        // Restarts that are due.
        if (!stopping_) {
            const auto now = Clock::now();
            for (std::size_t i = 0; i < slots_.size(); ++i)
                if (slots_[i].restart_at && *slots_[i].restart_at <= now && fork_worker(i)) return 0;
        }
        const bool any_worker =
            std::any_of(slots_.begin(), slots_.end(), [](const auto& s) { return s.pid > 0; });
        if (stopping_ && !any_worker && draining_.empty()) return 0;

        // Wait for a signal, at most until the next restart or the stop deadline.
        std::optional<Clock::duration> wait = stopping_ ? std::nullopt : next_restart_delay();
        if (stopping_) wait = std::max(Clock::duration::zero(), kill_at - Clock::now());
        siginfo_t info{};
        int sig;
        if (wait) {
            const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(*wait).count();
            const timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
            sig = ::sigtimedwait(&signals, &info, &ts);
        } else {
            sig = ::sigwaitinfo(&signals, &info);
        }
        if (sig < 0) {
            if (errno == EAGAIN && stopping_ && Clock::now() >= kill_at) {
                log_->warning("workers still running after the grace period: killing them");
                for (const auto& slot : slots_)
                    if (slot.pid > 0) ::kill(slot.pid, SIGKILL);
                for (pid_t pid : draining_) ::kill(pid, SIGKILL);
                kill_at = Clock::now() + stop_slack;  // and again, should SIGKILL not be enough
            }
            continue;  // EAGAIN (a restart is due) or EINTR
        }
        switch (sig) {
            case SIGCHLD:
                reap_children();
                break;
            case SIGTERM:
            case SIGINT:
                if (!stopping_) {
                    log_->info("{}: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
                    stopping_ = true;
                    // The workers close theirs too: once the last copy is gone, new
                    // connections are refused at once instead of waiting unanswered.
                    listeners_.clear();
                    kill_at = Clock::now() + loaded_.settings.shutdown_grace + stop_slack;
                    stop_workers();
                }
                break;
            case SIGHUP:
                if (!stopping_) reload();
                break;
        }
        if (child_status_) return 0;
    }
}

void Master::reap_children() {
    for (;;) {
        int status = 0;
        const pid_t pid = ::waitpid(-1, &status, WNOHANG);
        if (pid <= 0) return;  // 0: none left to reap now; -1 ECHILD: no children
        if (pid == log_process_.pid()) {
            log_process_.note_reaped(status);
            if (stopping_) continue;
            if (auto error = restart_log_process(log_process_, log_options_))
                std::fprintf(stderr, "smtpd: cannot restart the log process: %s\n", error.what.c_str());
            else
                log_->error("log process died ({}): restarted", describe_exit(status));
            continue;
        }
        on_worker_exit(pid, status);
    }
}

void Master::on_worker_exit(pid_t pid, int status) {
    if (std::erase(draining_, pid) > 0) {
        log_->info("old worker pid={} finished ({})", pid, describe_exit(status));
        return;
    }
    for (std::size_t i = 0; i < slots_.size(); ++i) {
        WorkerSlot& slot = slots_[i];
        if (slot.pid != pid) continue;
        slot.pid = -1;
        const bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (stopping_) {
            if (!clean) log_->warning("worker {} pid={} ended with {}", i, pid, describe_exit(status));
            return;
        }
        log_->error("worker {} pid={} died ({}): restarting", i, pid, describe_exit(status));
        const bool soon = Clock::now() - slot.started < restart_throttle;
        slot.restart_at = soon ? Clock::now() + restart_throttle : Clock::now();
        return;
    }
}

void Master::stop_workers() {
    for (auto& slot : slots_) {
        slot.restart_at.reset();
        if (slot.pid > 0 && ::kill(slot.pid, SIGTERM) != 0 && errno != ESRCH)
            log_->error("cannot signal worker pid={}: {}", slot.pid, std::strerror(errno));
    }
    for (pid_t pid : draining_) ::kill(pid, SIGTERM);
}

void Master::reload() {
    Loaded fresh = load_configuration(argc_, argv_);
    if (!fresh.outcome.ok() || !fresh.error.empty()) {
        for (const auto& e : fresh.outcome.errors) log_->error("reload refused: {}", e.message());
        if (!fresh.error.empty()) log_->error("reload refused: {}", fresh.error);
        return;
    }
    for (const auto& name : fixed_settings_changed(loaded_.settings, fresh.settings))
        log_->warning("reload: {} changes only with a restart; keeping the old value", name);
    keep_fixed_settings(loaded_.settings, fresh.settings);
    if (auto error = resolve(fresh.settings, fresh.resolved); !error.empty()) {
        log_->error("reload refused: {}", error);
        return;
    }
    // The old generation drains; a new one starts with the new settings.
    for (auto& slot : slots_) {
        if (slot.pid > 0) {
            if (::kill(slot.pid, SIGHUP) == 0) draining_.push_back(slot.pid);
        }
    }
    loaded_.settings = std::move(fresh.settings);
    loaded_.resolved = std::move(fresh.resolved);
    slots_.assign(loaded_.settings.workers, WorkerSlot{});
    log_->info("reloaded: {} workers with the new settings (tls={}), {} old ones draining", slots_.size(),
               tls_mode(loaded_.settings), draining_.size());
    for (std::size_t i = 0; i < slots_.size(); ++i)
        if (fork_worker(i)) return;
}

}  // namespace

int run_smtpd(int argc, char** argv) {
    // Blocked from the start, so no signal is lost between fork and sigwaitinfo.
    sigset_t signals;
    sigemptyset(&signals);
    for (int sig : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&signals, sig);
    if (::sigprocmask(SIG_BLOCK, &signals, nullptr) != 0) {
        std::perror("smtpd: sigprocmask");
        return 1;
    }
    Loaded loaded = load_configuration(argc, argv);
    for (const auto& e : loaded.outcome.errors) std::fprintf(stderr, "smtpd: %s\n", e.message().c_str());
    if (!loaded.outcome.ok()) return config::exit_config;
    if (!loaded.error.empty()) {
        std::fprintf(stderr, "smtpd: %s\n", loaded.error.c_str());
        return config::exit_config;
    }
    if (loaded.outcome.action != config::Action::run) {
        std::fputs(loaded.outcome.output.c_str(), stdout);
        return 0;
    }
    Master master{argc, argv, std::move(loaded)};
    return master.run();
}

}  // namespace smtp::smtpd
