// Tests of the client session's phase table (libsmtp/client_states.cpp): that it is
// a sound machine (rows change the phase, every phase reachable, every phase leads
// to `closed`), and that real ClientSession conversations take each of its rows:
// a row no conversation takes is dead, and fails here. A change of phase the table
// lacks asserts in the session and is counted; the last test checks the count.
#include <smtp/client_session.hpp>

#include "../../libsmtp/client_states.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using smtp::ClientEvent;
using smtp::TlsPolicy;
using smtp::Usage;
using smtp::detail::cause_name;
using smtp::detail::ClientCause;
using smtp::detail::ClientPhase;
using smtp::detail::ClientTransition;
using smtp::detail::phase_name;

constexpr std::string_view greeting = "220 mx.example.net ESMTP\r\n";
constexpr std::string_view ehlo_plain = "250 mx.example.net\r\n";  // no PIPELINING, no STARTTLS
constexpr std::string_view ehlo_starttls = "250-mx.example.net\r\n250 STARTTLS\r\n";
constexpr std::string_view ehlo_sent = "EHLO client.example.org\r\n";

// Changes refused on purpose by a test here, for the last test's count.
std::uint32_t refused_on_purpose = 0;

std::vector<ClientPhase> all_phases() {
    std::vector<ClientPhase> phases;
    for (std::size_t p = 0; p < smtp::detail::client_phase_count; ++p)
        phases.push_back(static_cast<ClientPhase>(p));
    return phases;
}

// A ClientSession in a conversation the test plays: the server's side (feeding
// replies) and the program's (calls, events). Without PIPELINING offered, every
// command waits for its reply.
class Conversation {
public:
    explicit Conversation(TlsPolicy tls) : session(config(tls)) {}

    // What the client wrote, taken as sent.
    std::string sent() {
        std::string out(session.pending_output());
        session.consume_output(out.size());
        return out;
    }

    void server(std::string_view bytes) { session.feed(bytes); }

    // Every event since the last call, by kind, separated by ", ": "ready",
    // "need_body", "rcpt", "message", "failed timeout", "closed", "tls_begin".
    std::string events() {
        std::string all;
        while (const auto e = session.next_event()) {
            if (!all.empty()) all += ", ";
            all += describe(*e);
        }
        return all;
    }

    // A new session brought to `phase` by the conversation that leads there.
    void bring_to(ClientPhase phase) {
        if (phase == ClientPhase::greeting) return;
        server(greeting);
        REQUIRE(sent() == ehlo_sent);
        if (phase == ClientPhase::hello) return;
        if (phase == ClientPhase::handshake) {
            server(ehlo_starttls);
            REQUIRE(sent() == "STARTTLS\r\n");
            server("220 2.0.0 Ready to start TLS\r\n");
            REQUIRE(events() == "tls_begin");
            return;
        }
        server(ehlo_plain);
        REQUIRE(events() == "ready");
        if (phase == ClientPhase::ready) return;
        if (phase == ClientPhase::quitting) {
            session.quit();
            REQUIRE(sent() == "QUIT\r\n");
            return;
        }
        REQUIRE(phase == ClientPhase::body);
        start_message();
    }

    // In `ready`: a message to one recipient, up to DATA's 354.
    void start_message() {
        smtp::OutgoingMessage m;
        m.sender = "a@example.org";
        m.recipients = {"b@example.net"};
        session.submit(std::move(m));
        REQUIRE(sent() == "MAIL FROM:<a@example.org>\r\n");
        server("250 2.1.0 Ok\r\n");
        REQUIRE(sent() == "RCPT TO:<b@example.net>\r\n");
        server("250 2.1.5 Ok\r\n");
        REQUIRE(sent() == "DATA\r\n");
        server("354 End data with <CR><LF>.<CR><LF>\r\n");
        REQUIRE(events() == "need_body");
    }

