// Unit tests of ServerSession's STARTTLS (RFC 3207): the EHLO offer, the command's
// sequence and syntax rules, the 220 and the tls_begin event, the injection rule
// (nothing sent in plaintext behind STARTTLS is ever read, CVE-2011-0411), the
// reset after tls_started(), require_tls, and protocol() for Received:.
// Conversations with a handshake are run in every chunking of the client's bytes
// before it and after it (chunking.hpp), with verdicts given at once and deferred:
// the "handshake" is the test calling tls_started() between the two.
#include <smtp/server_session.hpp>

#include "../../libsmtp/server_states.hpp"
#include "chunking.hpp"
#include "server_driver.hpp"

#include <doctest/doctest.h>

#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace {

using smtp::Errc;
using smtp::ServerConfig;
using smtp::ServerEvent;
using smtp::Usage;
using smtp::test::Driver;
using smtp::test::lines;
using Kind = ServerEvent::Kind;
using Log = std::vector<std::string>;

ServerConfig config(bool starttls = true) {
    ServerConfig c;
    c.hostname = "mx.example";
    c.extensions.starttls = starttls;
    return c;
}

const std::string greeting = "220 mx.example ESMTP ready\r\n";
const std::string ehlo = "EHLO client.example\r\n";
const std::string ehlo_plain_reply =
    lines({"250-mx.example Hello client.example", "250-PIPELINING", "250-SIZE 10240000", "250-8BITMIME",
           "250-ENHANCEDSTATUSCODES", "250 SMTPUTF8"});
const std::string ehlo_tls_reply =
    lines({"250-mx.example Hello client.example", "250-PIPELINING", "250-SIZE 10240000", "250-8BITMIME",
           "250-ENHANCEDSTATUSCODES", "250-SMTPUTF8", "250 STARTTLS"});
const std::string ready_for_tls = "220 2.0.0 Ready to start TLS\r\n";
const std::string bad_sequence = "503 5.5.1 Bad sequence of commands\r\n";
const std::string mail_ok = "250 2.1.0 Ok\r\n";
const std::string rcpt_ok = "250 2.1.5 Ok\r\n";
const std::string ok = "250 2.0.0 Ok\r\n";
const std::string go_ahead = "354 End data with <CR><LF>.<CR><LF>\r\n";
const std::string must_starttls = "530 5.7.0 Must issue a STARTTLS command first\r\n";
const std::string message =
    ehlo + "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nHi\r\n.\r\n";

struct Talk {
    std::string before;  // the replies before the handshake (after the greeting)
    std::string after;   // the replies after it
    Log log;             // every event after connect; "|" where tls_started() was called
    bool closed = false;
};

// One run: `before` in pieces, the handshake (if tls_begin came), `after` in pieces.
Talk run_once(const std::vector<std::string_view>& before, const std::vector<std::string_view>& after,
              const ServerConfig& c, bool defer) {
    Driver d(c, smtp::test::accept_all, defer);
    d.greet();
    for (const std::string_view piece : before) d.feed(piece);
    d.finish();
    REQUIRE(d.output.substr(0, greeting.size()) == greeting);
    Talk t;
    t.before = d.output.substr(greeting.size());
    const std::size_t mark = d.output.size();
    if (d.handshake) {
        // Nothing more may come out before the handshake, whatever was fed.
        CHECK(d.session.pending_output().empty());
        CHECK_FALSE(d.session.next_event());
        d.tls_started();
        d.log.push_back("|");
    }
    for (const std::string_view piece : after) d.feed(piece);
    d.finish();
    t.after = d.output.substr(mark);
    t.log.assign(d.log.begin() + 1, d.log.end());
    t.closed = d.session.should_close();
    return t;
}

