// apps/smtpd/connection.hpp: one client connection of an smtpd worker: its socket, its
// smtp::ServerSession, its mail Transaction, and the verdicts (Policy, storage) that
// the worker's select() loop drives through the on_*() calls.
//
// The loop owns the waiting; a Connection owns what happens on its socket:
//  - on_readable() reads at most input_room() octets (the session takes all of them,
//    so nothing is buffered outside it), feeds them and runs the events;
//  - every event is answered at once, except the connect verdict when the reverse
//    DNS lookup runs (the worker starts it and hands the result to on_reverse());
//  - output is sent with MSG_NOSIGNAL|MSG_DONTWAIT until the socket would block.
//
// STARTTLS (RFC 3207), when a tls::Context is loaded: on tls_begin the 220 goes out in
// plaintext; once the session's output is empty a tls::Stream takes the socket and
// the handshake runs as far as the socket allows each time select() reports what the
// stream asked for. Done: session_.tls_started(), a "TLS connection established" line,
// and from then on every read and write goes through the Stream. Failed: a "TLS
// handshake failed" line and the close (no plaintext reply is possible any more). The
// session's timeout_ms() (the command timeout) bounds the whole handshake from the
// 220 on. When a Stream holds decrypted input select() cannot see, has_ready_input()
// says so and the worker calls on_readable() without waiting.
//
// Invariants:
//  - 250 after the final dot only when Transaction::commit() succeeded; a peer that
//    vanishes, a timeout, a shutdown: the transaction is aborted, nothing delivered.
//  - Once closed() the socket is closed, the transaction aborted and the disconnect
//    line logged; nothing else happens to the Connection (the worker drops it).
//  - No event view is kept past its lifetime: what is needed later is copied.
//  - No byte read with recv() after tls_begin reaches the session (the session
//    discards what was buffered behind STARTTLS: CVE-2011-0411), and once the Stream
//    exists the socket is never read or written but through it.
//
// Thread safety: a Connection belongs to its worker's one thread.
#ifndef SMTP_APPS_SMTPD_CONNECTION_HPP
#define SMTP_APPS_SMTPD_CONNECTION_HPP

#include "common/fd.hpp"
#include "common/log.hpp"
#include "common/maildir.hpp"
#include "common/network.hpp"
#include "common/queue.hpp"
#include "common/resolver.hpp"
#include "common/tls.hpp"
#include "policy.hpp"
#include "settings.hpp"
#include "transaction.hpp"

#include <smtp/server_session.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace smtp::smtpd {

using Clock = std::chrono::steady_clock;

// What every connection of a worker shares. All of it outlives the connections.
struct ConnectionContext {
    const Settings* settings = nullptr;
    const Resolved* resolved = nullptr;
    const Policy* policy = nullptr;
    const MailRoot* mail_root = nullptr;
    const queue::Queue* queue = nullptr;
    Logger* log = nullptr;
};

// The ServerSession configuration smtpd's settings call for: STARTTLS offered when a
// certificate is loaded; required (RFC 3207 §4, 530 5.7.0) when require_tls is set and
// the client `may_relay`, never for mail to local domains from other clients.
ServerConfig make_server_config(const Settings& settings, const Resolved& resolved, bool may_relay);

class Connection {
public:
    // Takes the accepted, non-blocking socket; `peer` is the client's address as
    // accept() reported it. `context` must outlive the Connection. Nothing is sent
    // before start().
    Connection(std::uint64_t id, Fd socket, const IpAddress& peer, const ConnectionContext& context);
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;
    ~Connection();

    // Begins the conversation. With wait_for_rdns the connect verdict (and the
    // "connect from" line) waits for on_reverse(); otherwise it is given now.
    void start(bool wait_for_rdns, Clock::time_point now);
    // The reverse lookup's result: logs the connect line, gives the connect verdict
    // (450 4.7.25 for a name that is not confirmed when reject_unknown_client is set).
    void on_reverse(const ReverseResult& result, Clock::time_point now);

    // The socket is readable (select() said so, or has_ready_input()) / writable.
    // `buffer` (shared by the worker's connections) takes what is read; on_writable()
    // may read too, when a TLS read waited for the socket to be writable.
    void on_readable(std::span<char> buffer, Clock::time_point now);
    void on_writable(std::span<char> buffer, Clock::time_point now);
    // Acts on a passed deadline() (421 4.4.2, or close); nothing otherwise.
    void on_timer(Clock::time_point now);
    // The server is stopping: 421 4.3.2, what can be sent now is sent, closed.
    void shutdown(Clock::time_point now);