    smtp::ClientSession session;

private:
    static smtp::ClientConfig config(TlsPolicy tls) {
        smtp::ClientConfig c;
        c.helo_name = "client.example.org";
        c.tls = tls;
        return c;
    }

    static std::string describe(const ClientEvent& e) {
        switch (e.kind) {
            case ClientEvent::Kind::ready:
                return "ready";
            case ClientEvent::Kind::need_body:
                return "need_body";
            case ClientEvent::Kind::recipient_result:
                return "rcpt";
            case ClientEvent::Kind::message_result:
                return "message";
            case ClientEvent::Kind::failed:
                return "failed " + std::string(smtp::failure_name(e.failure));
            case ClientEvent::Kind::closed:
                return "closed";
            case ClientEvent::Kind::tls_begin:
                return "tls_begin";
        }
        return "?";
    }
};

// How often each row was taken so far in this process.
std::vector<std::uint32_t> taken_counts() {
    std::vector<std::uint32_t> counts;
    for (const ClientTransition& t : smtp::detail::client_transitions())
        counts.push_back(smtp::detail::client_transition_taken(t));
    return counts;
}

// "from --cause--> to", for messages.
std::string row_name(const ClientTransition& t) {
    return std::string(phase_name(t.from)) + " --" + std::string(cause_name(t.cause)) + "--> " +
           std::string(phase_name(t.to));
}

// The rows taken since `before`, in table order, separated by "; ", each with " x<n>"
// when taken more than once.
std::string taken_since(const std::vector<std::uint32_t>& before) {
    std::string taken;
    const auto rows = smtp::detail::client_transitions();
    for (std::size_t r = 0; r < rows.size(); ++r) {
        const std::uint32_t n = smtp::detail::client_transition_taken(rows[r]) - before[r];
        if (n == 0) continue;
        if (!taken.empty()) taken += "; ";
        taken += row_name(rows[r]);
        if (n != 1) taken += " x" + std::to_string(n);
    }
    return taken;
}

// Makes `row.cause` happen in a conversation brought to `row.from`, as a server or
// a program would, and checks what the session reports. A row with no way to make
// it happen here is a FAIL: write one (or the row is dead, and must go).
void take(Conversation& c, const ClientTransition& row) {
    const std::string_view failure = "failed ";
    switch (row.cause) {
        case ClientCause::greeting_220:
            c.server(greeting);
            CHECK(c.sent() == ehlo_sent);
            return;
        case ClientCause::hello_accepted:
            c.server(ehlo_plain);
            CHECK(c.events() == "ready");
            return;
        case ClientCause::starttls_220:
            c.server(ehlo_starttls);
            CHECK(c.sent() == "STARTTLS\r\n");
            c.server("220 2.0.0 Ready to start TLS\r\n");
            CHECK(c.events() == "tls_begin");
            CHECK(!c.session.want_read());
            return;
        case ClientCause::starttls_refused:
            c.server(ehlo_starttls);
            CHECK(c.sent() == "STARTTLS\r\n");
            c.server("454 4.7.0 TLS not available due to temporary reason\r\n");
            CHECK(c.events() == "ready");
            CHECK(!c.session.in_tls());
            return;
        case ClientCause::tls_started:
            CHECK(c.session.tls_started() == Usage::ok);
            CHECK(c.sent() == ehlo_sent);
            CHECK(c.session.in_tls());
            return;
        case ClientCause::data_354:
            c.start_message();
            return;
        case ClientCause::end_body:
            CHECK(c.session.write_body("Hello\r\n") == Usage::ok);
            CHECK(c.session.end_body() == Usage::ok);
            CHECK(c.sent() == "Hello\r\n.\r\n");
            CHECK(c.session.write_body("more") == Usage::no_verdict_pending);
            return;
        case ClientCause::quit_sent:
            c.session.quit();
            CHECK(c.sent() == "QUIT\r\n");
            return;
        case ClientCause::quit_answered:
            c.server("221 2.0.0 Bye\r\n");
            CHECK(c.events() == "closed");
            return;
        case ClientCause::greeting_refused:
            // 554 greeting (RFC 5321 §3.1); EHLO answered 4xx (no HELO then).
            c.server(row.from == ClientPhase::greeting ? "554 5.3.2 No service\r\n" : "451 4.3.2 Later\r\n");
            break;
        case ClientCause::tls_unavailable:
            c.server(ehlo_plain);  // TlsPolicy::encrypt, STARTTLS not offered
            break;
        case ClientCause::closed_by_server:
            c.server("421 4.3.2 Shutting down\r\n");
            break;
        case ClientCause::protocol_error:
            // In the handshake any byte is one; elsewhere, a line that is no reply.
            c.server(row.from == ClientPhase::handshake ? "2" : "hello\r\n");
            break;
        case ClientCause::timeout:
            c.session.timeout();
            break;
        case ClientCause::peer_closed:
            c.session.peer_closed();
            break;
        case ClientCause::tls_failed:
            CHECK(c.session.tls_failed("no shared cipher") == Usage::ok);
            break;
        default:
            FAIL("no conversation for this cause: add one to take()");
            return;
    }
    // A failure: reported as the ConnectionFailure of the same name, and the end.
    const std::string events = c.events();
    const std::string reported = std::string(failure) + std::string(cause_name(row.cause));
    CHECK(events.substr(0, reported.size()) == reported);
    CHECK(events.ends_with("closed"));
    CHECK(!c.session.want_read());
    CHECK(c.session.timeout_ms() == 0);
}

}  // namespace

