// apps/smtpd/master.hpp: smtpd's master process: starts the log process, binds, drops
// privileges, forks the workers and supervises them.
//
// Life of the master (DESIGN.md "Daemons"):
//  1. start the log process (before anything else is made, so every later step logs);
//  2. bind the listening sockets (port 25 needs root), then drop privileges (the TLS
//     certificate and key were loaded before, with the configuration);
//  3. open the mail root and the queue once to fail early with a clear message;
//  4. fork `workers` workers with fork() alone and wait for signals (sigwaitinfo on a
//     blocked set: no handler runs in the master):
//     - SIGCHLD: a worker that died is logged and replaced (at once, or after a second
//       when it died within a second of its start, so a crashing worker cannot spin);
//       a dead log process is replaced on the same queue;
//     - SIGTERM, SIGINT: the workers get SIGTERM (421 4.3.2 after shutdown_grace); the
//       master waits for them (SIGKILL after grace + 10 s), stops the log process and
//       exits 0;
//     - SIGHUP: the configuration is read again (same file, same command line). If it
//       is valid, a new generation of workers starts with it and the old ones drain
//       (SIGHUP: no new connections, their sessions end normally). Settings fixed at
//       start (port, bind, user, group, log_file, log_level, the directories) keep their
//       old values, with a warning naming each one that changed. The TLS certificate
//       and key are loaded again (as the unprivileged user: the key must be readable
//       by it), so the new workers present the new certificate. An invalid file, or
//       a certificate or key that does not load, is logged and changes nothing.
//
// Thread safety: single-threaded, like every process of smtpd.
#ifndef SMTP_APPS_SMTPD_MASTER_HPP
#define SMTP_APPS_SMTPD_MASTER_HPP

#include <string>
#include <vector>

namespace smtp::smtpd {

// Runs smtpd with main()'s arguments. Returns the exit status: 0 after a clean stop or
// --help/--check-config; config::exit_config (78) for a bad configuration; 1 when
// starting failed (log file, binding, privileges, mail root). In a forked worker it
// returns the worker's status, so that every process leaves through main().
int run_smtpd(int argc, char** argv);

}  // namespace smtp::smtpd

#endif
