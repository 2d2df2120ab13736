/// @file
/// One SMTP server connection, without any I/O.
///
/// The embedding program owns the socket, the clock and every decision; the session
/// owns the protocol. Bytes received go in with feed(); replies come out of
/// pending_output(); what the client asks for comes out of next_event() and, at each
/// decision point, waits for the program's verdict, which may come much later (after
/// a DNS lookup or a disk write):
///
/// @code
///   smtp::ServerSession s{config};
///   s.feed(bytes);                          // buffers input (bounded)
///   while (auto ev = s.next_event()) {      // connect, hello, mail_from, rcpt_to, ...
///       if (ev->needs_verdict) s.accept();  // or s.reject(...), now or later
///       // tls_begin: send the output, TLS handshake, then s.tls_started()
///   }
///   send(s.pending_output()); s.consume_output(n_sent);
///   if (s.should_close()) close the socket;
/// @endcode
///
/// State machine (RFC 5321 §3, §4.1.4; one table in libsmtp/server_states.cpp):
/// start -(HELO/EHLO)-> ready -(MAIL)-> mail -(RCPT, one accepted)-> rcpt -(DATA)->
/// data -(final dot)-> ready. RSET keeps the HELO identity and returns to ready; an
/// accepted new HELO/EHLO resets any transaction (a refused one changes nothing,
/// §4.1.4); QUIT answers 221 and closes. Out of order: 503 5.5.1, checked before the
/// arguments. VRFY, EXPN: 252 (§7.3: a server that does not verify says 252). Known
/// but not offered (HELP, BDAT, AUTH; STARTTLS unless ServerExtensions::starttls):
/// 502 5.5.1. Unknown: 500 5.5.2. A connection refused with 5xx answers 503 to all
/// but QUIT (§3.1).
/// The session honours only the extensions its EHLO reply offered: after HELO, or
/// with an extension switched off, its MAIL/RCPT parameters get 555 5.5.4; without
/// ENHANCEDSTATUSCODES replies carry no enhanced status code.
///
/// Pipelining (RFC 2920): commands waiting in the input behind a pending verdict are
/// processed only after it, in order, so every reply matches its command.
///
/// Pregreet: bytes fed before the greeting was produced and fully consumed were not
/// sent in reply to it; once the connection is accepted the session answers them
/// 554 5.5.0 (after the greeting), emits protocol_error and closes.
///
/// STARTTLS (RFC 3207), when ServerExtensions::starttls: offered in the EHLO reply
/// until TLS is on (§4.2: not after). Accepted only after HELO/EHLO and outside a
/// transaction (else 503 5.5.1), without argument (else 501 5.5.4); inside TLS
/// 503 5.5.1 "TLS already active". Accepted, it is answered "220 2.0.0 Ready to
/// start TLS" and gives a tls_begin event; from the end of the STARTTLS line on,
/// every byte already buffered and every byte fed until tls_started() is discarded,
/// never parsed (plaintext injected before the handshake, CVE-2011-0411). The
/// program sends the 220, runs the handshake, and calls tls_started(): the session
/// forgets what the client said (HELO name, transaction), goes back to "greeted,
/// no HELO" (§4.2) and reads the decrypted stream. A failed handshake: the program
/// closes the connection; nothing can be said in plaintext any more, so timeout()
/// and shutdown() during the handshake close without a reply.
/// ServerConfig::require_tls: MAIL, RCPT and DATA before TLS get 530 5.7.0.
///
/// Memory: input is buffered up to ServerConfig::input_buffer octets (allocated once,
/// at least two command lines). Output never exceeds ServerConfig::output_buffer: a
/// command is processed only while the worst a step can write (8 reply lines of
/// Limits::reply_line octets, 9 with STARTTLS offered: the EHLO reply and a 421)
/// still fits, so output_buffer is raised to at least that; input processing pauses
/// until the program consumes output. No peer input can make the session hold more.
///
/// Errors: peer errors become replies (and protocol_error events); every 4xx/5xx
/// reply, the program's rejections included, counts towards max_errors; a message
/// accepted after its final dot sets the count back to zero. Misuse by
/// the program (a verdict nobody asked for, a reply code that is not 4xx/5xx) is a
/// Usage value returned by the call, and changes nothing. Exceptions: none but
/// std::bad_alloc, and only from the functions not marked noexcept.
///
/// Thread safety: a session is a value used by one thread at a time.
#ifndef SMTP_SERVER_SESSION_HPP
#define SMTP_SERVER_SESSION_HPP

