// THE server state table (RFC 5321 §3, §4.1.1, §4.1.4, §4.3.2; RFC 2920 §3.1;
// RFC 3207 for STARTTLS).
// See server_states.hpp for how to read it. Each state that reads commands lists
// every verb, so the static_assert below can prove the table total.
#include "server_states.hpp"

#include <array>

namespace smtp::detail {
namespace {

using S = ServerState;
using I = ServerInput;

// Row makers, so each row reads as a sentence.
constexpr Transition ask(S from, I input, S to) { return {from, input, Errc::ok, true, to}; }
constexpr Transition go(S from, I input, S to) { return {from, input, Errc::ok, false, to}; }
constexpr Transition no(S from, I input, Errc why) { return {from, input, why, false, from}; }

constexpr Errc sequence = Errc::bad_sequence;          // 503 5.5.1 (RFC 5321 §4.1.4)
constexpr Errc unimplemented = Errc::not_implemented;  // 502 5.5.1: not offered
constexpr Errc unrecognized = Errc::unknown_command;   // 500 5.5.2

constexpr std::array rows{
    // The program accepts the connection (220) or refuses it (RFC 5321 §3.1).
    ask(S::connected, I::connect, S::start),

    // Refused with 554: "MUST still wait for the client to send a QUIT ... and
    // SHOULD respond to any intervening commands with 503" (RFC 5321 §3.1).
    no(S::refused, I::helo, sequence),
    no(S::refused, I::ehlo, sequence),
    no(S::refused, I::mail, sequence),
    no(S::refused, I::rcpt, sequence),
    no(S::refused, I::data, sequence),
    no(S::refused, I::rset, sequence),
    no(S::refused, I::noop, sequence),
    go(S::refused, I::quit, S::closed),
    no(S::refused, I::vrfy, sequence),
    no(S::refused, I::expn, sequence),
    no(S::refused, I::help, sequence),
    no(S::refused, I::bdat, sequence),
    no(S::refused, I::starttls, sequence),
    no(S::refused, I::auth, sequence),
    no(S::refused, I::unknown, sequence),

    // Greeted. A transaction needs HELO/EHLO first (RFC 5321 §4.1.4); RSET, NOOP,
    // QUIT and VRFY work in any state (§4.1.4: "may be issued at any time").
    ask(S::start, I::helo, S::ready),
    ask(S::start, I::ehlo, S::ready),
    no(S::start, I::mail, sequence),
    no(S::start, I::rcpt, sequence),
    no(S::start, I::data, sequence),
    go(S::start, I::rset, S::start),
    go(S::start, I::noop, S::start),
    go(S::start, I::quit, S::closed),
    go(S::start, I::vrfy, S::start),
    go(S::start, I::expn, S::start),
    no(S::start, I::help, unimplemented),
    no(S::start, I::bdat, unimplemented),
    no(S::start, I::starttls, sequence),  // offered in the EHLO reply: after HELO/EHLO
    no(S::start, I::auth, unimplemented),
    no(S::start, I::unknown, unrecognized),

    // No transaction. MAIL starts one (§3.3).
    ask(S::ready, I::helo, S::ready),
    ask(S::ready, I::ehlo, S::ready),
    ask(S::ready, I::mail, S::mail),
    no(S::ready, I::rcpt, sequence),
    no(S::ready, I::data, sequence),
    go(S::ready, I::rset, S::ready),
    go(S::ready, I::noop, S::ready),
    go(S::ready, I::quit, S::closed),
    go(S::ready, I::vrfy, S::ready),
    go(S::ready, I::expn, S::ready),
    no(S::ready, I::help, unimplemented),
    no(S::ready, I::bdat, unimplemented),
    go(S::ready, I::starttls, S::tls),  // 220, then the handshake (RFC 3207 §4)
    no(S::ready, I::auth, unimplemented),
    no(S::ready, I::unknown, unrecognized),

    // MAIL accepted, no recipient yet. A second MAIL is out of order (§4.1.4);
    // DATA without a valid recipient is 554 (RFC 2920 §3.1, RFC 5321 §3.3).
    // HELO/EHLO and RSET end the transaction (§4.1.1.1, §4.1.1.5).
    ask(S::mail, I::helo, S::ready),
    ask(S::mail, I::ehlo, S::ready),
    no(S::mail, I::mail, sequence),
    ask(S::mail, I::rcpt, S::rcpt),
    no(S::mail, I::data, Errc::no_valid_recipients),
    go(S::mail, I::rset, S::ready),
    go(S::mail, I::noop, S::mail),
    go(S::mail, I::quit, S::closed),
    go(S::mail, I::vrfy, S::mail),
    go(S::mail, I::expn, S::mail),
    no(S::mail, I::help, unimplemented),
    no(S::mail, I::bdat, unimplemented),
    no(S::mail, I::starttls, sequence),  // not inside a transaction
    no(S::mail, I::auth, unimplemented),
    no(S::mail, I::unknown, unrecognized),

    // At least one recipient accepted: DATA goes on to the message (354).
    ask(S::rcpt, I::helo, S::ready),
    ask(S::rcpt, I::ehlo, S::ready),
    no(S::rcpt, I::mail, sequence),
    ask(S::rcpt, I::rcpt, S::rcpt),
    go(S::rcpt, I::data, S::data),
    go(S::rcpt, I::rset, S::ready),
    go(S::rcpt, I::noop, S::rcpt),
    go(S::rcpt, I::quit, S::closed),
    go(S::rcpt, I::vrfy, S::rcpt),
    go(S::rcpt, I::expn, S::rcpt),
    no(S::rcpt, I::help, unimplemented),
    no(S::rcpt, I::bdat, unimplemented),
    no(S::rcpt, I::starttls, sequence),  // not inside a transaction
    no(S::rcpt, I::auth, unimplemented),
    no(S::rcpt, I::unknown, unrecognized),

    // Message data ends at the final dot; the program decides on the message
    // (unless the data broke a rule: the session answers that itself). HELO stays.
    ask(S::data, I::final_dot, S::ready),

    // STARTTLS was answered 220; what the client sent after it is discarded (the
    // command injection of CVE-2011-0411). After the handshake the session starts
    // afresh, as after the greeting: "the SMTP protocol is reset to the initial
    // state" and "the server MUST discard any knowledge obtained from the client"
    // (RFC 3207 §4.2), so HELO/EHLO comes again before anything else.
    go(S::tls, I::tls_started, S::start),
};

constexpr std::size_t none = rows.size();

// index[state][input]: the row, or `none`.
using Index = std::array<std::array<std::size_t, server_input_count>, server_state_count>;

constexpr Index make_index() {
    Index index{};
    for (auto& by_input : index) by_input.fill(none);
    for (std::size_t r = 0; r < rows.size(); ++r)
        index[static_cast<std::size_t>(rows[r].from)][static_cast<std::size_t>(rows[r].input)] = r;
    return index;
}
constexpr Index index = make_index();

// Each state that reads commands has exactly one row per verb, and no row is
// shadowed by a later one for the same state and input.
constexpr bool table_is_total() {
    for (const S s : {S::refused, S::start, S::ready, S::mail, S::rcpt})
        for (std::size_t v = 0; v <= static_cast<std::size_t>(I::unknown); ++v)
            if (index[static_cast<std::size_t>(s)][v] == none) return false;
    std::size_t filled = 0;
    for (const auto& by_input : index)
        for (const std::size_t r : by_input) filled += r != none;
    return filled == rows.size();
}
static_assert(table_is_total(), "every command state needs one row per verb, and no duplicates");

// What a state never meets (only reachable through a bug): refused, state kept.
constexpr Transition never{S::closed, I::unknown, Errc::bad_sequence, false, S::closed};

}  // namespace

std::span<const Transition> server_transitions() noexcept { return rows; }

const Transition& server_transition(ServerState from, ServerInput input) noexcept {
    const auto s = static_cast<std::size_t>(from), i = static_cast<std::size_t>(input);
    if (s >= server_state_count || i >= server_input_count || index[s][i] == none) return never;
    return rows[index[s][i]];
}

std::string_view state_name(ServerState s) noexcept {
    static constexpr std::string_view names[] = {"connected", "refused", "start", "ready", "mail",
                                                 "rcpt",      "data",    "tls",   "closed"};
    const auto i = static_cast<std::size_t>(s);
    return i < std::size(names) ? names[i] : "invalid";
}

std::string_view input_name(ServerInput i) noexcept {
    if (i <= ServerInput::unknown) return verb_name(static_cast<Verb>(i));
    if (i == ServerInput::connect) return "connect";
    return i == ServerInput::final_dot ? "final dot" : "TLS started";
}

}  // namespace smtp::detail