TEST_SUITE("client_states") {
    TEST_CASE("each row changes the phase, between valid phases, for a named cause") {
        std::set<std::pair<ClientPhase, ClientCause>> seen;
        for (const ClientTransition& t : smtp::detail::client_transitions()) {
            INFO(row_name(t));
            CHECK(t.from != t.to);
            CHECK(phase_name(t.from) != "invalid");
            CHECK(phase_name(t.to) != "invalid");
            CHECK(cause_name(t.cause) != "invalid");
            CHECK(!t.label.empty());
            CHECK(seen.insert({t.from, t.cause}).second);
            CHECK(smtp::detail::client_transition(t.from, t.cause) == &t);
        }
        CHECK(phase_name(static_cast<ClientPhase>(smtp::detail::client_phase_count)) == "invalid");
        CHECK(cause_name(static_cast<ClientCause>(smtp::detail::client_cause_count)) == "invalid");
    }

    TEST_CASE("every phase is reachable from greeting, and leads to closed") {
        const auto rows = smtp::detail::client_transitions();
        // Forward from greeting, backward from closed, until nothing is added.
        std::set<ClientPhase> reached{ClientPhase::greeting}, closing{ClientPhase::closed};
        for (bool grew = true; grew;) {
            grew = false;
            for (const ClientTransition& t : rows) {
                if (reached.count(t.from) != 0) grew = reached.insert(t.to).second || grew;
                if (closing.count(t.to) != 0) grew = closing.insert(t.from).second || grew;
            }
        }
        for (const ClientPhase p : all_phases()) {
            INFO(phase_name(p));
            CHECK(reached.count(p) == 1);
            CHECK(closing.count(p) == 1);
        }
    }

    TEST_CASE("closed is the only phase with no way out") {
        std::set<ClientPhase> left;
        for (const ClientTransition& t : smtp::detail::client_transitions()) left.insert(t.from);
        for (const ClientPhase p : all_phases()) {
            INFO(phase_name(p));
            CHECK((left.count(p) == 0) == (p == ClientPhase::closed));
        }
    }

    TEST_CASE("each connection failure changes the phase by the cause of the same name") {
        using smtp::ConnectionFailure;
        for (const ConnectionFailure f :
             {ConnectionFailure::greeting_refused, ConnectionFailure::protocol_error,
              ConnectionFailure::timeout, ConnectionFailure::peer_closed, ConnectionFailure::closed_by_server,
              ConnectionFailure::tls_unavailable, ConnectionFailure::tls_failed})
            CHECK(cause_name(smtp::detail::cause_of(f)) == smtp::failure_name(f));
    }

    TEST_CASE("a change the table lacks has no row and is counted as refused") {
        CHECK(smtp::detail::client_transition(ClientPhase::closed, ClientCause::timeout) == nullptr);
        CHECK(smtp::detail::client_transition(ClientPhase::handshake, ClientCause::closed_by_server) ==
              nullptr);
        CHECK(smtp::detail::client_transition(ClientPhase::quitting, ClientCause::closed_by_server) ==
              nullptr);
        CHECK(smtp::detail::client_transition(ClientPhase::ready, ClientCause::tls_started) == nullptr);
        const std::uint32_t before = smtp::detail::client_transitions_refused();
        CHECK(smtp::detail::take_client_transition(ClientPhase::body, ClientCause::starttls_220) == nullptr);
        ++refused_on_purpose;
        CHECK(smtp::detail::client_transitions_refused() - before == 1);
    }

    TEST_CASE("every row of the table is taken by a real conversation") {
        for (const ClientTransition& row : smtp::detail::client_transitions()) {
            const std::string name = row_name(row);
            CAPTURE(name);
            Conversation c(row.cause == ClientCause::tls_unavailable ? TlsPolicy::encrypt : TlsPolicy::may);
            c.bring_to(row.from);
            c.events();
            const std::vector<std::uint32_t> before = taken_counts();
            take(c, row);
            // That row, once, and no other: the session went where the row says.
            CHECK(taken_since(before) == name);
        }
    }

    TEST_CASE("a delivery over STARTTLS takes each row on its way once, and no other") {
        const std::vector<std::uint32_t> before = taken_counts();
        Conversation c(TlsPolicy::encrypt);
        c.bring_to(ClientPhase::handshake);
        CHECK(c.session.tls_started() == Usage::ok);
        CHECK(c.sent() == ehlo_sent);
        c.server(ehlo_plain);
        CHECK(c.events() == "ready");
        smtp::OutgoingMessage m;
        m.sender = "a@example.org";
        m.recipients = {"b@example.net"};
        c.session.submit(std::move(m));
        c.session.quit();
        CHECK(c.sent() == "MAIL FROM:<a@example.org>\r\n");
        c.server("250 2.1.0 Ok\r\n");
        CHECK(c.sent() == "RCPT TO:<b@example.net>\r\n");
        c.server("250 2.1.5 Ok\r\n");
        CHECK(c.sent() == "DATA\r\n");
        c.server("354 Go ahead\r\n");
        CHECK(c.events() == "need_body");
        CHECK(c.session.write_body("Hi\r\n") == Usage::ok);
        CHECK(c.session.end_body() == Usage::ok);
        CHECK(c.sent() == "Hi\r\n.\r\n");
        c.server("250 2.0.0 Queued\r\n");
        CHECK(c.events() == "rcpt, message");
        CHECK(c.sent() == "QUIT\r\n");
        c.server("221 2.0.0 Bye\r\n");
        CHECK(c.events() == "closed");
        CHECK(c.session.should_close());
        CHECK(taken_since(before) ==
              "greeting --greeting_220--> hello; hello --hello_accepted--> ready; "
              "hello --starttls_220--> handshake; handshake --tls_started--> hello; "
              "ready --data_354--> body; ready --quit_sent--> quitting; body --end_body--> ready; "
              "quitting --quit_answered--> closed");
    }

    // Last in this file, and the meson test 'client_states' runs the suite 'client'
    // first in the same process (doctest orders by file name): so every client
    // session of the unit tests made its changes of phase before this check.
    TEST_CASE("no change of phase made so far was missing from the table") {
        CHECK(smtp::detail::client_transitions_refused() == refused_on_purpose);
    }
}