    std::uint64_t id() const noexcept { return id_; }
    int fd() const noexcept { return socket_.get(); }
    bool closed() const noexcept { return closed_; }
    // What to select() for: what the session wants and, in TLS, what the stream's
    // last call asked for (a TLS write may need the socket readable, a read writable).
    bool wants_read() const noexcept;
    bool wants_write() const noexcept;
    // The TLS stream holds decrypted input the session has room for: select() would
    // not report it, so on_readable() must be called without waiting.
    bool has_ready_input() const noexcept;
    // The earliest deadline on this connection, if any.
    std::optional<Clock::time_point> deadline() const noexcept;

    // The reverse lookup in flight for this connection (0: none), for the worker to
    // cancel when the connection closes first.
    Resolver::LookupId lookup() const noexcept { return lookup_; }
    void set_lookup(Resolver::LookupId id) noexcept { lookup_ = id; }

private:
    // Where the connection is with TLS.
    enum class TlsPhase : std::uint8_t {
        off,          // plaintext; no STARTTLS yet
        pending,      // STARTTLS answered: the 220 is going out in plaintext
        handshaking,  // the Stream runs the handshake
        on,           // every byte goes through the Stream
    };

    // Commands counted for the disconnect line, in the order it lists them.
    enum Counted : std::size_t { helo, ehlo, starttls, mail, rcpt, data, rset, quit, error, counted_kinds };

    // An accepted recipient of the transaction in progress, for the log lines.
    struct Recipient {
        std::string address;
        Route route;
        std::string mailbox;  // local only
    };

    // The conversation: events, verdicts, output.
    void advance(Clock::time_point now);
    bool run_events();
    void on_event(const ServerEvent& event);
    void give_connect_verdict();
    void on_hello(const ServerEvent& event);
    void on_mail_from(const ServerEvent& event);
    void on_rcpt_to(const ServerEvent& event);
    void on_data_begin();
    void on_message_end(const ServerEvent& event);
    void commit_message();
    void defer_message(std::error_code ec, std::string_view sid);
    void end_transaction() noexcept;
    void forget_envelope() noexcept;
    void check(Usage usage, std::string_view verdict);

    // The socket.
    bool flush(Clock::time_point now);
    std::size_t send_some(std::string_view out);
    void read_tls(std::span<char> buffer, Clock::time_point now);
    void start_handshake(Clock::time_point now);
    void continue_handshake(Clock::time_point now);
    void lose(int error_number);
    void lose(std::string_view why);
    void close_now();
    void time_out(Clock::time_point now);
    void log_connect();

    std::optional<Clock::time_point> read_deadline() const noexcept;
    std::optional<Clock::time_point> write_deadline() const noexcept;
    std::string_view client_name() const noexcept;
    std::string counts_text() const;

    std::uint64_t id_;
    Fd socket_;
    IpAddress peer_;
    const ConnectionContext* context_;
    bool may_relay_ = false;  // before session_: its configuration depends on it
    ServerSession session_;
    Transaction transaction_;

    std::string address_;                        // the peer as text (IPv4-mapped shown as IPv4)
    std::string name_;                           // forward-confirmed reverse name, or empty
    std::optional<ReverseResult::Status> rdns_;  // none: no lookup made (yet)
    Resolver::LookupId lookup_ = 0;

    bool connect_pending_ = false;  // the connect event waits for its verdict
    bool rdns_pending_ = false;     // ... and for on_reverse()
    bool ending_ = false;           // we called timeout() or shutdown()
    bool closed_ = false;
    bool last_was_hello_ = false;         // a reset event right after hello is the new HELO's
    std::string_view stage_ = "CONNECT";  // the last command, for "timeout after"

    std::string sender_;  // the transaction's MAIL FROM, as written
    std::vector<Recipient> recipients_;
    bool in_data_ = false;
    std::error_code open_error_;  // Transaction::open() failed: answered after the dot

    std::array<unsigned, counted_kinds> counts_{};

    // TLS. The stream exists from the handshake's start to the close. What its last
    // read and last write asked for (done: nothing) is what select() must watch for
    // them, besides what the session wants.
    TlsPhase tls_phase_ = TlsPhase::off;
    std::optional<tls::Stream> tls_;
    tls::Stream::Status handshake_wants_ = tls::Stream::Status::want_read;
    tls::Stream::Status read_wants_ = tls::Stream::Status::done;
    tls::Stream::Status write_wants_ = tls::Stream::Status::done;
    bool tls_broken_ = false;  // a call failed: the stream is unusable, no close_notify
    std::string tls_summary_;  // "TLSv1.3 with cipher ... (256/256 bits)" once on

    // Deadlines: the session's timeout from the last progress; the write timeout from
    // when output stopped draining; a last bound once we gave up on the client.
    Clock::time_point last_progress_;
    std::optional<Clock::time_point> stalled_since_;
    std::optional<Clock::time_point> linger_until_;
};

}  // namespace smtp::smtpd

#endif
