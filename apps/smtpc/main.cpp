// smtpc: the sending daemon. Reads the configuration, answers --help, --check-config and
// --list, starts the log process, then runs the scheduler (scheduler.hpp) until a stop
// signal or, with --once, until the queue has nothing due.
#include "common/log.hpp"
#include "common/queue.hpp"
#include "common/startup.hpp"
#include "scheduler.hpp"
#include "settings.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <system_error>

#include <fmt/format.h>

namespace {

using smtp::smtpc::Settings;

// smtpc serves no client, so a short wait for a full log queue beats a lost log line.
constexpr std::chrono::milliseconds log_max_wait{100};

// --list: the queue like mailq, on stdout.
int list_queue(const Settings& s) {
    std::string out;
    if (auto ec = smtp::queue::Queue{s.queue_root}.summary(std::time(nullptr), out)) {
        std::fprintf(stderr, "smtpc: cannot list the queue %s: %s\n", s.queue_root.c_str(),
                     ec.message().c_str());
        return 1;
    }
    std::fputs(out.empty() ? "queue is empty\n" : out.c_str(), stdout);
    return 0;
}

int run(int argc, char** argv) {
    Settings settings;
    const auto table = smtp::smtpc::make_table(settings);
    const auto loaded = smtp::config::load(table, argc, argv, smtp::smtpc::default_config_file);
    for (const auto& e : loaded.errors) std::fprintf(stderr, "smtpc: %s\n", e.message().c_str());
    if (!loaded.ok()) return smtp::config::exit_config;
    smtp::smtpc::Resolved resolved;
    if (auto error = smtp::smtpc::resolve(settings, resolved); !error.empty()) {
        std::fprintf(stderr, "smtpc: %s\n", error.c_str());
        return smtp::config::exit_config;
    }
    if (loaded.action != smtp::config::Action::run) {
        std::fputs(loaded.output.c_str(), stdout);
        return 0;
    }
    if (settings.list) return list_queue(settings);
    if (auto error = smtp::create_default_directories(smtp::default_directories(settings)); !error.empty()) {
        std::fprintf(stderr, "smtpc: %s\n", error.c_str());
        return 1;
    }

    smtp::LogOptions log_options;
    log_options.program = "smtpc";
    log_options.file_path = settings.log_file;
    log_options.min_level = settings.log_level;
    auto started = smtp::start_log_process(log_options);  // before any thread exists
    if (started.error) {
        std::fprintf(stderr, "smtpc: %s\n", started.error.what.c_str());
        return 1;
    }
    int status = 0;
    {
        smtp::Logger log{started.process, smtp::LoggerOptions{.max_wait = log_max_wait}};
        log.info("started: hostname={} threads={} queue={}{}{}", resolved.hostname, settings.threads,
                 settings.queue_root, settings.once ? " once" : "", settings.flush ? " flush" : "");
        status = smtp::smtpc::run_scheduler(settings, resolved, log);
        log.info("stopped");
    }
    if (auto ec = smtp::stop_and_wait(started.process))
        std::fprintf(stderr, "smtpc: log process: %s\n", ec.message().c_str());
    return status;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
