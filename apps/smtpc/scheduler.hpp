// apps/smtpc/scheduler.hpp: smtpc's main loop on the main thread: finds due messages,
// routes them, hands jobs to the delivery threads, records results in the queue,
// bounces, removes finished messages.
//
// One pselect() loop, with SIGTERM, SIGINT and SIGHUP blocked in the whole process
// (the delivery threads inherit it) and let through only by pselect's mask (handlers
// only set flags); SIGPIPE is ignored. It watches:
//  - an inotify descriptor on the queue's envelope/ directory (IN_MOVED_TO: smtpd
//    renames every new envelope into place), so new mail is noticed at once; plus a scan
//    every scan_interval for messages whose next attempt has come (list_due);
//  - the Router's Resolver (MX and address lookups);
//  - the results Mailbox of the delivery threads.
//
// A message found due and not in flight is loaded; a message past its lifetime is
// expired (bounced) first. Its pending recipients are grouped by domain; each domain is
// routed; each group becomes a Job for its route's first endpoint, posted to
// delivery_thread_for(endpoint). A not_connected result moves the job to the next
// endpoint; when none is left, its recipients fail temporarily with the last error.
// A finished result is applied (retry_policy.hpp) and recorded at once, so a delivery
// is recorded as soon as its 250 is known: the envelope is written (Queue::update),
// except when the result ends a message's last job and leaves nothing pending and no
// bounce owed; then the message is removed without that write, together with the
// other messages finished by the same batch of results (one directory fsync). After a
// crash (kill -9) at most the messages whose 250 arrived but was not yet recorded or
// removed are sent again (at-least-once, never lost). When a message's last job of
// this attempt ends: a bounce if due (bounce.hpp), then the message is removed if
// finished, else it waits for its next attempt.
//
// On start: Queue::recover() (crash leftovers, 60 s grace; again every hour); the mail
// root must exist (an error, as for smtpd: bounces to local senders must be
// deliverable). Modes: --once (deliver what is due, each message at most once, then
// exit when nothing is in flight and a scan finds nothing new), --flush (the first scan
// takes every queued message, due or not; nothing is written for it).
// SIGTERM/SIGINT: stop taking new work, stop the threads gracefully, record what they
// report, exit 0; after command_timeout + 5 s, or at a second signal, the threads stop
// at once (unfinished jobs stay pending in the queue). SIGHUP: rescan the queue now.
//
// Log lines: "<sid>: from=<s>, size=N, nrcpt=K (queue active)", routing failures
// "<sid>: to=<r>, status=deferred|bounced (reason)", "<sid>: sender non-delivery
// notification: <bounce id or path>", "<sid>: removed".
//
// Thread safety: runs on the main thread; owns the delivery threads.
#ifndef SMTP_APPS_SMTPC_SCHEDULER_HPP
#define SMTP_APPS_SMTPC_SCHEDULER_HPP

#include "common/log.hpp"
#include "settings.hpp"

namespace smtp::smtpc {

// Runs until a stop signal (or, with settings.once, until nothing is due or in
// flight). Returns the exit status: 0 clean; 1 when it could not start (queue, mail
// root, resolver, threads), logged.
int run_scheduler(const Settings& settings, const Resolved& resolved, Logger& log);

}  // namespace smtp::smtpc

#endif
