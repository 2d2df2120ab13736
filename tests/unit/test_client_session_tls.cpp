// Unit tests of ClientSession's STARTTLS (RFC 3207): the test plays the server and
// the TLS layer. Each TlsPolicy against a server that offers STARTTLS, does not,
// or refuses it; the handshake succeeding (tls_started()) or failing
// (tls_failed()); plaintext injected after the 220; one `ready` with the final
// capabilities; and the exact bytes written and events reported.
#include <smtp/client_session.hpp>

#include "chunking.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using smtp::ClientEvent;
using smtp::ConnectionFailure;
using smtp::TlsPolicy;
using smtp::Usage;
using Kind = ClientEvent::Kind;

// "ready", "tls_begin", "body 1", "rcpt 1.0 temporary 451 local", "failed tls_failed
// 451 local", "closed": as in test_client_session.cpp.
std::string describe(const ClientEvent& e) {
    const std::string code =
        e.reply == nullptr ? "" : ' ' + std::to_string(e.reply->code) + (e.local ? " local" : "");
    const std::string id = std::to_string(e.message);
    switch (e.kind) {
        case Kind::ready:
            return "ready";
        case Kind::tls_begin:
            return "tls_begin";
        case Kind::need_body:
            return "body " + id;
        case Kind::recipient_result:
            return "rcpt " + id + '.' + std::to_string(e.recipient) + ' ' +
                   std::string(smtp::outcome_name(e.outcome)) + code;
        case Kind::message_result:
            return "message " + id + " delivered=" + std::to_string(e.delivered) + ' ' +
                   std::string(smtp::outcome_name(e.outcome)) + code;
        case Kind::failed:
            return "failed " + std::string(smtp::failure_name(e.failure)) + code;
        case Kind::closed:
            return "closed" + code;
    }
    return "?";
}

smtp::ClientConfig config(TlsPolicy tls) {
    smtp::ClientConfig c;
    c.helo_name = "client.example.org";
    c.tls = tls;
    return c;
}

smtp::OutgoingMessage message(std::vector<std::string> recipients = {"b@example.net"}) {
    smtp::OutgoingMessage m;
    m.sender = "a@example.org";
    m.recipients = std::move(recipients);
    return m;
}

constexpr std::string_view greeting = "220 mx.example.net ESMTP\r\n";
constexpr std::string_view ehlo = "EHLO client.example.org\r\n";
constexpr std::string_view ehlo_starttls =
    "250-mx.example.net\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 STARTTLS\r\n";
constexpr std::string_view ehlo_no_starttls = "250-mx.example.net\r\n250-PIPELINING\r\n250 8BITMIME\r\n";
constexpr std::string_view ehlo_in_tls =
    "250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 ENHANCEDSTATUSCODES\r\n";
constexpr std::string_view ready_for_tls = "220 2.0.0 Ready to start TLS\r\n";
constexpr std::string_view group = "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n";

// The session under test and the server's side, played by the test.
struct Client {
    explicit Client(TlsPolicy tls) : session(config(tls)) {}

    std::string sent() {
        std::string out(session.pending_output());
        session.consume_output(out.size());
        return out;
    }
    void server(std::string_view bytes) { session.feed(bytes); }
    std::string events() {
        std::string all;
        while (const auto e = session.next_event()) {
            if (e->kind == Kind::failed) failure = e->reply->to_string();
            all += (all.empty() ? "" : ", ") + describe(*e);
        }
        return all;
    }
    // Greeting, EHLO with `reply`; returns the events.
    std::string hello(std::string_view reply) {
        server(greeting);
        CHECK(sent() == ehlo);
        server(reply);
        return events();
    }
    // Up to the handshake: EHLO offering STARTTLS, STARTTLS, its 220.
    void up_to_handshake() {
        CHECK(hello(ehlo_starttls).empty());  // no ready yet: STARTTLS comes first
        CHECK(sent() == "STARTTLS\r\n");
        server(ready_for_tls);
        CHECK(events() == "tls_begin");
        CHECK(sent().empty());
    }
    // The rest of one delivery from the pipelined group on.
    void deliver() {
        CHECK(sent() == group);
        server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 Go ahead\r\n");
        CHECK(events() == "body 1");
        session.write_body("Hi\r\n");
        session.end_body();
        CHECK(sent() == "Hi\r\n.\r\n");
        server("250 2.0.0 Ok\r\n");
        CHECK(events() == "rcpt 1.0 delivered 250, message 1 delivered=1 delivered 250");
        CHECK(sent() == "QUIT\r\n");
        server("221 2.0.0 Bye\r\n");
        CHECK(events() == "closed 221");
        CHECK(session.should_close());
    }

