// THE client phase table (RFC 5321 §3.1, §3.2, §3.8, §4.1.1; RFC 3207 §4).
// See client_states.hpp for how to read it and how ClientSession uses it. The
// static_asserts below keep it a function: one row per phase and cause, no row
// that leaves the phase as it was, every cause used.
#include "client_states.hpp"

#include <array>
#include <atomic>
#include <functional>
#include <iterator>

namespace smtp::detail {
namespace {

using P = ClientPhase;
using C = ClientCause;

constexpr std::array rows{
    // RFC 5321 §3.1: 220 is the only greeting that lets us in. Refused with 554,
    // the server waits for our QUIT (sent); 421 is the server going away.
    ClientTransition{P::greeting, C::greeting_220, P::hello, "220 greeting: EHLO sent"},
    ClientTransition{P::greeting, C::greeting_refused, P::closed, "greeting not 220"},
    ClientTransition{P::greeting, C::protocol_error, P::closed, "protocol error"},
    ClientTransition{P::greeting, C::timeout, P::closed, "timeout()"},
    ClientTransition{P::greeting, C::peer_closed, P::closed, "peer_closed()"},

    // EHLO sent; EHLO 5xx gets HELO (§3.2) and a wanted STARTTLS goes out, both
    // within `hello`. STARTTLS refused: `may` goes on in plaintext, `encrypt`
    // gives up (RFC 3207 §4; Postfix's smtp_tls_security_level).
    ClientTransition{P::hello, C::hello_accepted, P::ready, "EHLO/HELO 2xx, no STARTTLS due"},
    ClientTransition{P::hello, C::starttls_220, P::handshake, "STARTTLS answered 220"},
    ClientTransition{P::hello, C::starttls_refused, P::ready, "STARTTLS refused (tls may)"},
    ClientTransition{P::hello, C::greeting_refused, P::closed, "EHLO 4xx, HELO refused"},
    ClientTransition{P::hello, C::tls_unavailable, P::closed, "tls encrypt: no STARTTLS"},
    ClientTransition{P::hello, C::closed_by_server, P::closed, "421: server closing"},
    ClientTransition{P::hello, C::protocol_error, P::closed, "protocol error"},
    ClientTransition{P::hello, C::timeout, P::closed, "timeout()"},
    ClientTransition{P::hello, C::peer_closed, P::closed, "peer_closed()"},

    // The program runs the handshake. No server byte can be expected here: any is
    // a protocol error (RFC 3207 §4.2, CVE-2011-0411), a 421 too. After it the
    // client forgets the capabilities and says EHLO again (RFC 3207 §4.2).
    ClientTransition{P::handshake, C::tls_started, P::hello, "tls_started(): EHLO sent"},
    ClientTransition{P::handshake, C::tls_failed, P::closed, "tls_failed()"},
    ClientTransition{P::handshake, C::protocol_error, P::closed, "protocol error"},
    ClientTransition{P::handshake, C::timeout, P::closed, "timeout()"},
    ClientTransition{P::handshake, C::peer_closed, P::closed, "peer_closed()"},

    // Transactions, one at a time; QUIT once quit() was called and all are done.
    // 421 may come at any time (§3.8).
    ClientTransition{P::ready, C::data_354, P::body, "354 to DATA: need_body"},
    ClientTransition{P::ready, C::quit_sent, P::quitting, "quit(), all done: QUIT sent"},
    ClientTransition{P::ready, C::closed_by_server, P::closed, "421: server closing"},
    ClientTransition{P::ready, C::protocol_error, P::closed, "protocol error"},
    ClientTransition{P::ready, C::timeout, P::closed, "timeout()"},
    ClientTransition{P::ready, C::peer_closed, P::closed, "peer_closed()"},

    // The program writes the message; end_body() sends the final dot, whose reply
    // comes in `ready`.
    ClientTransition{P::body, C::end_body, P::ready, "end_body(): final dot sent"},
    ClientTransition{P::body, C::closed_by_server, P::closed, "421: server closing"},
    ClientTransition{P::body, C::protocol_error, P::closed, "protocol error"},
    ClientTransition{P::body, C::timeout, P::closed, "timeout()"},
    ClientTransition{P::body, C::peer_closed, P::closed, "peer_closed()"},

    // QUIT is the only command out: whatever answers it, 421 included, ends the
    // conversation (RFC 5321 §4.1.1.10).
    ClientTransition{P::quitting, C::quit_answered, P::closed, "QUIT answered"},
    ClientTransition{P::quitting, C::protocol_error, P::closed, "protocol error"},
    ClientTransition{P::quitting, C::timeout, P::closed, "timeout()"},
    ClientTransition{P::quitting, C::peer_closed, P::closed, "peer_closed()"},
};

constexpr std::size_t none = rows.size();

// index[phase][cause]: the row, or `none`.
using Index = std::array<std::array<std::size_t, client_cause_count>, client_phase_count>;

constexpr Index make_index() {
    Index index{};
    for (auto& by_cause : index) by_cause.fill(none);
    for (std::size_t r = 0; r < rows.size(); ++r)
        index[static_cast<std::size_t>(rows[r].from)][static_cast<std::size_t>(rows[r].cause)] = r;
    return index;
}
constexpr Index index = make_index();

constexpr bool rows_are_sound() {
    std::array<bool, client_cause_count> used{};
    for (std::size_t r = 0; r < rows.size(); ++r) {
        const ClientTransition& t = rows[r];
        if (t.from == t.to || t.from > P::closed || t.to > P::closed || t.cause > C::tls_failed) return false;
        if (t.label.empty() || (r > 0 && t.from < rows[r - 1].from)) return false;
        used[static_cast<std::size_t>(t.cause)] = true;
    }
    for (const bool u : used)
        if (!u) return false;
    std::size_t filled = 0;
    for (const auto& by_cause : index)
        for (const std::size_t r : by_cause) filled += r != none;
    return filled == rows.size();  // no row shadowed by another for the same phase and cause
}
// What the program (timeout(), peer_closed()) or a broken reply can do at any time
// must close the session from every phase but `closed`.
constexpr bool failures_close_every_phase() {
    for (std::size_t p = 0; p < client_phase_count; ++p)
        for (const C c : {C::protocol_error, C::timeout, C::peer_closed}) {
            const std::size_t r = index[p][static_cast<std::size_t>(c)];
            if (static_cast<P>(p) != P::closed && (r == none || rows[r].to != P::closed)) return false;
        }
    return true;
}
static_assert(failures_close_every_phase(), "timeout, peer_closed and protocol_error work in every phase");
static_assert(rows_are_sound(),
              "each row changes the phase, rows are grouped by phase, one row per phase and cause, "
              "every cause used");

// Written by the sessions, read by tests (client_states.hpp).
std::array<std::atomic<std::uint32_t>, rows.size()> taken{};
std::atomic<std::uint32_t> refused{0};

}  // namespace

std::span<const ClientTransition> client_transitions() noexcept { return rows; }

const ClientTransition* client_transition(ClientPhase from, ClientCause cause) noexcept {
    const auto p = static_cast<std::size_t>(from), c = static_cast<std::size_t>(cause);
    if (p >= client_phase_count || c >= client_cause_count || index[p][c] == none) return nullptr;
    return &rows[index[p][c]];
}

const ClientTransition* take_client_transition(ClientPhase from, ClientCause cause) noexcept {
    const ClientTransition* row = client_transition(from, cause);
    if (row == nullptr)
        refused.fetch_add(1, std::memory_order_relaxed);
    else
        taken[static_cast<std::size_t>(row - rows.data())].fetch_add(1, std::memory_order_relaxed);
    return row;
}

std::uint32_t client_transition_taken(const ClientTransition& row) noexcept {
    const ClientTransition* const r = &row;
    // Only a row of the table has a counter (std::less: a total order on pointers).
    if (std::less<>{}(r, rows.data()) || !std::less<>{}(r, rows.data() + rows.size())) return 0;
    return taken[static_cast<std::size_t>(r - rows.data())].load(std::memory_order_relaxed);
}

std::uint32_t client_transitions_refused() noexcept { return refused.load(std::memory_order_relaxed); }

std::string_view phase_name(ClientPhase phase) noexcept {
    static constexpr std::string_view names[] = {"greeting", "hello",    "handshake", "ready",
                                                 "body",     "quitting", "closed"};
    static_assert(std::size(names) == client_phase_count);
    const auto i = static_cast<std::size_t>(phase);
    return i < std::size(names) ? names[i] : "invalid";
}

std::string_view cause_name(ClientCause cause) noexcept {
    static constexpr std::string_view names[] = {
        "greeting_220",  "hello_accepted",   "starttls_220",    "starttls_refused",
        "tls_started",   "data_354",         "end_body",        "quit_sent",
        "quit_answered", "greeting_refused", "protocol_error",  "timeout",
        "peer_closed",   "closed_by_server", "tls_unavailable", "tls_failed",
    };
    static_assert(std::size(names) == client_cause_count);
    const auto i = static_cast<std::size_t>(cause);
    return i < std::size(names) ? names[i] : "invalid";
}

}  // namespace smtp::detail
