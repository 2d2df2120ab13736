// client_states.hpp (private): the client session's phases and the changes between
// them, as data.
//
// One table (client_states.cpp) lists every change of phase a ClientSession can
// make: from which phase, for which cause, to which phase, and a short label for
// the diagram. The session changes its phase in one place, Impl::enter(cause),
// which looks up the row for (current phase, cause) and moves to the row's `to`;
// doc/ draws the state diagram from client_transitions(), so the two cannot drift
// apart.
//
// A change the table lacks is a bug of the session: enter() asserts (the unit tests
// and the fuzz targets are built with assertions), and in every build the phase
// stays as it was and the refusal is counted (client_transitions_refused()), so a
// test run without assertions still sees it. Each row's use is counted too, so a
// test can prove every row is taken by some real conversation: a dead row fails.
//
// Not in the table, because they do not change the phase: what goes on inside one.
// In `hello`, EHLO refused with 5xx sends HELO (RFC 5321 §3.2), and a positive EHLO
// reply offering a wanted STARTTLS sends STARTTLS (RFC 3207 §4); in `ready`, the
// transactions (RSET, MAIL, RCPT, DATA, pipelined or not, and the lone "." after a
// 354 nobody wanted). The commands awaiting replies tell those steps apart.
//
// Thread safety: the table is immutable. The counters are process-wide relaxed
// atomics, the one piece of mutable global state in libsmtp: they are written,
// never read, by the sessions, so they change nothing a session does.
#ifndef SMTP_CLIENT_STATES_HPP
#define SMTP_CLIENT_STATES_HPP

#include <smtp/client_session.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace smtp::detail {

enum class ClientPhase : std::uint8_t {
    greeting,   // waiting for the greeting (RFC 5321 §3.1)
    hello,      // EHLO or HELO sent, then maybe STARTTLS: the capabilities are not final
    handshake,  // STARTTLS answered 220: the program runs the TLS handshake (RFC 3207 §4)
    ready,      // transactions, one at a time
    body,       // DATA answered 354: the program writes the message
    quitting,   // QUIT sent
    closed,     // QUIT answered, or the connection failed; nothing more is read or said
};
constexpr std::size_t client_phase_count = static_cast<std::size_t>(ClientPhase::closed) + 1;

// What changes the phase: a reply, a call of the program's, or a failure. The
// failures come last, named as the ConnectionFailure they report.
enum class ClientCause : std::uint8_t {
    greeting_220,      // the greeting is 220: EHLO goes out
    hello_accepted,    // EHLO (or HELO) 2xx and no STARTTLS to do: `ready`
    starttls_220,      // STARTTLS answered 220: `tls_begin`
    starttls_refused,  // STARTTLS answered 4xx/5xx, TlsPolicy::may: `ready` in plaintext
    tls_started,       // the program's tls_started(): EHLO again, over TLS
    data_354,          // DATA answered 354: `need_body`
    end_body,          // the program's end_body(): the final dot goes out
    quit_sent,         // quit() and nothing left to send: QUIT goes out
    quit_answered,     // the reply to QUIT, whatever it is (421 too)
    greeting_refused,  // the failures (ClientSession::Impl::fail()), one per ConnectionFailure
    protocol_error,
    timeout,
    peer_closed,
    closed_by_server,
    tls_unavailable,
    tls_failed,
};
constexpr std::size_t client_cause_count = static_cast<std::size_t>(ClientCause::tls_failed) + 1;

// The cause a connection-level failure gives (`none`, never passed, gives protocol_error).
constexpr ClientCause cause_of(ConnectionFailure failure) noexcept {
    switch (failure) {
        case ConnectionFailure::greeting_refused:
            return ClientCause::greeting_refused;
        case ConnectionFailure::timeout:
            return ClientCause::timeout;
        case ConnectionFailure::peer_closed:
            return ClientCause::peer_closed;
        case ConnectionFailure::closed_by_server:
            return ClientCause::closed_by_server;
        case ConnectionFailure::tls_unavailable:
            return ClientCause::tls_unavailable;
        case ConnectionFailure::tls_failed:
            return ClientCause::tls_failed;
        case ConnectionFailure::none:
        case ConnectionFailure::protocol_error:
            break;
    }
    return ClientCause::protocol_error;
}

struct ClientTransition {
    ClientPhase from;
    ClientCause cause;
    ClientPhase to;
    std::string_view label;  // what causes it, for the diagram: "STARTTLS answered 220"
};

// Every row, grouped by `from`. For the session, the state diagram and tests.
std::span<const ClientTransition> client_transitions() noexcept;

// The row for `from` and `cause`; nullptr when there is none (the change is not
// allowed).
const ClientTransition* client_transition(ClientPhase from, ClientCause cause) noexcept;

// client_transition() for a change the session makes: the row it returns is counted
// as taken, a nullptr as refused.
const ClientTransition* take_client_transition(ClientPhase from, ClientCause cause) noexcept;

// How often `row` (one of client_transitions()) was taken in this process, and how
// many changes were refused for want of a row. Counters wrap; compare differences.
std::uint32_t client_transition_taken(const ClientTransition& row) noexcept;
std::uint32_t client_transitions_refused() noexcept;

std::string_view phase_name(ClientPhase phase) noexcept;  // "handshake"; "invalid" if none
std::string_view cause_name(ClientCause cause) noexcept;  // "starttls_220"; "invalid" if none

}  // namespace smtp::detail

#endif