// `before` and `after` (the client's bytes on each side of the handshake), each fed
// in every chunking while the other goes whole, verdicts at once and deferred: all
// must agree. Returns the run fed whole.
Talk talk(std::string_view before, std::string_view after = {}, const ServerConfig& c = config()) {
    const Talk whole = run_once({before}, {after}, c, false);
    const auto same = [&](const Talk& t) {
        CHECK(t.before == whole.before);
        CHECK(t.after == whole.after);
        CHECK(t.log == whole.log);
        CHECK(t.closed == whole.closed);
    };
    for (const bool defer : {false, true}) {
        CAPTURE(defer);
        smtp::test::for_each_chunking(
            before,
            [&](const std::vector<std::string_view>& pieces, const std::string& label) {
                CAPTURE(label);
                same(run_once(pieces, {after}, c, defer));
            },
            2);
        smtp::test::for_each_chunking(
            after,
            [&](const std::vector<std::string_view>& pieces, const std::string& label) {
                CAPTURE(label);
                same(run_once({before}, pieces, c, defer));
            },
            2);
    }
    return whole;
}

// A session greeted and drained, as a program has it after sending the greeting.
smtp::ServerSession greeted(const ServerConfig& c = config()) {
    smtp::ServerSession s(c);
    s.next_event();
    s.accept();
    s.consume_output(s.pending_output().size());
    return s;
}

// Runs events, accepting every verdict; returns them as log lines.
Log events(smtp::ServerSession& s) {
    Log log;
    while (auto e = s.next_event()) {
        log.push_back(smtp::test::describe(*e, 0));
        if (e->needs_verdict) CHECK(s.accept() == Usage::ok);
    }
    return log;
}

std::string take_output(smtp::ServerSession& s) {
    std::string out(s.pending_output());
    s.consume_output(out.size());
    return out;
}

}  // namespace