#include <smtp/command.hpp>
#include <smtp/data.hpp>
#include <smtp/error.hpp>
#include <smtp/limits.hpp>
#include <smtp/reply.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace smtp {

/// The ESMTP extensions the server offers in its EHLO reply, and honours.
struct ServerExtensions {
    bool pipelining = true;             ///< RFC 2920
    bool size = true;                   ///< RFC 1870: "SIZE <Limits::message_size>"
    bool eight_bit_mime = true;         ///< RFC 6152
    bool enhanced_status_codes = true;  ///< RFC 2034
    bool smtputf8 = true;               ///< RFC 6531
    bool dsn = false;                   ///< RFC 3461: without it RET/ENVID/NOTIFY/ORCPT get 555
    /// RFC 3207. Off by default: only a program that can run a TLS handshake (and
    /// call tls_started()) may offer it.
    bool starttls = false;
};

/// What a ServerSession is made with. Plain data; the session keeps its own copy.
struct ServerConfig {
    std::string hostname = "localhost";  ///< in the greeting and the EHLO reply
    Limits limits;                       ///< every size limit
    ParseOptions leniency;               ///< smtputf8 is set by the session, per transaction
    DataOptions data;                    ///< what to do with bad message data
    ServerExtensions extensions;         ///< what the EHLO reply offers

    /// RFC 3207 §4: MAIL, RCPT and DATA before TLS get "530 5.7.0 Must issue a
    /// STARTTLS command first". The program sets it per connection (say, for
    /// clients that may relay); §4 forbids it on a publicly-referenced server
    /// ("MUST NOT require use of the STARTTLS extension in order to deliver mail
    /// locally"). Meaningless without extensions.starttls: nothing could be sent.
    bool require_tls = false;

    /// RFC 5321 §4.5.3.1.8: at least 100 recipients must be accepted; more: 452 4.5.3.
    std::size_t max_recipients = 100;

    /// Negative replies (4xx/5xx) one session may earn without delivering a message
    /// before it is ended with 421 4.7.0 (Postfix smtpd_hard_error_limit 20: "errors
    /// a remote SMTP client is allowed to make without delivering mail").
    std::size_t max_errors = 20;

    /// RFC 5321 §4.5.3.2.7: a server should wait at least 5 minutes for a command.
    std::uint32_t command_timeout_ms = 300'000;
    /// The DATA timeout: it applies between chunks of message data.
    std::uint32_t data_timeout_ms = 300'000;

    /// Input buffer in octets, allocated once when the session is made (at least two
    /// command lines).
    std::size_t input_buffer = 64 * 1024;
    /// Output buffer in octets, allocated once when the session is made (at least
    /// what one step can write: see Memory in server_session.hpp).
    std::size_t output_buffer = 16 * 1024;
};

/// What the program did wrong, if anything, when it called a verdict function.
enum class Usage : std::uint8_t {
    ok,                  ///< nothing: the call did its work
    no_verdict_pending,  ///< accept()/reject() with no event waiting for one
    bad_reply_code,      ///< reject() with a code that is not 4xx/5xx
    closed,              ///< the session is closed
    output_pending,      ///< tls_started() before the 220 was consumed (it must go out in plaintext)
};

