/// @file
/// One SMTP client connection, without any I/O.
///
/// The program queues messages; the session greets, says EHLO (HELO if EHLO is
/// refused with 5xx), learns the server's extensions and sends each message: MAIL,
/// RCPTs, DATA, the body through the DataEncoder, the final dot, RSET after a
/// failed transaction, QUIT at the end. With PIPELINING offered, MAIL, the RCPTs and
/// DATA go out as one group (RFC 2920) and each reply is matched to its command;
/// if no RCPT was accepted but DATA still got 354, an empty message (a lone ".")
/// ends it (RFC 2920 §3.1). One transaction at a time: the next MAIL goes out once
/// every reply of the last one is in.
///
/// @code
///   smtp::ClientSession c{config};
///   smtp::OutgoingMessage m;
///   m.sender = "a@example.org";
///   m.recipients = {"b@example.net"};
///   auto id = c.submit(std::move(m));
///   c.quit();                                    // QUIT once every message is done
///   loop: c.feed(received); send(c.pending_output()); c.consume_output(n);
///         while (auto ev = c.next_event()) {
///             need_body:        c.write_body(chunk)... c.end_body();
///             recipient_result: record ev->outcome and ev->reply for that recipient
///             tls_begin:        TLS handshake; c.tls_started() or c.tls_failed(why)
///         }
/// @endcode
///
/// STARTTLS (RFC 3207), by ClientConfig::tls. With `may` or `encrypt`, when the
/// EHLO reply offers STARTTLS, STARTTLS goes out before anything else. Its 220 gives
/// a tls_begin event: the program runs the TLS handshake, then calls tls_started()
/// (the session forgets the capabilities, says EHLO again, and goes on over TLS,
/// RFC 3207 §4.2) or tls_failed(reason) (a connection-level `failed`, tls_failed,
/// "451 4.7.5 TLS handshake failed: reason", every recipient temporary; no QUIT: the
/// connection is mid-handshake). Any byte the server sends after its 220 and
/// before the handshake is plaintext injected where none can come: a
/// protocol_error, and the connection fails (RFC 3207 §4.2 bars trusting anything
/// from before the handshake; the client side of CVE-2011-0411).
/// No STARTTLS offered (or HELO only): `may` goes on in plaintext; `encrypt` fails
/// with tls_unavailable, "451 4.7.4 TLS is required, but STARTTLS was not offered",
/// and sends QUIT. STARTTLS answered 4xx/5xx: `may` goes on in plaintext on the same
/// connection, as Postfix does at level "may"; `encrypt` fails with
/// tls_unavailable ("451 4.7.4 TLS is required, but STARTTLS was refused: <reply>")
/// and sends QUIT. (421 is closed_by_server, as always.) Enhanced codes as Postfix
/// uses them: RFC 3463 X.7.4 "security features not supported", X.7.5
/// "cryptographic failure"; 451 because another try (or another MX) may work.
///
/// `ready` comes once per connection, when the capabilities are final: after the
/// EHLO (or HELO) that follows the handshake; without TLS after the plain one (with
/// `may`: after STARTTLS was refused). Messages submitted meanwhile wait for it.
///
/// Every recipient of every submitted message gets exactly one recipient_result,
/// then its message one message_result, whatever happens to the connection: a
/// connection-level failure (greeting refused, protocol error, timeout, peer closed)
/// is reported once as `failed` and then finishes every unfinished recipient, so a
/// queue runner can decide retry or bounce per recipient.
///
/// Order: a reply answers the oldest command the program has written (taken with
/// consume_output()); a reply to a command not yet written, or with none awaiting
/// one, is a protocol error (a 421 is always closed_by_server, RFC 5321 §3.8). So
/// consume what you send before you feed what comes back.
///
/// Memory: server replies are parsed within Limits (reply_line, reply_lines); a
/// hostile server cannot make the session hold more: after feed() at most one
/// partial reply line is kept. The output grows by the commands of one transaction
/// and by what the program writes with write_body(); write while pending_output()
/// is small. The events queue holds at most one result per submitted recipient.
///
/// Errors: the server's errors and the connection's are events (recipient_result,
/// message_result, failed), never exceptions. Misuse by the program is a Usage value
/// returned by the call, and changes nothing. Exceptions: none but std::bad_alloc,
/// and only from the functions not marked noexcept.
///
/// Thread safety: a session is a value used by one thread at a time.
#ifndef SMTP_CLIENT_SESSION_HPP
#define SMTP_CLIENT_SESSION_HPP

