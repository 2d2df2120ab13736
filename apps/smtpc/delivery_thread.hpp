// apps/smtpc/delivery_thread.hpp: one delivery thread: a pselect() loop over many
// outgoing SMTP connections, each driven by a ClientSession.
//
// Jobs arrive through the thread's Mailbox (post()). Per SessionKey (job.hpp: address,
// port and TLS level; for `verify` also the host name checked) the thread keeps at most
// one connection; jobs of a key with an open session that has not yet sent QUIT join
// it at once: they queue on it and go to its session
// one after another, each MAIL as soon as the last transaction is over (MAIL, RCPTs and
// DATA pipelined when the server offers PIPELINING); otherwise they wait for the
// endpoint's next connection. A session with nothing to do for idle_timeout sends QUIT
// (at once if jobs wait for the slot it holds). At most max_connections connections are
// open; further endpoints wait their turn, oldest job first.
//
// A connection: socket(SOCK_NONBLOCK), connect() (EINPROGRESS, then writable and
// SO_ERROR), within connect_timeout; then the ClientSession's own timeouts
// (command_timeout for every wait, the TLS handshake included). Message content is read from the queue
// (Queue::open_content) in chunks when the session asks for the body, and written while
// pending_output() is small, so memory stays bounded whatever the message size.
// Results go to the scheduler's Mailbox as JobResults, exactly one per job posted:
//  - not_connected: nothing of the job's transaction reached the server (its MAIL was
//    never written): the connection failed before (connect error or timeout, greeting
//    not 220, EHLO/HELO refused, peer closed or 421 before its transaction, a socket
//    >= FD_SETSIZE: "too many open files"), or the thread is stopping ("shutting
//    down"); every such job of that connection gets one, so the scheduler tries their
//    next endpoint. `error`: "connect to mx.example[192.0.2.1]:25: Connection refused",
//    "mx.example[192.0.2.1]:25: 554 5.7.1 No service", "shutting down".
//  - finished: every recipient's outcome and reply (one line, "250 2.0.0 Ok", or a
//    connection failure's reply made by the session, "451 4.4.2 Timed out waiting for
//    the server", when the connection failed after the job's MAIL was written). A job
//    whose content file is gone (the message was removed) finishes without a word to
//    the server: "451 4.3.0 Message content unavailable: No such file or directory".
//    Content that cannot be read once DATA is under way ends the connection (nothing
//    else ends DATA without delivering): that job is temporary, the jobs behind it
//    take the endpoint's next connection.
// STARTTLS (RFC 3207), by the job's TlsLevel: ClientConfig::tls is none for none, may
// for may, encrypt for encrypt and verify. On the session's tls_begin the thread runs
// the client handshake (tls::Stream, the host name of the endpoint for SNI and, at
// verify, for the certificate check against Resolved::tls_context's trust store),
// without blocking; then everything goes through TLS and the connection ends with
// close_notify. A handshake that fails or times out is the session's tls_failed
// (451 4.7.5): jobs not started are not_connected (the next MX), never retried in
// plaintext. encrypt/verify against a server without STARTTLS (or refusing it) is
// the session's tls_unavailable (451 4.7.4): not_connected too.
// Hostile servers (endless or over-long replies, garbage, NUL, silence after the final
// dot) end as the session's protocol_error or timeout: temporary failures, bounded
// memory, no crash.
// Log lines per recipient (Postfix's habit), from this thread:
//   <sid>: to=<rcpt>, relay=mx.example[192.0.2.1]:25, delay=1.2, attempts=1, status=sent (250 2.0.0 Ok)
// (status=deferred|bounced for 4xx|5xx; delay since the message's arrival; the
// scheduler logs routing failures and bounces.) Per connection, once TLS is up:
//   Verified TLS connection established to mx.example[192.0.2.1]:25: TLSv1.3 with cipher
//   TLS_AES_256_GCM_SHA384 (256/256 bits)
// ("Untrusted" when the certificate did not verify, as at may and encrypt), or
//   TLS handshake with mx.example[192.0.2.1]:25 failed: <OpenSSL's reason[: verify error]>
//
// Signals: the thread blocks every signal; its pselect() mask lets none through
// (the scheduler's thread takes SIGTERM, SIGINT, SIGHUP and tells threads by stop()).
//
// Thread safety: post(), stop() and the constructor's caller's join() may be called
// from the scheduler's thread; everything else runs on the delivery thread.
#ifndef SMTP_APPS_SMTPC_DELIVERY_THREAD_HPP
#define SMTP_APPS_SMTPC_DELIVERY_THREAD_HPP

#include "common/log.hpp"
#include "common/queue.hpp"
#include "job.hpp"
#include "settings.hpp"

#include <atomic>
#include <memory>
#include <system_error>
#include <thread>

namespace smtp::smtpc {

class DeliveryThread {
public:
    // All references must outlive the thread. `results` is the scheduler's Mailbox.
    DeliveryThread(const Settings& settings, const Resolved& resolved, const queue::Queue& queue, Logger& log,
                   Mailbox<JobResult>& results, unsigned index);
    ~DeliveryThread();  // stops (now) and joins if still running
    DeliveryThread(const DeliveryThread&) = delete;
    DeliveryThread& operator=(const DeliveryThread&) = delete;

    // Starts the thread. Errors: those of pipe2 and std::thread (EAGAIN).
    std::error_code start();
    // Hands over a job (any thread). After the thread has ended (stop), the job is
    // answered at once, on the caller's thread: not_connected, "shutting down".
    void post(Job job);
    // Asks the thread to end: gracefully (the transaction on each ready session
    // finishes, then QUIT; connections not yet ready are closed; every other job comes
    // back as not_connected "shutting down") or now (close every connection; every
    // unfinished job comes back as not_connected "shutting down", even one whose
    // transaction had begun). The thread ends once its last connection is closed.
    // Any thread; now after graceful is allowed.
    void stop(bool now);
    // Waits for the thread to end.
    void join();

private:
    struct Loop;  // delivery_thread.cpp: the pselect loop and its connections
    std::unique_ptr<Loop> loop_;
    std::thread thread_;
};

}  // namespace smtp::smtpc

#endif