/// One thing that happened on the connection, from ServerSession::next_event().
///
/// Views into the session's input buffer (`name`, `command` and the views of the
/// Command it points to, `data`): valid until the verdict for this event (events that
/// need one; if the session closes first, while it lives) or the next next_event()
/// call (the others). feed() never invalidates them; nor does moving the session.
struct ServerEvent {
    /// What happened, and whether the program owes a verdict.
    enum class Kind : std::uint8_t {
        connect,         ///< a new connection: accept (220 greeting) or reject (554 5.7.1)?
        hello,           ///< HELO/EHLO: `name`, `esmtp`; verdict (250 or reject)
        mail_from,       ///< MAIL: `command` (path, parameters); verdict
        rcpt_to,         ///< RCPT: `command`; verdict (250 2.1.5 or reject)
        data_begin,      ///< DATA was answered 354; message data follows. No verdict
        data_chunk,      ///< `data`: a piece of message content (dot-unstuffed). No verdict
        message_end,     ///< the final dot. `error` ok: verdict (250 or reject);
                         ///< else the session already answered (552, 550) and wants none
        reset,           ///< RSET (always), or an accepted new HELO/EHLO (after its
                         ///< hello event), ended a transaction. No verdict
        quit,            ///< QUIT was answered 221; the session closes. No verdict
        protocol_error,  ///< the session answered an error (`error`, `reply_code`). No verdict
        closing,         ///< the session is closing on its own (421: timeout, shutdown,
                         ///< too many errors, a 421 verdict; 554: pregreet; or the
                         ///< connection was refused with 4xx). `reply_code`; 0 when
                         ///< nothing could be said (during the TLS handshake). No verdict
        tls_begin,       ///< STARTTLS was answered 220: send the output, run the TLS
                         ///< handshake, then call tls_started() (or close). No verdict
    };
    Kind kind;                   ///< what happened
    bool needs_verdict = false;  ///< nothing proceeds until accept() or reject()

    std::string_view name{};           ///< hello: the HELO/EHLO argument
    bool esmtp = false;                ///< hello: EHLO
    const Command* command = nullptr;  ///< mail_from, rcpt_to (and hello)
    std::string_view data{};           ///< data_chunk
    Errc error = Errc::ok;             ///< message_end, protocol_error
    int reply_code = 0;                ///< protocol_error, closing: what was answered
};

/// One SMTP server connection, without any I/O.
///
/// @copydetails server_session.hpp
class ServerSession {
public:
    /// A session for a new connection: its first event is connect. Allocates the
    /// buffers (ServerConfig::input_buffer, output_buffer) now; throws std::bad_alloc.
    explicit ServerSession(ServerConfig config);
    /// Frees the buffers: every view the session handed out ends.
    ~ServerSession();
    /// Takes over the connection of the session moved from; views that one handed out
    /// stay valid. A moved-from session may only be destroyed or assigned to.
    ServerSession(ServerSession&&) noexcept;
    /// As the move constructor; the session assigned to ends as if destroyed.
    ServerSession& operator=(ServerSession&&) noexcept;

    /// @name Input from the network
    /// @{

    /// Buffers up to input_room() octets of `bytes`; returns how many it took (the
    /// rest must be offered again later). Parses nothing: next_event() does. Once
    /// the session is closed, and from tls_begin to tls_started(), input is
    /// discarded: all of it is "taken".
    std::size_t feed(std::string_view bytes);
    /// What feed() would take now. When input is discarded: SIZE_MAX (want_read() is
    /// false then).
    std::size_t input_room() const noexcept;

    /// The next thing that happened, or nullopt when nothing can proceed: more input
    /// is needed, a verdict is pending, output must drain first, or it is closed.
    /// Its views are valid as ServerEvent says.
    std::optional<ServerEvent> next_event();
    /// @}

    /// @name Verdicts
    /// @{

    /// The default positive reply for the pending event (220 greeting, 250 ...).
    /// `text` replaces the default text ("Ok: queued as 4F2A1"); in the greeting it
    /// follows the host name. It is read during the call only.
    /// @return Usage::ok; no_verdict_pending when no event waits for a verdict,
    ///         closed once closed: those change nothing.
    Usage accept(std::string_view text = {});
    /// A 4xx or 5xx reply of the program's choosing; the text is cut to fit
    /// one reply line. A connect rejected with 4xx closes the session after the
    /// reply; with 5xx the session answers 503 to all but QUIT (RFC 5321 §3.1). A
    /// 421 closes the session whatever the event (RFC 5321 §3.8).
    /// @return Usage::ok; bad_reply_code for a code that is not 4xx/5xx (or not in
    ///         the reply grammar), no_verdict_pending, closed: those change nothing.
    Usage reject(int code, EnhancedStatus status, std::string_view text);
    /// @}

    /// @name Input from the program's clock and lifecycle
    /// @{