#include <smtp/command.hpp>
#include <smtp/error.hpp>
#include <smtp/limits.hpp>
#include <smtp/reply.hpp>
#include <smtp/server_session.hpp>  // Usage

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace smtp {

/// When to use STARTTLS (RFC 3207); the names are Postfix's smtp_tls_security_level.
enum class TlsPolicy : std::uint8_t {
    none,     ///< never, even when offered
    may,      ///< when offered; else, or when refused, in plaintext (opportunistic)
    encrypt,  ///< always: a server that does not offer it or refuses it gets no mail
};

/// What a ClientSession is made with. Plain data; the session keeps its own copy.
struct ClientConfig {
    /// Our name in EHLO/HELO: a domain or an address literal (RFC 5321 §4.1.1.1).
    /// Anything else is replaced by "localhost", so no command can be injected.
    std::string helo_name = "localhost";
    Limits limits;               ///< every size limit (replies, command lines)
    bool use_pipelining = true;  ///< pipeline when the server offers it
    /// STARTTLS: only for a program that can run a TLS handshake (tls_begin).
    TlsPolicy tls = TlsPolicy::none;

    /// @name RFC 5321 §4.5.3.2: how long to wait for each reply
    /// @{
    std::uint32_t greeting_timeout_ms = 300'000;    ///< §4.5.3.2.1: 5 minutes
    std::uint32_t command_timeout_ms = 300'000;     ///< §4.5.3.2.2-3: MAIL, RCPT, others
    std::uint32_t data_timeout_ms = 120'000;        ///< §4.5.3.2.4: DATA initiation
    std::uint32_t data_block_timeout_ms = 180'000;  ///< §4.5.3.2.5: while sending data
    std::uint32_t data_end_timeout_ms = 600'000;    ///< §4.5.3.2.6: reply to the final dot
    /// @}
};

/// What the server offered in its EHLO reply (all false after HELO). After
/// STARTTLS, the post-handshake EHLO reply's: `starttls` is then false, as the
/// server must not offer it again (RFC 3207 §4.2).
struct ServerCapabilities {
    bool esmtp = false;                  ///< the server answered EHLO (not only HELO)
    bool pipelining = false;             ///< PIPELINING (RFC 2920)
    bool eight_bit_mime = false;         ///< 8BITMIME (RFC 6152)
    bool smtputf8 = false;               ///< SMTPUTF8 (RFC 6531)
    bool enhanced_status_codes = false;  ///< ENHANCEDSTATUSCODES (RFC 2034)
    bool dsn = false;                    ///< DSN (RFC 3461)
    bool starttls = false;               ///< STARTTLS (RFC 3207)
    bool chunking = false;               ///< CHUNKING (RFC 3030)
    std::optional<std::uint64_t> size;   ///< SIZE n; nullopt: not offered; 0: no limit
};

/// One message to send: envelope and what it needs. The body comes later, with
/// ClientSession::write_body() after need_body.
struct OutgoingMessage {
    std::string sender;                   ///< without brackets; empty: the null path `<>`
    std::vector<std::string> recipients;  ///< without brackets
    bool eight_bit = false;               ///< the body needs 8BITMIME (BODY=8BITMIME)
    bool smtputf8 = false;                ///< an address or header needs SMTPUTF8
    std::optional<std::uint64_t> size;    ///< declared with SIZE= when offered
};

/// What became of a recipient (or a message).
enum class Outcome : std::uint8_t {
    delivered,  ///< 250 to the final dot
    temporary,  ///< 4xx, or a connection failure: try again later
    permanent,  ///< 5xx, or refused locally: bounce
};

/// Why a connection failed, in a `failed` event.
enum class ConnectionFailure : std::uint8_t {
    none,              ///< no failure
    greeting_refused,  ///< the greeting was not 220 (554, 421, ...), or EHLO and HELO
                       ///< were refused (or EHLO got 4xx); QUIT is sent unless 421
    protocol_error,    ///< the server broke the reply grammar or the sequence
    timeout,           ///< the program called timeout()
    peer_closed,       ///< the program called peer_closed() before QUIT was answered
    closed_by_server,  ///< 421 to a command: the server is closing the connection
    tls_unavailable,   ///< TlsPolicy::encrypt, but STARTTLS was not offered or was refused;
                       ///< 451 4.7.4, QUIT is sent
    tls_failed,        ///< the program called tls_failed(): 451 4.7.5
};

/// "delivered", "temporary", "permanent": the enumerators' names, for logs. A view of
/// a string literal, valid for the life of the program.
std::string_view outcome_name(Outcome outcome) noexcept;
/// "none", "greeting_refused", ...: the enumerators' names, for logs. A view of a
/// string literal, valid for the life of the program.
std::string_view failure_name(ConnectionFailure failure) noexcept;

/// One thing that happened on the connection, from ClientSession::next_event().
/// Which fields are set depends on `kind`.
struct ClientEvent {
    /// What happened.
    enum class Kind : std::uint8_t {
        ready,             ///< greeting and EHLO/HELO done (after TLS, if any): capabilities()
                           ///< is known. Once per connection
        need_body,         ///< 354 came for `message`: write_body() ... end_body()
        recipient_result,  ///< `message`, `recipient`: `outcome`, `reply`
        message_result,    ///< `message` is finished: delivered to `delivered` recipients
        failed,            ///< connection-level `failure`; `reply` the server's (greeting_refused,
                           ///< closed_by_server) or one the session made (`local`); unsent
                           ///< output is dropped
        closed,            ///< the conversation is over (QUIT answered: `reply` is that
                           ///< answer; or after failed)
        tls_begin,         ///< STARTTLS was answered 220: run the TLS handshake, then call
                           ///< tls_started() or tls_failed()
    };
    Kind kind;                  ///< what happened
    std::uint64_t message = 0;  ///< the id submit() returned
    std::size_t recipient = 0;  ///< index into that message's recipients
    std::size_t delivered = 0;  ///< message_result: recipients delivered
    /// recipient_result: that recipient's. message_result: delivered if every
    /// recipient was, else temporary if any was, else permanent.
    Outcome outcome = Outcome::delivered;
    ConnectionFailure failure = ConnectionFailure::none;  ///< failed: why
    /// The server's full reply, or for a local refusal or failure a reply made by the
    /// session saying why (`local` true). message_result: the reply that decided its
    /// last recipient (the final dot's, MAIL's, DATA's, a failure's). Valid until the
    /// next next_event() call.
    const Reply* reply = nullptr;
    bool local = false;  ///< `reply` was made by the session, not sent by the server
};

/// One SMTP client connection, without any I/O.
///
/// @copydetails client_session.hpp
class ClientSession {
public:
    /// A session for a new connection: it waits for the greeting. Throws
    /// std::bad_alloc.
    explicit ClientSession(ClientConfig config);
    /// Ends the session; every view and Reply it handed out ends with it.
    ~ClientSession();
    /// Takes over the connection of the session moved from. A moved-from session may
    /// only be destroyed or assigned to.
    ClientSession(ClientSession&&) noexcept;
    /// As the move constructor; the session assigned to ends as if destroyed.
    ClientSession& operator=(ClientSession&&) noexcept;

    /// @name The program's side
    /// @{

    /// Queues a message; returns its id (1, 2, ...). A message the server cannot take
    /// as it is (8BITMIME or SMTPUTF8 needed but not offered, SIZE over the server's
    /// limit) or whose addresses contain CR, LF or NUL or are no valid paths fails
    /// permanently, locally, with a clear reason: nothing is sent for it.
    /// Addresses are checked with parse_command() (smtputf8 as the message says) and
    /// must be a plain mailbox (no source route, RFC 5321 §4.1.1.3) whose command
    /// line fits Limits::command_line with every parameter added; a bad sender
    /// fails the whole message, a bad recipient only itself. A message with no
    /// recipients fails permanently (554 5.5.1). Results for addresses come at once;
    /// the capability checks when the message's turn comes. After quit() or once
    /// closed, a message is not sent: its recipients fail temporarily (451 4.3.0).
    std::uint64_t submit(OutgoingMessage message);
    /// No more messages: QUIT once every submitted message is finished.
    void quit();

    /// After need_body: the message content (any chunking). The session dot-stuffs
    /// and normalizes line endings (DataEncoder). Write while pending_output() is
    /// small to keep memory bounded.
    /// @return Usage::ok; Usage::no_verdict_pending when no body is asked for (before
    ///         need_body, after end_body), Usage::closed once the session is closed;
    ///         those change nothing.
    Usage write_body(std::string_view chunk);
    /// After need_body and write_body(): the end of the content (the final dot).
    /// @return as write_body().
    Usage end_body();
    /// @}

    /// @name TLS (RFC 3207)
    /// @{

    /// After tls_begin: the handshake succeeded; EHLO goes out (over TLS, as all
    /// output from now on).
    /// @return Usage::ok; Usage::no_verdict_pending when no handshake is awaited,
    ///         Usage::closed once closed: those change nothing.
    Usage tls_started();
    /// After tls_begin: the handshake failed: `failed` with tls_failed, every
    /// unfinished recipient temporary; `reason` (CR, LF and NUL become spaces) ends
    /// the local reply "451 4.7.5 TLS handshake failed: reason".
    /// @return as tls_started().
    Usage tls_failed(std::string_view reason);
    bool in_tls() const noexcept;  ///< tls_started() was called
    /// @}

    /// @name Input from the network and the clock
    /// @{

    /// Takes all of `bytes` (replies are parsed as they complete; ignored once closed).
    /// Bytes after STARTTLS's 220, in the same feed or before tls_started(), fail
    /// the connection (protocol_error): see above.
    void feed(std::string_view bytes);
    /// The server closed the connection (EOF): `failed` with peer_closed.
    /// Unsent output is dropped. Nothing happens once closed.
    void peer_closed();
    /// timeout_ms() expired: `failed` with timeout. Unsent output is dropped.
    /// Nothing happens once closed.
    void timeout();
    /// The wait that applies now (RFC 5321 §4.5.3.2), by what is awaited: the
    /// greeting, the oldest outstanding command's reply (DATA, the final dot, or
    /// another), or data_block_timeout_ms while the program writes the body;
    /// 0 when nothing is awaited. During the TLS handshake: command_timeout_ms.
    std::uint32_t timeout_ms() const noexcept;

    /// The next event, or nullopt when there is none until more input or a call of
    /// the program's. Its `reply` is valid until the next next_event() call.
    std::optional<ClientEvent> next_event();
    /// @}

    /// @name Output to the network
    /// @{
    std::string_view pending_output() const noexcept;  ///< valid until the next non-const call
    /// The first `n` bytes of pending_output() were sent (at most all of them).
    void consume_output(std::size_t n) noexcept;
    bool want_read() const noexcept;     ///< not closed, no TLS handshake: replies may come
    bool want_write() const noexcept;    ///< pending_output() is not empty
    bool should_close() const noexcept;  ///< over, and all output consumed
    /// @}

    /// What the server offered (see ServerCapabilities); final from the `ready`
    /// event on. Valid as long as the session.
    const ServerCapabilities& capabilities() const noexcept;

private:
    struct Impl;  // libsmtp/client_session.cpp
    std::unique_ptr<Impl> impl_;
};

}  // namespace smtp

#endif