    smtp::ClientSession session;
    std::string failure;  // the failed event's reply, as text
};

}  // namespace

TEST_SUITE("client") {
    TEST_CASE("TlsPolicy is none by default: STARTTLS offered is not used") {
        CHECK(smtp::ClientConfig{}.tls == TlsPolicy::none);
        Client c(TlsPolicy::none);
        c.session.submit(message());
        c.session.quit();
        CHECK(c.hello(ehlo_starttls) == "ready");
        CHECK(c.session.capabilities().starttls);
        CHECK_FALSE(c.session.in_tls());
        c.deliver();
    }

    TEST_CASE(
        "may with STARTTLS offered: STARTTLS, tls_begin, EHLO again after tls_started(), then delivery") {
        Client c(TlsPolicy::may);
        c.session.submit(message());  // waits for the final ready
        c.session.quit();
        c.up_to_handshake();
        // The handshake: nothing to read in plaintext, a bound on the wait.
        CHECK_FALSE(c.session.want_read());
        CHECK(c.session.timeout_ms() == 300'000);
        CHECK_FALSE(c.session.in_tls());
        CHECK(c.session.tls_started() == Usage::ok);
        CHECK(c.session.in_tls());
        CHECK(c.session.want_read());
        // RFC 3207 4.2: the old capabilities are forgotten until the new EHLO reply.
        CHECK_FALSE(c.session.capabilities().starttls);
        CHECK_FALSE(c.session.capabilities().esmtp);
        CHECK(c.sent() == ehlo);
        c.server(ehlo_in_tls);
        CHECK(c.events() == "ready");
        CHECK(c.session.capabilities().size == 1000u);
        CHECK_FALSE(c.session.capabilities().eight_bit_mime);
        CHECK_FALSE(c.session.capabilities().starttls);
        c.deliver();
    }

    TEST_CASE("encrypt with STARTTLS offered delivers over TLS") {
        Client c(TlsPolicy::encrypt);
        c.session.submit(message());
        c.session.quit();
        c.up_to_handshake();
        CHECK(c.session.tls_started() == Usage::ok);
        CHECK(c.sent() == ehlo);
        c.server(ehlo_in_tls);
        CHECK(c.events() == "ready");
        c.deliver();
    }

    TEST_CASE("may without STARTTLS offered delivers in plaintext as without TLS") {
        Client c(TlsPolicy::may);
        c.session.submit(message());
        c.session.quit();
        CHECK(c.hello(ehlo_no_starttls) == "ready");
        CHECK_FALSE(c.session.in_tls());
        c.deliver();
    }

    TEST_CASE("encrypt without STARTTLS offered fails as tls_unavailable: every recipient temporary, QUIT") {
        Client c(TlsPolicy::encrypt);
        c.session.submit(message({"b@example.net", "c@example.net"}));
        c.session.submit(message());
        CHECK(c.hello(ehlo_no_starttls) ==
              "failed tls_unavailable 451 local, rcpt 1.0 temporary 451 local, rcpt 1.1 temporary 451 local, "
              "message 1 delivered=0 temporary 451 local, rcpt 2.0 temporary 451 local, "
              "message 2 delivered=0 temporary 451 local, closed");
        CHECK(c.failure == "451 4.7.4 TLS is required, but STARTTLS was not offered\r\n");
        CHECK(c.sent() == "QUIT\r\n");  // nothing else in plaintext
        CHECK(c.session.should_close());
    }

    TEST_CASE("encrypt against a server that only knows HELO fails as tls_unavailable") {
        Client c(TlsPolicy::encrypt);
        c.session.submit(message());
        c.server(greeting);
        c.sent();
        c.server("502 5.5.1 Command not implemented\r\n");
        CHECK(c.sent() == "HELO client.example.org\r\n");
        c.server("250 mx.example.net\r\n");
        CHECK(c.events() ==
              "failed tls_unavailable 451 local, rcpt 1.0 temporary 451 local, "
              "message 1 delivered=0 temporary 451 local, closed");
        CHECK(c.sent() == "QUIT\r\n");
    }

    TEST_CASE("STARTTLS refused with 454: may goes on in plaintext on the same connection") {
        Client c(TlsPolicy::may);
        c.session.submit(message());
        c.session.quit();
        CHECK(c.hello(ehlo_starttls).empty());
        CHECK(c.sent() == "STARTTLS\r\n");
        c.server("454 4.7.0 TLS not available due to temporary reason\r\n");
        CHECK(c.events() == "ready");
        CHECK(c.session.capabilities().starttls);  // offered, though refused
        CHECK_FALSE(c.session.in_tls());
        c.deliver();
    }

    TEST_CASE("STARTTLS refused with 454 or 501: encrypt fails as tls_unavailable and sends QUIT") {
        for (const std::string_view refusal :
             {"454 4.7.0 TLS not available due to temporary reason\r\n", "501 5.5.4 Syntax error\r\n"}) {
            CAPTURE(refusal);
            Client c(TlsPolicy::encrypt);
            c.session.submit(message());
            CHECK(c.hello(ehlo_starttls).empty());
            CHECK(c.sent() == "STARTTLS\r\n");
            c.server(refusal);
            // Temporary even after a 5xx: another server (or a later try) may do TLS.
            CHECK(c.events() ==
                  "failed tls_unavailable 451 local, rcpt 1.0 temporary 451 local, "
                  "message 1 delivered=0 temporary 451 local, closed");
            CHECK(c.failure == "451 4.7.4 TLS is required, but STARTTLS was refused: " +
                                   std::string(refusal.substr(0, refusal.size() - 2)) + "\r\n");
            CHECK(c.sent() == "QUIT\r\n");
        }
    }

    TEST_CASE("421 to STARTTLS is the server closing, whatever the policy") {
        Client c(TlsPolicy::may);
        c.session.submit(message());
        CHECK(c.hello(ehlo_starttls).empty());
        c.sent();
        c.server("421 4.3.2 Shutting down\r\n");
        CHECK(c.events() ==
              "failed closed_by_server 421, rcpt 1.0 temporary 421, message 1 delivered=0 temporary 421, "
              "closed");
        CHECK(c.sent().empty());
    }

    TEST_CASE("a 250 or a 354 to STARTTLS is a protocol error: only 220 starts TLS") {
        for (const std::string_view reply : {"250 2.0.0 Ok\r\n", "354 Go ahead\r\n"}) {
            CAPTURE(reply);
            Client c(TlsPolicy::may);
            c.session.submit(message());
            CHECK(c.hello(ehlo_starttls).empty());
            c.sent();
            c.server(reply);
            CHECK(c.events().starts_with("failed protocol_error 451 local, rcpt 1.0 temporary 451 local"));
            CHECK(c.failure ==
                  "451 4.5.0 Protocol error: reply " + std::string(reply.substr(0, 3)) + " to STARTTLS\r\n");
        }
    }

    TEST_CASE("tls_failed: failed tls_failed, every recipient temporary 451 4.7.5, no QUIT") {
        Client c(TlsPolicy::may);
        c.session.submit(message({"b@example.net", "c@example.net"}));
        c.up_to_handshake();
        CHECK(c.session.tls_failed("certificate verify failed\r\nQUIT") == Usage::ok);
        CHECK(c.events() ==
              "failed tls_failed 451 local, rcpt 1.0 temporary 451 local, rcpt 1.1 temporary 451 local, "
              "message 1 delivered=0 temporary 451 local, closed");
        // The reason is kept on one line: CR and LF became spaces.
        CHECK(c.failure == "451 4.7.5 TLS handshake failed: certificate verify failed  QUIT\r\n");
        CHECK(c.sent().empty());  // a plaintext QUIT would go into the handshake
        CHECK(c.session.should_close());
        CHECK_FALSE(c.session.in_tls());
        CHECK(c.session.submit(message()) == 2);  // too late: fails at once
        CHECK(c.events() == "rcpt 2.0 temporary 451 local, message 2 delivered=0 temporary 451 local");
    }

    TEST_CASE("server bytes after the 220 in the same read: protocol error, no tls_begin") {
        Client c(TlsPolicy::may);
        c.session.submit(message());
        CHECK(c.hello(ehlo_starttls).empty());
        c.sent();
        c.server(std::string(ready_for_tls) + "250-mx.example.net\r\n250 AUTH PLAIN\r\n");
        CHECK(c.events() ==
              "failed protocol_error 451 local, rcpt 1.0 temporary 451 local, "
              "message 1 delivered=0 temporary 451 local, closed");
        CHECK(c.failure == "451 4.5.0 Protocol error: data after the 220 reply to STARTTLS\r\n");
        CHECK(c.sent().empty());
        CHECK(c.session.tls_started() == Usage::closed);
    }

    TEST_CASE("even a partial line after the 220 is plaintext injected: protocol error") {
        Client c(TlsPolicy::may);
        CHECK(c.hello(ehlo_starttls).empty());
        c.sent();
        c.server(std::string(ready_for_tls) + "2");
        CHECK(c.events() == "failed protocol_error 451 local, closed");
    }

    TEST_CASE("server bytes fed after tls_begin but before tls_started(): protocol error") {
        Client c(TlsPolicy::encrypt);
        c.session.submit(message());
        c.up_to_handshake();
        c.server("");  // nothing is nothing
        CHECK(c.events().empty());
        c.server("250 ok\r\n");
        CHECK(c.events() ==
              "failed protocol_error 451 local, rcpt 1.0 temporary 451 local, "
              "message 1 delivered=0 temporary 451 local, closed");
        CHECK(c.session.tls_started() == Usage::closed);
        CHECK(c.session.tls_failed("x") == Usage::closed);
        CHECK(c.sent().empty());
    }

    TEST_CASE("tls_started() and tls_failed() with no handshake awaited change nothing") {
        Client c(TlsPolicy::may);
        CHECK(c.session.tls_started() == Usage::no_verdict_pending);
        CHECK(c.session.tls_failed("x") == Usage::no_verdict_pending);
        CHECK(c.hello(ehlo_starttls).empty());
        CHECK(c.session.tls_started() == Usage::no_verdict_pending);  // STARTTLS not yet answered
        CHECK(c.sent() == "STARTTLS\r\n");
        c.server(ready_for_tls);
        CHECK(c.events() == "tls_begin");
        CHECK(c.session.tls_started() == Usage::ok);
        CHECK(c.session.tls_started() == Usage::no_verdict_pending);
        CHECK(c.session.tls_failed("x") == Usage::no_verdict_pending);
        CHECK(c.sent() == ehlo);
    }

    TEST_CASE("after TLS, EHLO refused with 5xx falls back to HELO, still in TLS, and no second STARTTLS") {
        Client c(TlsPolicy::encrypt);
        c.up_to_handshake();
        c.session.tls_started();
        CHECK(c.sent() == ehlo);
        c.server("500 5.5.2 What?\r\n");
        CHECK(c.sent() == "HELO client.example.org\r\n");
        c.server("250 mx.example.net\r\n");
        CHECK(c.events() == "ready");
        CHECK(c.session.in_tls());
    }

    TEST_CASE("a server offering STARTTLS again after TLS is not asked twice") {
        Client c(TlsPolicy::may);
        c.session.submit(message());
        c.session.quit();
        c.up_to_handshake();
        c.session.tls_started();
        CHECK(c.sent() == ehlo);
        c.server(ehlo_starttls);  // broken: RFC 3207 4.2 forbids it
        CHECK(c.events() == "ready");
        c.deliver();
    }

    TEST_CASE("the TLS conversation gives the same events and bytes at every split of each reply") {
        const std::vector<std::string> steps = {
            std::string(greeting),
            std::string(ehlo_starttls),
            std::string(ready_for_tls),
            std::string(ehlo_in_tls),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 Go\r\n",
            "250 2.0.0 Queued\r\n",
            "221 Bye\r\n",
        };
        const std::string expected =
            "tls_begin | ready | body 1 | rcpt 1.0 delivered 250, message 1 delivered=1 delivered 250 | "
            "closed 221";
        const std::string expected_out =
            "EHLO client.example.org\r\n|STARTTLS\r\n|EHLO client.example.org\r\n|" + std::string(group) +
            "|Hi\r\n.\r\n|QUIT\r\n";
        for (std::size_t chunked = 0; chunked < steps.size(); ++chunked) {
            smtp::test::for_each_chunking(
                steps[chunked], [&](const std::vector<std::string_view>& pieces, const std::string& label) {
                    CAPTURE(chunked);
                    CAPTURE(label);
                    Client c(TlsPolicy::may);
                    c.session.submit(message());
                    c.session.quit();
                    std::string events, out;
                    for (std::size_t i = 0; i < steps.size(); ++i) {
                        if (i == chunked)
                            for (const std::string_view piece : pieces) c.server(piece);
                        else
                            c.server(steps[i]);
                        const std::string e = c.events();
                        if (e == "tls_begin") CHECK(c.session.tls_started() == Usage::ok);
                        if (e == "body 1") {
                            c.session.write_body("Hi\r\n");
                            c.session.end_body();
                        }
                        if (!e.empty()) events += (events.empty() ? "" : " | ") + e;
                        const std::string o = c.sent();
                        if (!o.empty()) out += (out.empty() ? "" : "|") + o;
                    }
                    CHECK(events == expected);
                    CHECK(out == expected_out);
                    CHECK(c.session.should_close());
                });
        }
    }

    TEST_CASE("failure_name names the TLS failures") {
        CHECK(smtp::failure_name(ConnectionFailure::tls_unavailable) == "tls_unavailable");
        CHECK(smtp::failure_name(ConnectionFailure::tls_failed) == "tls_failed");
    }

    TEST_CASE("a session moved during the handshake goes on where it was") {
        Client c(TlsPolicy::may);
        c.up_to_handshake();
        smtp::ClientSession moved(std::move(c.session));
        CHECK(moved.tls_started() == Usage::ok);
        CHECK(moved.pending_output() == ehlo);
    }
}