    /// The timeout of timeout_ms() expired: 421 4.4.2 and close. Closes without a
    /// reply during the TLS handshake; nothing once closed.
    void timeout();
    /// The server is stopping: 421 4.3.2 and close (RFC 5321 §3.8). Closes without a
    /// reply during the TLS handshake; nothing once closed.
    void shutdown();
    /// How long the session may wait for the peer now; 0 when it waits for nothing
    /// from the peer (a verdict is pending, or it is closing). During the TLS
    /// handshake: command_timeout_ms, a bound for the handshake too.
    std::uint32_t timeout_ms() const noexcept;
    /// @}

    /// @name TLS (RFC 3207)
    /// @{

    /// The TLS handshake that tls_begin asked for succeeded: from now on feed() takes
    /// the decrypted stream. The session is back to "greeted, no HELO" and has
    /// forgotten the HELO name and any transaction; the client must say EHLO again.
    /// @return Usage::ok; Usage::no_verdict_pending when no handshake is awaited,
    ///         output_pending while the 220 (or any output) is not yet consumed,
    ///         closed once closed; each changes nothing.
    Usage tls_started();
    bool in_tls() const noexcept;  ///< tls_started() was called
    /// @}

    /// @name Output to the network
    /// @{

    /// Bytes to send, valid until the next non-const call.
    std::string_view pending_output() const noexcept;
    /// The first `n` bytes of pending_output() were sent (at most all of them).
    void consume_output(std::size_t n) noexcept;

    bool want_read() const noexcept;   ///< input is useful now (room, not closing, no handshake)
    bool want_write() const noexcept;  ///< output is pending
    /// The conversation is over and all output has been consumed: close the socket.
    bool should_close() const noexcept;
    /// @}

    /// @name What the session knows
    /// @{

    /// "SMTP", "ESMTP" or "UTF8SMTP" (RFC 3848, RFC 6531 §3.7.3), for Received:;
    /// in TLS "ESMTPS" or "UTF8SMTPS" (STARTTLS is itself an ESMTP extension, so a
    /// HELO after TLS still says ESMTPS). A string literal: valid for the life of the
    /// program.
    std::string_view protocol() const noexcept;
    /// The last accepted HELO/EHLO name; empty after tls_started() until the next.
    /// Valid until the next non-const call.
    std::string_view helo_name() const noexcept;
    /// @}

private:
    struct Impl;  // libsmtp/server_session.cpp: state, buffers, decoder
    std::unique_ptr<Impl> impl_;
};

/// The fields of the Received: trace header a server adds to each message (RFC 5321
/// §4.4, RFC 5322 §3.6.7). received_header() makes it, folded at 78 columns, ending
/// in CRLF:
/// @code{.unparsed}
/// Received: from helo.example (rdns.example [192.0.2.1])
///         by mx.example (libsmtp) with ESMTP id 4F2A1
///         for <rcpt@example.org>; Sun, 22 Nov 2026 05:53:11 +0000
/// @endcode
/// The views are the caller's; received_header() reads them during the call only.
struct ReceivedFields {
    std::string_view helo;          ///< the client's HELO/EHLO name
    std::string_view reverse_name;  ///< the client's verified reverse-DNS name, or empty
    std::string_view address;       ///< the client's IP address, as text
    std::string_view by;            ///< this server's host name
    std::string_view protocol;      ///< ServerSession::protocol()
    std::string_view id;            ///< the queue id
    std::string_view recipient;     ///< "for <...>": only when there is one recipient
    /// The date, broken down by the caller (libsmtp reads no clock): the year.
    int year, month, day, hour, minute, second;
    int weekday;             ///< 0 = Sunday
    int utc_offset_minutes;  ///< the date's offset from UTC: +0100 is 60
    /// @var month
    /// 1-12.
    /// @var day
    /// Day of the month.
    /// @var hour
    /// Hour of the day, 0-23.
    /// @var minute
    /// 0-59.
    /// @var second
    /// 0-60 (60: a leap second).
};
/// The Received: header of `fields`, folded, ending in CRLF. Every field is cut down
/// to the characters its place in the grammar allows (others become "_", or "?" in
/// the recipient), so no input can end the header early or add a clause of its own.
/// Throws std::bad_alloc.
std::string received_header(const ReceivedFields& fields);

}  // namespace smtp

#endif
