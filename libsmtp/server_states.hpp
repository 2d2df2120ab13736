// server_states.hpp (private): the server session's state machine, as data.
//
// One table (server_states.cpp) says, for each state and each input (a command
// verb, or one of the few inputs that are not commands), what happens: the input is
// refused with an Errc (the state does not change), or it is allowed, maybe after a
// verdict of the program, and the session moves to `to`. ServerSession reads every
// state change from here, and doc/ draws the state diagram from
// server_transitions(), so the two cannot drift apart.
//
// Not in the table, because they apply in every state alike: a reply of 421
// (timeout, shutdown, too many errors, or the program's own 421) closes the session
// (RFC 5321 §3.8); a rejected verdict leaves the state as it was (RFC 5321 §4.1.4
// for EHLO), except for the connection itself (5xx: refused, 4xx: closed) and the
// end of a message (the transaction is over either way).
// Nor what depends on the configuration rather than the state, checked before the
// table in every state but `refused`: the STARTTLS rows are those of a server that
// offers STARTTLS (RFC 3207); not offered, STARTTLS gets 502 5.5.1 as before, and
// once in TLS 503 5.5.1 (tls_active, §4.2). With ServerConfig::require_tls, MAIL,
// RCPT and DATA before TLS get 530 5.7.0 (tls_required, §4).
// Thread safety: immutable data.
#ifndef SMTP_SERVER_STATES_HPP
#define SMTP_SERVER_STATES_HPP

#include <smtp/command.hpp>
#include <smtp/error.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace smtp::detail {

enum class ServerState : std::uint8_t {
    connected,  // waiting for the program's verdict on the connection
    refused,    // the connection was refused with 5xx: only QUIT works (RFC 5321 §3.1)
    start,      // greeted; no HELO/EHLO yet
    ready,      // HELO/EHLO accepted; no transaction
    mail,       // MAIL accepted; no recipient accepted yet
    rcpt,       // at least one RCPT accepted
    data,       // reading message data after 354
    tls,        // STARTTLS answered 220: input is discarded until tls_started()
    closed,     // after 221 or 421 (or a 4xx greeting); nothing more is read or said
};
constexpr std::size_t server_state_count = static_cast<std::size_t>(ServerState::closed) + 1;

// Every Verb, in Verb's order (so a Verb converts by value), then the inputs that
// are not commands.
enum class ServerInput : std::uint8_t {
    helo,
    ehlo,
    mail,
    rcpt,
    data,
    rset,
    noop,
    quit,
    vrfy,
    expn,
    help,
    bdat,
    starttls,
    auth,
    unknown,      // a line that is no known command
    connect,      // the program's verdict on a new connection
    final_dot,    // the CRLF.CRLF that ends message data
    tls_started,  // the program finished the TLS handshake (RFC 3207 §4.2)
};
constexpr std::size_t server_input_count = static_cast<std::size_t>(ServerInput::tls_started) + 1;
static_assert(static_cast<int>(ServerInput::unknown) == static_cast<int>(Verb::unknown),
              "ServerInput must list the verbs in Verb's order");

constexpr ServerInput input_of(Verb v) noexcept { return static_cast<ServerInput>(v); }

struct Transition {
    ServerState from;
    ServerInput input;
    Errc refusal;    // ok: allowed; else the reply, and the state stays
    bool verdict;    // the program decides (an event with needs_verdict)
    ServerState to;  // where an allowed (and accepted) input leads
};

// Every row, grouped by state: the states that read input, each with every input
// it can meet. For the state diagram and for tests.
std::span<const Transition> server_transitions() noexcept;

// The row for one state and input. Inputs a state never meets (a command in
// `data`, a final dot in `ready`) give a refusal with bad_sequence.
const Transition& server_transition(ServerState from, ServerInput input) noexcept;

std::string_view state_name(ServerState s) noexcept;  // "ready"
std::string_view input_name(ServerInput i) noexcept;  // "MAIL", "unknown", "final dot", "TLS started"

}  // namespace smtp::detail

#endif
