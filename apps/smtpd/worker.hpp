// apps/smtpd/worker.hpp: one worker process of smtpd: a select() loop over the
// listening sockets (shared by every worker) and its client connections.
//
// The master forks each worker after binding and after dropping privileges; the
// worker opens the mail root and the queue itself, makes its DNS resolver, and runs
// until told to stop.
//
// The loop (non-blocking sockets only; nothing but disk writes and fsync waits):
//  - Accepts until EAGAIN. FD_SETSIZE is a wall: a descriptor >= FD_SETSIZE never goes
//    into an fd_set; such a connection gets a best-effort "421 4.3.2 <hostname> Too
//    many connections, try again later" and is closed at once. max_connections is cut
//    so that sockets stay below FD_SETSIZE; at max_connections the worker stops
//    accepting and does not watch the listening sockets, so siblings take the load (or
//    the client waits in the backlog). After EMFILE, ENFILE, ENOBUFS or ENOMEM it stops
//    watching them until a connection closes or a second has passed.
//  - Each connection drives a ServerSession: bytes read go to feed(), events get their
//    verdicts (Policy, Transaction), pending output is written with MSG_NOSIGNAL.
//  - The connect verdict waits for the reverse DNS lookup when rdns is on (Resolver in
//    the same select()); reject_unknown_client turns a name that is not confirmed into
//    450 4.7.25 (RFC 7372). With rdns off there is no name to judge: no rejection.
//  - Timeouts: the session's timeout_ms() (command, data) and a write timeout of the same
//    length for a client that stops reading; on expiry timeout() (421 4.4.2) and, if even
//    that cannot be written, close (after a read timeout at most 5 s more for the 421).
//  - A peer that closes or resets: the transaction is aborted, nothing is delivered.
//  - STARTTLS (tls_cert and tls_key set): after the plaintext 220 the handshake runs in
//    the same loop, never blocking (select() watches what the TLS stream asks for),
//    bounded by the command timeout; then every byte goes through TLS. A TLS stream
//    holding decrypted input that select() cannot see is served without waiting.
//
// Signals (handlers write to a self-pipe watched by the same select()):
//  - SIGTERM, SIGINT: stop accepting, close the listening sockets (the worker's copies:
//    the caller must not use setup.listeners once run_worker returns); sessions that end
//    within shutdown_grace end normally; then shutdown() (421 4.3.2) for the rest; exit
//    when all are closed.
//  - SIGHUP: drain: stop accepting, let sessions end on their own (timeouts still
//    apply), exit. The master has started workers with the new settings meanwhile.
//  - SIGPIPE is ignored.
//
// Log lines (one per event, Postfix's habit; sid is queue::short_id of the message id):
//   connect from name[ip] rdns=confirmed|unconfirmed|no_name|temporary|off
//   NOQUEUE: reject: RCPT from name[ip]: 554 5.7.1 <rcpt>: Relay access denied; from=<s> to=<r> helo=<h>
//   <sid>: client=name[ip], helo=<h>, id=<full id>
//   <sid>: from=<s>, size=N, nrcpt=K
//   <sid>: to=<r>, status=sent, delivered=<mail_root>/<mailbox>/new/<file>
//   <sid>: to=<r>, status=queued
//   <sid>: status=deferred (452 4.3.1 ... : No space left on device)
//   disconnect from name[ip] ehlo=1 mail=1 rcpt=2 data=1 quit=1 commands=6
//     (kinds seen: helo ehlo starttls mail rcpt data rset quit, errors= for commands the session
//     refused itself; commands= is their total. NOOP, VRFY... make no event: not counted.)
//   TLS connection established from name[ip]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
//   TLS handshake failed from name[ip]: <OpenSSL's or the system's reason>
//   lost connection after DATA from name[ip]     (the peer closed or reset, no QUIT)
//   timeout after DATA from name[ip]     (the last command seen: CONNECT, EHLO, STARTTLS, ...)
// name is "unknown" unless the reverse name is confirmed.
//
// Thread safety: a worker is single-threaded.
#ifndef SMTP_APPS_SMTPD_WORKER_HPP
#define SMTP_APPS_SMTPD_WORKER_HPP

#include "common/log.hpp"
#include "settings.hpp"

#include <vector>

namespace smtp::smtpd {

struct WorkerSetup {
    const Settings* settings = nullptr;
    const Resolved* resolved = nullptr;
    std::vector<int> listeners;  // non-blocking listening sockets, shared with the siblings
    Logger* log = nullptr;       // this worker's Logger
    unsigned index = 0;          // worker number, for log lines
};

// Runs in the forked worker. Returns the process's exit status: 0 after a clean stop;
// 1 when it could not start (mail root, queue or resolver unusable: logged as an error).
int run_worker(const WorkerSetup& setup);

}  // namespace smtp::smtpd

#endif