TEST_SUITE("server") {
    // ------------------------------------------------------------------ the offer

    TEST_CASE("EHLO offers STARTTLS only when ServerExtensions::starttls is on") {
        CHECK(talk(ehlo).before == ehlo_tls_reply);
        CHECK(talk(ehlo, {}, config(false)).before == ehlo_plain_reply);
        CHECK_FALSE(ServerConfig{}.extensions.starttls);  // off by default
        CHECK_FALSE(ServerConfig{}.require_tls);
    }

    TEST_CASE("with STARTTLS offered, output stays within 9 lines of 512 octets (the EHLO reply and a 421)") {
        ServerConfig c = config();
        c.extensions.dsn = true;    // every extension: the EHLO reply has 8 lines
        c.output_buffer = 8 * 512;  // raised to 9 * 512
        c.hostname = std::string(400, 'h');
        smtp::ServerSession s = greeted(c);
        std::string many;
        for (int i = 0; i < 40; ++i) many += ehlo;
        s.feed(many);
        events(s);  // nobody sends the output
        // One EHLO reply is out; the next waits, as one more could pass the bound.
        CHECK(s.pending_output().size() <= 9 * 512);
        CHECK(s.pending_output().ends_with("250-DSN\r\n250 STARTTLS\r\n"));
        CHECK(s.pending_output().find("STARTTLS") == s.pending_output().rfind("STARTTLS"));
        s.timeout();
        CHECK(s.pending_output().size() <= 9 * 512);
        CHECK(s.pending_output().ends_with("421 4.4.2 Timeout, closing connection\r\n"));
    }

    TEST_CASE("after TLS the EHLO reply does not offer STARTTLS again (RFC 3207 4.2)") {
        const Talk t = talk(ehlo + "STARTTLS\r\n", ehlo);
        CHECK(t.before == ehlo_tls_reply + ready_for_tls);
        CHECK(t.after == ehlo_plain_reply);
        CHECK(t.log == Log{"hello EHLO client.example", "tls_begin", "|", "hello EHLO client.example"});
    }

    // ------------------------------------------------------------------ the command

    TEST_CASE("STARTTLS is answered 220 2.0.0 and gives a tls_begin event that needs no verdict") {
        smtp::ServerSession s = greeted();
        CHECK_FALSE(s.in_tls());
        s.feed(ehlo + "STARTTLS\r\n");
        CHECK(events(s) == Log{"hello EHLO client.example", "tls_begin"});
        CHECK(take_output(s) == ehlo_tls_reply + ready_for_tls);
        CHECK_FALSE(s.in_tls());  // not before the program says so
        // Waiting for the handshake: the session reads nothing, but bounds the wait.
        CHECK_FALSE(s.want_read());
        CHECK(s.input_room() == std::numeric_limits<std::size_t>::max());
        CHECK(s.timeout_ms() == 300'000);
        CHECK_FALSE(s.should_close());
        CHECK(s.tls_started() == Usage::ok);
        CHECK(s.in_tls());
        CHECK(s.want_read());
        CHECK(s.timeout_ms() == 300'000);
    }

    TEST_CASE("without ENHANCEDSTATUSCODES the 220 carries no enhanced code") {
        ServerConfig c = config();
        c.extensions.enhanced_status_codes = false;
        CHECK(talk("EHLO client.example\r\nSTARTTLS\r\n", {}, c)
                  .before.ends_with("\r\n220 Ready to start TLS\r\n"));
    }

    TEST_CASE("STARTTLS before HELO/EHLO gets 503 5.5.1") {
        const Talk t = talk("STARTTLS\r\n" + ehlo);
        CHECK(t.before == bad_sequence + ehlo_tls_reply);
        CHECK(t.log == Log{"protocol_error bad_sequence 503", "hello EHLO client.example"});
    }

    TEST_CASE("STARTTLS after HELO is accepted: HELO is a successful hello too") {
        const Talk t = talk("HELO client.example\r\nSTARTTLS\r\n");
        CHECK(t.before == "250 mx.example Hello client.example\r\n" + ready_for_tls);
    }

    TEST_CASE("STARTTLS with an argument gets 501 5.5.4 (RFC 3207 4)") {
        CHECK(talk(ehlo + "STARTTLS now\r\nSTARTTLS \r\n").before ==
              ehlo_tls_reply + lines({"501 5.5.4 No arguments allowed", "501 5.5.4 No arguments allowed"}));
    }

    TEST_CASE("STARTTLS inside a transaction gets 503 5.5.1 and the transaction goes on") {
        const Talk t = talk(ehlo +
                            "MAIL FROM:<a@example.org>\r\nSTARTTLS\r\nRCPT TO:<b@example.net>\r\n"
                            "STARTTLS\r\nDATA\r\nHi\r\n.\r\n");
        CHECK(t.before == ehlo_tls_reply + mail_ok + bad_sequence + rcpt_ok + bad_sequence + go_ahead + ok);
    }

    TEST_CASE("STARTTLS not offered gets 502 5.5.1 as before, in every state but a refused connection") {
        CHECK(talk("STARTTLS\r\n" + ehlo + "STARTTLS\r\nMAIL FROM:<a@example.org>\r\nSTARTTLS\r\n", {},
                   config(false))
                  .before == "502 5.5.1 Command not implemented\r\n" + ehlo_plain_reply +
                                 "502 5.5.1 Command not implemented\r\n" + mail_ok +
                                 "502 5.5.1 Command not implemented\r\n");
    }

    TEST_CASE("a second STARTTLS inside TLS gets 503 5.5.1 TLS already active") {
        const Talk t = talk(ehlo + "STARTTLS\r\n", "STARTTLS\r\n" + ehlo + "STARTTLS\r\n");
        CHECK(t.after ==
              "503 5.5.1 TLS already active\r\n" + ehlo_plain_reply + "503 5.5.1 TLS already active\r\n");
        CHECK(t.log.back() == "protocol_error tls_active 503");
    }

    TEST_CASE("a connection refused with 554 answers STARTTLS with 503 like everything else") {
        Driver d(config(), [](const ServerEvent& e) {
            return e.kind == Kind::connect ? smtp::test::Verdict::no(554, {5, 7, 1}, "No")
                                           : smtp::test::Verdict::yes();
        });
        d.greet();
        d.feed(ehlo + "STARTTLS\r\n");
        CHECK(d.output == "554 5.7.1 No\r\n" + bad_sequence + bad_sequence);
        CHECK_FALSE(d.handshake);
    }

    // ------------------------------------------------------------------ injection

    TEST_CASE("commands pipelined behind STARTTLS are discarded, never answered (CVE-2011-0411)") {
        // Whatever the chunking, all of it arrives before the handshake: RSET and the
        // rest were sent in plaintext and must not be read as if sent over TLS.
        const Talk t = talk(ehlo + "STARTTLS\r\nRSET\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<x@exa",
                            ehlo + "MAIL FROM:<a@example.org>\r\n");
        CHECK(t.before == ehlo_tls_reply + ready_for_tls);  // one reply to STARTTLS, none for RSET
        CHECK(t.after == ehlo_plain_reply + mail_ok);       // nothing of the injection either
        CHECK(t.log == Log{"hello EHLO client.example", "tls_begin", "|", "hello EHLO client.example",
                           "mail_from <a@example.org>"});
    }

    TEST_CASE("STARTTLS and RSET in one piece: exactly one reply, RSET never executed") {
        smtp::ServerSession s = greeted();
        s.feed(ehlo);
        events(s);
        take_output(s);
        CHECK(s.feed("STARTTLS\r\nRSET\r\n") == 16);
        CHECK(events(s) == Log{"tls_begin"});
        CHECK(take_output(s) == ready_for_tls);
        CHECK(s.tls_started() == Usage::ok);
        CHECK(events(s).empty());
        CHECK(s.pending_output().empty());
    }

    TEST_CASE("bytes fed between tls_begin and tls_started() are discarded") {
        smtp::ServerSession s = greeted();
        s.feed(ehlo + "STARTTLS\r\n");
        events(s);
        CHECK(take_output(s) == ehlo_tls_reply + ready_for_tls);
        // All is taken (and dropped), however much: no buffer fills up.
        const std::string injected = "RSET\r\nMAIL FROM:<evil@example.org>\r\n" + std::string(100'000, 'x');
        CHECK(s.feed(injected) == injected.size());
        CHECK(s.feed("\r\nQUIT\r\n") == 8);
        CHECK(events(s).empty());
        CHECK(s.pending_output().empty());
        CHECK(s.tls_started() == Usage::ok);
        CHECK(events(s).empty());
        CHECK(s.pending_output().empty());
        // The stream after the handshake starts clean: no partial line is left over.
        s.feed(ehlo);
        CHECK(events(s) == Log{"hello EHLO client.example"});
        CHECK(take_output(s) == ehlo_plain_reply);
    }

    TEST_CASE("a STARTTLS behind a pending verdict discards only what follows it") {
        // Deferred verdicts: the EHLO waits for its verdict while STARTTLS and more
        // are buffered behind it.
        smtp::ServerSession s = greeted();
        s.feed(ehlo + "STARTTLS\r\nNOOP\r\n");
        auto e = s.next_event();
        REQUIRE(e);
        CHECK(e->kind == Kind::hello);
        CHECK(s.feed("NOOP\r\n") == 6);
        CHECK(s.accept() == Usage::ok);
        CHECK(events(s) == Log{"tls_begin"});
        CHECK(take_output(s) == ehlo_tls_reply + ready_for_tls);
        CHECK(s.tls_started() == Usage::ok);
        CHECK(events(s).empty());
        CHECK(s.pending_output().empty());
    }

    // ------------------------------------------------------------------ after the handshake

    TEST_CASE("after tls_started() the session forgets the HELO: MAIL without a new EHLO gets 503") {
        const Talk t = talk(ehlo + "STARTTLS\r\n",
                            "MAIL FROM:<a@example.org>\r\n" + ehlo + "MAIL FROM:<a@example.org>\r\n");
        CHECK(t.after == bad_sequence + ehlo_plain_reply + mail_ok);
    }

    TEST_CASE("after tls_started() helo_name() is empty until the next EHLO") {
        smtp::ServerSession s = greeted();
        s.feed(ehlo + "STARTTLS\r\n");
        events(s);
        take_output(s);
        CHECK(s.helo_name() == "client.example");
        CHECK(s.tls_started() == Usage::ok);
        CHECK(s.helo_name().empty());
        s.feed("EHLO other.example\r\n");
        events(s);
        CHECK(s.helo_name() == "other.example");
    }

    TEST_CASE("a whole message over TLS, in every chunking on both sides of the handshake") {
        const Talk t = talk(ehlo + "STARTTLS\r\n", message + "QUIT\r\n");
        CHECK(t.before == ehlo_tls_reply + ready_for_tls);
        CHECK(t.after == ehlo_plain_reply + mail_ok + rcpt_ok + go_ahead + ok + "221 2.0.0 Bye\r\n");
        CHECK(t.log == Log{"hello EHLO client.example", "tls_begin", "|", "hello EHLO client.example",
                           "mail_from <a@example.org>", "rcpt_to <b@example.net>", "data_begin",
                           "message_end 4 octets", "quit"});
        CHECK(t.closed);
    }

    TEST_CASE("protocol() is ESMTPS after TLS, UTF8SMTPS for SMTPUTF8 mail (RFC 3848, RFC 6531)") {
        Driver d(config());
        d.greet();
        d.feed(ehlo);
        CHECK(d.session.protocol() == "ESMTP");
        d.feed("STARTTLS\r\n");
        d.tls_started();
        CHECK(d.session.protocol() == "ESMTPS");  // STARTTLS is ESMTP: even before EHLO
        d.feed(message);
        CHECK(d.session.protocol() == "ESMTPS");
        d.feed("MAIL FROM:<a@example.org> SMTPUTF8\r\nRCPT TO:<b@example.net>\r\nDATA\r\nx\r\n.\r\n");
        CHECK(d.session.protocol() == "UTF8SMTPS");
        d.feed("HELO client.example\r\n");
        CHECK(d.session.protocol() == "ESMTPS");
        CHECK(d.log.back() == "hello HELO client.example");
    }

    // ------------------------------------------------------------------ require_tls

    TEST_CASE("require_tls: MAIL, RCPT and DATA get 530 5.7.0 before TLS and MAIL is accepted after") {
        ServerConfig c = config();
        c.require_tls = true;
        const Talk t = talk(ehlo +
                                "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
                                "NOOP\r\nRSET\r\nVRFY x\r\nSTARTTLS\r\n",
                            message, c);
        CHECK(t.before == ehlo_tls_reply + must_starttls + must_starttls + must_starttls + ok + ok +
                              "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n" +
                              ready_for_tls);
        CHECK(t.after == ehlo_plain_reply + mail_ok + rcpt_ok + go_ahead + ok);
        CHECK(t.log[1] == "protocol_error tls_required 530");
    }

    TEST_CASE("require_tls: a 530 counts towards max_errors") {
        ServerConfig c = config();
        c.require_tls = true;
        c.max_errors = 2;
        const Talk t = talk(ehlo +
                                "MAIL FROM:<a@example.org>\r\nMAIL FROM:<a@example.org>\r\n"
                                "MAIL FROM:<a@example.org>\r\n",
                            {}, c);
        CHECK(t.before == ehlo_tls_reply + must_starttls + must_starttls + must_starttls +
                              "421 4.7.0 Too many errors, closing connection\r\n");
        CHECK(t.closed);
    }

    // ------------------------------------------------------------------ misuse, timeouts

    TEST_CASE(
        "tls_started() with no handshake awaited, before the 220 was sent, or once closed changes nothing") {
        smtp::ServerSession s = greeted();
        CHECK(s.tls_started() == Usage::no_verdict_pending);
        s.feed(ehlo + "STARTTLS\r\n");
        events(s);
        CHECK(s.tls_started() == Usage::output_pending);  // the 220 must go out in plaintext
        CHECK_FALSE(s.in_tls());
        s.consume_output(s.pending_output().size() - 1);
        CHECK(s.tls_started() == Usage::output_pending);
        s.consume_output(1);
        CHECK(s.tls_started() == Usage::ok);
        CHECK(s.tls_started() == Usage::no_verdict_pending);  // once is enough
        s.feed("QUIT\r\n");
        events(s);
        take_output(s);
        CHECK(s.should_close());
        CHECK(s.tls_started() == Usage::closed);
    }

    TEST_CASE("timeout() and shutdown() during the handshake close without a reply") {
        for (const bool shutdown : {false, true}) {
            CAPTURE(shutdown);
            smtp::ServerSession s = greeted();
            s.feed(ehlo + "STARTTLS\r\n");
            events(s);
            take_output(s);
            shutdown ? s.shutdown() : s.timeout();
            CHECK(events(s) == Log{"closing 0"});
            CHECK(s.pending_output().empty());  // no plaintext into the handshake
            CHECK(s.should_close());
            CHECK(s.tls_started() == Usage::closed);
        }
    }

    TEST_CASE("after TLS, timeout() answers 421 as usual") {
        smtp::ServerSession s = greeted();
        s.feed(ehlo + "STARTTLS\r\n");
        events(s);
        take_output(s);
        s.tls_started();
        s.timeout();
        CHECK(take_output(s) == "421 4.4.2 Timeout, closing connection\r\n");
        CHECK(s.should_close());
    }

    TEST_CASE("a session moved during the handshake goes on where it was") {
        smtp::ServerSession a = greeted();
        a.feed(ehlo + "STARTTLS\r\n");
        events(a);
        take_output(a);
        smtp::ServerSession b(std::move(a));
        CHECK(b.feed("RSET\r\n") == 6);
        CHECK(b.tls_started() == Usage::ok);
        b.feed(ehlo);
        CHECK(events(b) == Log{"hello EHLO client.example"});
        CHECK(take_output(b) == ehlo_plain_reply);
    }

    // ------------------------------------------------------------------ the state table

    TEST_CASE("the state table: STARTTLS leads from ready to tls, the handshake back to start") {
        using smtp::detail::ServerInput;
        using smtp::detail::ServerState;
        const auto& go = smtp::detail::server_transition(ServerState::ready, ServerInput::starttls);
        CHECK(go.refusal == Errc::ok);
        CHECK_FALSE(go.verdict);
        CHECK(go.to == ServerState::tls);
        const auto& back = smtp::detail::server_transition(ServerState::tls, ServerInput::tls_started);
        CHECK(back.refusal == Errc::ok);
        CHECK(back.to == ServerState::start);
        for (const ServerState s :
             {ServerState::start, ServerState::mail, ServerState::rcpt, ServerState::refused})
            CHECK(smtp::detail::server_transition(s, ServerInput::starttls).refusal == Errc::bad_sequence);
        // Nothing is read in tls: every command there is refused by the table too.
        CHECK(smtp::detail::server_transition(ServerState::tls, ServerInput::rset).refusal ==
              Errc::bad_sequence);
        CHECK(smtp::detail::state_name(ServerState::tls) == "tls");
        CHECK(smtp::detail::input_name(ServerInput::tls_started) == "TLS started");
    }

    TEST_CASE("530 5.7.0 and 503 5.5.1 for TLS come from the error table") {
        CHECK(smtp::error_info(Errc::tls_required).reply_code == 530);
        CHECK(smtp::error_info(Errc::tls_required).status == smtp::EnhancedStatus{5, 7, 0});
        CHECK(smtp::error_info(Errc::tls_active).reply_code == 503);
        CHECK(smtp::error_info(Errc::tls_active).status == smtp::EnhancedStatus{5, 5, 1});
    }
}
