// apps/smtpc/job.hpp: what the scheduler (main thread) and the delivery threads pass
// each other: jobs one way, results the other, through Mailboxes.
//
// A job is one message's pending recipients of one domain, routed to one endpoint
// (an IP address and port), with the TLS level its domain asks for (tls_level, or
// tls_policy for that domain). Every job of one endpoint goes to the same delivery
// thread (delivery_thread_for hashes address and port only), and a thread keeps at
// most one connection per SessionKey: the endpoint, the TLS level and, for `verify`,
// the host name the certificate is checked against. So there is at most one socket
// per remote host and level (and verified name) across all threads, and all messages
// for a host at one level share its session (a job arriving while that session is
// open joins it). Jobs of different levels never share one: a `none` job must not
// ride a TLS session any more than an `encrypt` job may ride a plaintext one, and a
// session verified for one name says nothing about another.
//
// Thread safety: Mailbox is safe for any number of producers and one consumer; jobs
// and results are values, moved across.
#ifndef SMTP_APPS_SMTPC_JOB_HPP
#define SMTP_APPS_SMTPC_JOB_HPP

#include "common/fd.hpp"
#include "common/network.hpp"

#include <smtp/client_session.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace smtp::smtpc {

// Where to connect. Endpoints are equal by address and port (the delivery thread's
// choice); a connection's key adds the TLS level (SessionKey, below).
struct Endpoint {
    IpAddress address;
    std::uint16_t port = 25;
    // The MX or route host name (the address when none): for logs, SNI, and the
    // name the certificate must carry at level verify.
    std::string host;

    // "mx.example[192.0.2.1]:25", as in Postfix's relay=.
    std::string to_string() const;
    friend bool operator==(const Endpoint& a, const Endpoint& b) noexcept {
        return a.address == b.address && a.port == b.port;
    }
};

// The delivery thread that owns every connection to `endpoint`, of `threads`.
std::size_t delivery_thread_for(const Endpoint& endpoint, std::size_t threads) noexcept;

// STARTTLS (RFC 3207) for one job; the names and meanings are Postfix's
// smtp_tls_security_level.
enum class TlsLevel : std::uint8_t {
    none,     // never STARTTLS, even when offered
    may,      // STARTTLS when offered, the certificate not required to verify; plaintext
              // only when the server does not offer STARTTLS or refuses it
    encrypt,  // TLS required (else 451 4.7.4, the mail stays queued); certificate not checked
    verify,   // TLS required, the chain verified against the trust store and the
              // certificate's name against the endpoint's host (the MX or route host)
};

// "none", "may", "encrypt", "verify": the setting's names.
std::string_view tls_level_name(TlsLevel level) noexcept;

// What the session of a job needs from ClientSession: `verify` is `encrypt` there (the
// certificate is checked by the TLS layer, not by the SMTP session).
TlsPolicy session_policy(TlsLevel level) noexcept;

// What a connection is opened for. Jobs with equal keys may share a session; the
// endpoint's host counts only for `verify`, whose certificate is checked against it
// (case-insensitively, as DNS names compare).
struct SessionKey {
    Endpoint endpoint;
    TlsLevel tls = TlsLevel::may;

    friend bool operator==(const SessionKey& a, const SessionKey& b) noexcept;
};

struct Job {
    std::uint64_t id = 0;                        // unique per scheduler run
    std::string message_id;                      // the queue id
    OutgoingMessage message;                     // sender, the recipients of this job, 8bit/smtputf8/size
    std::vector<std::size_t> recipient_indexes;  // message.recipients[i] is envelope recipient [i]
    Endpoint endpoint;
    // For the recipients' domain: tls_policy's level for it, else tls_level. A job
    // made elsewhere (the probe) gets the default of tls_level.
    TlsLevel tls = TlsLevel::may;
    std::int64_t arrival = 0;    // the message's arrival (seconds since the epoch), for delay=
    std::uint32_t attempts = 0;  // delivery attempts of the message so far, this one included

    SessionKey session_key() const { return SessionKey{endpoint, tls}; }
};

struct RecipientResult {
    std::size_t index = 0;  // into the envelope's recipients
    Outcome outcome = Outcome::temporary;
    std::string reply;  // the server's reply on one line ("550 5.1.1 No such user"), or ours
};

struct JobResult {
    enum class Kind : std::uint8_t {
        finished,       // every recipient has its result
        not_connected,  // no transaction started (connect failed, greeting 4xx/5xx or
                        // EHLO refused, peer closed before): try the next endpoint
    };
    std::uint64_t job_id = 0;
    std::string message_id;
    Kind kind = Kind::finished;
    std::vector<RecipientResult> recipients;  // finished: one per job recipient
    std::string error;                        // not_connected: why, for the log and last_error
    Endpoint endpoint;
};

// A queue of values with a pipe that is readable while the queue is not empty, so a
// pselect() loop wakes up for it. Move-only.
template <class T>
class Mailbox {
public:
    // Errors: those of pipe2.
    std::error_code open();
    int wake_fd() const noexcept { return read_end_.get(); }
    // Any thread. Returns false if the wake-up could not be written (the value is still
    // queued; the consumer finds it on its next turn).
    bool post(T value);
    // The consumer: takes everything queued and drains the pipe.
    std::deque<T> take_all();

private:
    std::mutex mutex_;  // guards items_ and signalled_
    std::deque<T> items_;
    Fd read_end_;
    Fd write_end_;
    bool signalled_ = false;  // a byte is in the pipe
};

template <class T>
std::error_code Mailbox<T>::open() {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return {errno, std::system_category()};
    read_end_ = Fd{fds[0]};
    write_end_ = Fd{fds[1]};
    return {};
}

template <class T>
bool Mailbox<T>::post(T value) {
    std::lock_guard lock{mutex_};
    items_.push_back(std::move(value));
    if (signalled_) return true;
    const char byte = 1;
    // One byte while the queue is not empty: the pipe never fills.
    signalled_ = ::write(write_end_.get(), &byte, 1) == 1;
    return signalled_;
}

template <class T>
std::deque<T> Mailbox<T>::take_all() {
    std::lock_guard lock{mutex_};
    char bytes[64];
    while (::read(read_end_.get(), bytes, sizeof bytes) > 0) {
    }
    signalled_ = false;
    return std::exchange(items_, {});
}

}  // namespace smtp::smtpc

#endif
