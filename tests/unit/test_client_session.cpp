// Tests of ClientSession: the test plays the server. It feeds scripted replies and
// checks the exact bytes the client sends and the exact events it reports; and
// that every recipient and message gets exactly one result, whatever happens.
#include <smtp/client_session.hpp>

#include "chunking.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using namespace std::literals;
using smtp::ClientEvent;
using smtp::failure_name;
using smtp::outcome_name;
using Kind = smtp::ClientEvent::Kind;

// " 250" for a server reply, " 554 local" for one the session made, "" for none.
std::string reply_code(const ClientEvent& e) {
    if (e.reply == nullptr) return e.local ? " local" : "";
    return ' ' + std::to_string(e.reply->code) + (e.local ? " local" : "");
}

// One event as text: "ready", "body 1", "rcpt 1.0 delivered 250",
// "message 1 delivered=1 delivered 250", "failed timeout 451 local", "closed".
std::string describe(const ClientEvent& e) {
    const std::string id = std::to_string(e.message);
    switch (e.kind) {
        case Kind::ready:
            return "ready";
        case Kind::need_body:
            return "body " + id;
        case Kind::recipient_result:
            return "rcpt " + id + '.' + std::to_string(e.recipient) + ' ' +
                   std::string(outcome_name(e.outcome)) + reply_code(e);
        case Kind::message_result:
            return "message " + id + " delivered=" + std::to_string(e.delivered) + ' ' +
                   std::string(outcome_name(e.outcome)) + reply_code(e);
        case Kind::failed:
            return "failed " + std::string(failure_name(e.failure)) + reply_code(e);
        case Kind::closed:
            return "closed" + reply_code(e);
        case Kind::tls_begin:
            return "tls_begin";
    }
    return "?";
}

smtp::OutgoingMessage message(std::string sender, std::vector<std::string> recipients) {
    smtp::OutgoingMessage m;
    m.sender = std::move(sender);
    m.recipients = std::move(recipients);
    return m;
}

smtp::ClientConfig config(bool pipelining = true) {
    smtp::ClientConfig c;
    c.helo_name = "client.example.org";
    c.use_pipelining = pipelining;
    return c;
}

constexpr std::string_view greeting = "220 mx.example.net ESMTP\r\n";
constexpr std::string_view ehlo_plain = "250 mx.example.net\r\n";
constexpr std::string_view ehlo_pipelining =
    "250-mx.example.net\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
    "250 ENHANCEDSTATUSCODES\r\n";

// The session under test, the server's side played by the test. It also keeps the
// books: one result per recipient, one per message, results in order.
class Client {
public:
    explicit Client(smtp::ClientConfig c = config()) : session(std::move(c)) {}

    std::uint64_t submit(smtp::OutgoingMessage m) {
        const std::size_t n = m.recipients.size();
        const std::uint64_t id = session.submit(std::move(m));
        recipients_[id] = n;
        return id;
    }

    // What the client wrote, taken as sent.
    std::string sent() {
        std::string out(session.pending_output());
        session.consume_output(out.size());
        return out;
    }

    void server(std::string_view bytes) { session.feed(bytes); }

    // Every event since the last call, described, separated by ", ".
    std::string events() {
        std::string all;
        while (const auto e = session.next_event()) {
            record(*e);
            if (!all.empty()) all += ", ";
            all += describe(*e);
        }
        return all;
    }

    // Greeting and EHLO done with `ehlo_reply`.
    void connect(std::string_view ehlo_reply = ehlo_pipelining) {
        server(greeting);
        CHECK(sent() == "EHLO client.example.org\r\n");
        server(ehlo_reply);
        CHECK(events() == "ready");
    }

    // Every submitted recipient got exactly one result and every message one
    // message_result after them.
    bool all_finished() const {
        for (const auto& [id, n] : recipients_) {
            const auto r = rcpt_results_.find(id);
            const std::size_t got = r == rcpt_results_.end() ? 0 : r->second;
            const auto m = message_results_.find(id);
            if (got != n || m == message_results_.end() || m->second != 1) return false;
        }
        return ok_;
    }

    smtp::ClientSession session;

private:
    void record(const ClientEvent& e) {
        if (e.kind == Kind::recipient_result) {
            // No result after the message's own, none twice for one recipient.
            if (message_results_.count(e.message) != 0 || !seen_.insert({e.message, e.recipient}).second)
                ok_ = false;
            ++rcpt_results_[e.message];
        }
        if (e.kind == Kind::message_result) ++message_results_[e.message];
        if (e.reply == nullptr && (e.kind == Kind::recipient_result || e.kind == Kind::message_result))
            ok_ = false;
    }

    std::map<std::uint64_t, std::size_t> recipients_, rcpt_results_, message_results_;
    std::set<std::pair<std::uint64_t, std::size_t>> seen_;
    bool ok_ = true;
};

}  // namespace

TEST_SUITE("client") {
    TEST_CASE("a 220 greeting is answered with EHLO and its reply makes the session ready") {
        Client c;
        CHECK(c.sent().empty());
        CHECK(c.session.timeout_ms() == 300'000);
        c.server(greeting);
        CHECK(c.sent() == "EHLO client.example.org\r\n");
        CHECK(c.events().empty());
        c.server(ehlo_pipelining);
        CHECK(c.events() == "ready");
        const smtp::ServerCapabilities& caps = c.session.capabilities();
        CHECK(caps.esmtp);
        CHECK(caps.pipelining);
        CHECK(caps.size == 1000000u);
        CHECK(caps.eight_bit_mime);
        CHECK(caps.smtputf8);
        CHECK(caps.enhanced_status_codes);
        CHECK_FALSE(caps.dsn);
        CHECK_FALSE(caps.starttls);
        CHECK_FALSE(caps.chunking);
        CHECK(c.session.timeout_ms() == 0);  // idle: nothing awaited
        CHECK(c.session.want_read());
        CHECK_FALSE(c.session.want_write());
    }

    TEST_CASE("EHLO keywords are case-insensitive and SIZE without a number means no fixed limit") {
        Client c;
        c.connect(
            "250-mx greets you\r\n250-pipelining\r\n250-Size\r\n250-dsn\r\n250-StartTLS\r\n"
            "250-chunking\r\n250-8bitmime extra\r\n250-SMTPUTF8\r\n250-X-UNKNOWN 1 2\r\n"
            "250 enhancedstatuscodes\r\n");
        const smtp::ServerCapabilities& caps = c.session.capabilities();
        CHECK(caps.pipelining);
        CHECK(caps.size == 0u);
        CHECK(caps.dsn);
        CHECK(caps.starttls);
        CHECK(caps.chunking);
        CHECK(caps.eight_bit_mime);
        CHECK(caps.smtputf8);
        CHECK(caps.enhanced_status_codes);
    }

    TEST_CASE("the first EHLO line is the server's name, never a keyword") {
        Client c;
        c.connect("250 PIPELINING\r\n");
        CHECK(c.session.capabilities().esmtp);
        CHECK_FALSE(c.session.capabilities().pipelining);
        CHECK_FALSE(c.session.capabilities().size.has_value());
    }

    TEST_CASE("an unreadable SIZE value is taken as no fixed limit") {
        Client c;
        c.connect("250-mx\r\n250-SIZE lots\r\n250 SIZE 99999999999999999999999\r\n");
        CHECK(c.session.capabilities().size == 0u);
    }

    TEST_CASE("EHLO refused with 502 falls back to HELO") {
        Client c;
        c.server(greeting);
        CHECK(c.sent() == "EHLO client.example.org\r\n");
        c.server("502 5.5.1 Command not implemented\r\n");
        CHECK(c.sent() == "HELO client.example.org\r\n");
        CHECK(c.events().empty());
        c.server("250 mx.example.net\r\n");
        CHECK(c.events() == "ready");
        CHECK_FALSE(c.session.capabilities().esmtp);
        CHECK_FALSE(c.session.capabilities().pipelining);
    }

    TEST_CASE("EHLO and HELO both refused fail as greeting_refused and QUIT is sent") {
        Client c;
        c.submit(message("a@example.org", {"b@example.net"}));
        c.server(greeting);
        c.sent();
        c.server("500 5.5.2 What?\r\n");
        CHECK(c.sent() == "HELO client.example.org\r\n");
        c.server("504 5.5.2 Helo command rejected\r\n");
        CHECK(c.events() ==
              "failed greeting_refused 504, rcpt 1.0 permanent 504, message 1 delivered=0 permanent 504, "
              "closed");
        CHECK(c.sent() == "QUIT\r\n");
        CHECK(c.session.should_close());
        CHECK(c.all_finished());
    }

    TEST_CASE("EHLO answered with 451 fails the connection temporarily without trying HELO") {
        Client c;
        c.submit(message("a@example.org", {"b@example.net"}));
        c.server(greeting);
        c.sent();
        c.server("451 4.3.0 Try later\r\n");
        CHECK(c.events() ==
              "failed greeting_refused 451, rcpt 1.0 temporary 451, message 1 delivered=0 temporary 451, "
              "closed");
        CHECK(c.sent() == "QUIT\r\n");
        CHECK(c.all_finished());
    }

    TEST_CASE("a 554 greeting fails every queued recipient permanently, then QUIT") {
        Client c;
        c.submit(message("a@example.org", {"b@example.net", "c@example.net"}));
        c.submit(message("a@example.org", {"d@example.net"}));
        c.server("554 5.7.1 No service for you\r\n");
        CHECK(c.events() ==
              "failed greeting_refused 554, rcpt 1.0 permanent 554, rcpt 1.1 permanent 554, "
              "message 1 delivered=0 permanent 554, rcpt 2.0 permanent 554, message 2 delivered=0 permanent "
              "554, "
              "closed");
        CHECK_FALSE(c.session.should_close());  // the QUIT is still to be written
        CHECK(c.sent() == "QUIT\r\n");
        CHECK(c.session.should_close());
        CHECK_FALSE(c.session.want_read());
        CHECK(c.all_finished());
    }

    TEST_CASE("a 421 greeting fails every queued recipient temporarily and sends nothing") {
        Client c;
        c.submit(message("a@example.org", {"b@example.net"}));
        c.server("421 4.3.2 Busy\r\n");
        CHECK(c.events() ==
              "failed greeting_refused 421, rcpt 1.0 temporary 421, message 1 delivered=0 temporary 421, "
              "closed");
        CHECK(c.sent().empty());
        CHECK(c.session.should_close());
        CHECK(c.all_finished());
    }

    TEST_CASE("a 2xx greeting other than 220 is refused and delivers nothing") {
        Client c;
        c.submit(message("a@example.org", {"b@example.net"}));
        c.server("250 Hello?\r\n");
        CHECK(c.events() ==
              "failed greeting_refused 250, rcpt 1.0 temporary 250, message 1 delivered=0 temporary 250, "
              "closed");
        CHECK(c.all_finished());
    }

    TEST_CASE("the failed event carries the server's reply") {
        Client c;
        c.server("554-mx.example.net\r\n554 5.7.1 Go away\r\n");
        const auto e = c.session.next_event();
        REQUIRE(e);
        CHECK(e->kind == Kind::failed);
        REQUIRE(e->reply != nullptr);
        CHECK(e->reply->lines == std::vector<std::string>{"mx.example.net", "5.7.1 Go away"});
        CHECK_FALSE(e->local);
    }

    TEST_CASE("without PIPELINING every command waits for its reply") {
        Client c;
        c.connect(ehlo_plain);
        const auto id = c.submit(message("a@example.org", {"b@example.net", "c@example.net"}));
        CHECK(id == 1);
        CHECK(c.sent() == "MAIL FROM:<a@example.org>\r\n");
        c.server("250 2.1.0 Ok\r\n");
        CHECK(c.sent() == "RCPT TO:<b@example.net>\r\n");
        c.server("250 2.1.5 Ok\r\n");
        CHECK(c.sent() == "RCPT TO:<c@example.net>\r\n");
        c.server("250 2.1.5 Ok\r\n");
        CHECK(c.sent() == "DATA\r\n");
        CHECK(c.session.timeout_ms() == 120'000);
        c.server("354 End data with <CR><LF>.<CR><LF>\r\n");
        CHECK(c.events() == "body 1");
        CHECK(c.session.timeout_ms() == 180'000);
        CHECK(c.session.write_body("Subject: hi\r\n\r\nHello\r\n") == smtp::Usage::ok);
        CHECK(c.session.end_body() == smtp::Usage::ok);
        CHECK(c.sent() == "Subject: hi\r\n\r\nHello\r\n.\r\n");
        CHECK(c.session.timeout_ms() == 600'000);
        c.server("250 2.0.0 Ok: queued as 4F2A1\r\n");
        CHECK(c.events() ==
              "rcpt 1.0 delivered 250, rcpt 1.1 delivered 250, message 1 delivered=2 delivered 250");
        CHECK(c.sent().empty());
        c.session.quit();
        CHECK(c.sent() == "QUIT\r\n");
        CHECK(c.session.timeout_ms() == 300'000);
        CHECK_FALSE(c.session.should_close());
        c.server("221 2.0.0 Bye\r\n");
        CHECK(c.events() == "closed 221");
        CHECK(c.session.should_close());
        CHECK(c.session.timeout_ms() == 0);
        CHECK(c.all_finished());
    }

    TEST_CASE("with PIPELINING, MAIL, every RCPT and DATA go out in one write") {
        Client c;
        c.connect();
        smtp::OutgoingMessage m = message("a@example.org", {"b@example.net", "c@example.net"});
        m.size = 1234;
        c.submit(std::move(m));
        CHECK(c.sent() ==
              "MAIL FROM:<a@example.org> SIZE=1234\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\n"
              "DATA\r\n");
        CHECK(c.session.timeout_ms() == 300'000);  // MAIL's reply comes first
        c.server("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 Go ahead\r\n");
        CHECK(c.events() == "body 1");
        CHECK(c.sent().empty());
        c.session.write_body("x");
        c.session.end_body();
        CHECK(c.sent() == "x\r\n.\r\n");
        c.server("250 2.0.0 Ok\r\n");
        CHECK(c.events() ==
              "rcpt 1.0 delivered 250, rcpt 1.1 delivered 250, message 1 delivered=2 delivered 250");
        CHECK(c.all_finished());
    }

    TEST_CASE("use_pipelining false sends one command at a time though the server offers it") {
        Client c(config(false));
        c.connect();
        c.submit(message("a@example.org", {"b@example.net"}));
        CHECK(c.sent() == "MAIL FROM:<a@example.org>\r\n");
        c.server("250 Ok\r\n");
        CHECK(c.sent() == "RCPT TO:<b@example.net>\r\n");
    }

    TEST_CASE("mixed RCPT results: refused recipients get their reply at once, accepted ones the final one") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"b@example.net", "c@example.net", "d@example.net"}));
        c.sent();
        c.server("250 Ok\r\n250 Ok\r\n550 5.1.1 No such user\r\n");
        CHECK(c.events() == "rcpt 1.1 permanent 550");
        c.server("452 4.2.2 Mailbox full\r\n354 Go\r\n");
        CHECK(c.events() == "rcpt 1.2 temporary 452, body 1");
        c.session.end_body();
        CHECK(c.sent() == ".\r\n");
        c.server("250 Ok\r\n");
        CHECK(c.events() == "rcpt 1.0 delivered 250, message 1 delivered=1 temporary 250");
        CHECK(c.all_finished());
    }

    TEST_CASE("a refused RCPT is reported when its reply comes") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"b@example.net", "c@example.net"}));
        c.sent();
        c.server("250 Ok\r\n550 5.1.1 No such user\r\n");
        CHECK(c.events() == "rcpt 1.0 permanent 550");
        c.server("250 Ok\r\n354 Go\r\n");
        CHECK(c.events() == "body 1");
        c.session.end_body();
        c.sent();
        c.server("554 5.7.1 Spam\r\n");
        CHECK(c.events() == "rcpt 1.1 permanent 554, message 1 delivered=0 permanent 554");
        CHECK(c.all_finished());
    }

    TEST_CASE("MAIL refused gives every recipient that reply and RSET comes before the next MAIL") {
        Client c(config(false));
        c.connect();
        c.submit(message("a@example.org", {"b@example.net", "c@example.net"}));
        c.submit(message("e@example.org", {"f@example.net"}));
        CHECK(c.sent() == "MAIL FROM:<a@example.org>\r\n");
        c.server("451 4.7.1 Greylisted\r\n");
        CHECK(c.events() ==
              "rcpt 1.0 temporary 451, rcpt 1.1 temporary 451, message 1 delivered=0 temporary 451");
        CHECK(c.sent() == "RSET\r\n");
        c.server("250 Ok\r\n");
        CHECK(c.sent() == "MAIL FROM:<e@example.org>\r\n");
        c.server("553 5.7.1 Sender refused\r\n");
        CHECK(c.events() == "rcpt 2.0 permanent 553, message 2 delivered=0 permanent 553");
        CHECK(c.all_finished());
    }

    TEST_CASE("MAIL refused in a pipelined group: the RCPT and DATA replies are matched and ignored") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"b@example.net"}));
        c.submit(message("e@example.org", {"f@example.net"}));
        CHECK(c.sent() == "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
        c.server("550 5.7.1 Sender refused\r\n");
        CHECK(c.events() == "rcpt 1.0 permanent 550, message 1 delivered=0 permanent 550");
        CHECK(c.sent().empty());  // the group's other replies are still due
        c.server("503 5.5.1 Need MAIL\r\n");
        CHECK(c.sent().empty());
        c.server("503 5.5.1 Need RCPT\r\n");
        CHECK(c.events().empty());
        CHECK(c.sent() == "RSET\r\nMAIL FROM:<e@example.org>\r\nRCPT TO:<f@example.net>\r\nDATA\r\n");
        c.server("250 Ok\r\n250 Ok\r\n250 Ok\r\n354 Go\r\n");
        CHECK(c.events() == "body 2");
    }

    TEST_CASE("no recipient accepted without pipelining: no DATA, the message ends, RSET before the next") {
        Client c(config(false));
        c.connect();
        c.submit(message("a@example.org", {"b@example.net", "c@example.net"}));
        c.submit(message("a@example.org", {"d@example.net"}));
        c.sent();
        c.server("250 Ok\r\n");
        CHECK(c.sent() == "RCPT TO:<b@example.net>\r\n");
        c.server("550 5.1.1 Unknown\r\n");
        CHECK(c.sent() == "RCPT TO:<c@example.net>\r\n");
        c.server("450 4.2.1 Try later\r\n");
        CHECK(c.events() ==
              "rcpt 1.0 permanent 550, rcpt 1.1 temporary 450, message 1 delivered=0 temporary 450");
        CHECK(c.sent() == "RSET\r\n");
        c.server("250 Ok\r\n");
        CHECK(c.sent() == "MAIL FROM:<a@example.org>\r\n");
    }

    TEST_CASE("all RCPTs refused but DATA got 354: a lone dot is sent (RFC 2920 section 3.1)") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"b@example.net", "c@example.net"}));
        c.sent();
        c.server("250 Ok\r\n550 No\r\n550 No\r\n");
        CHECK(c.events() ==
              "rcpt 1.0 permanent 550, rcpt 1.1 permanent 550, message 1 delivered=0 permanent 550");
        c.server("354 Go ahead anyway\r\n");
        CHECK(c.events().empty());  // no need_body: nobody would get it
        CHECK(c.sent() == ".\r\n");
        CHECK(c.session.timeout_ms() == 600'000);
        c.session.quit();
        CHECK(c.sent().empty());  // QUIT waits for the dot's reply
        c.server("554 5.5.1 No valid recipients\r\n");
        CHECK(c.events().empty());
        CHECK(c.sent() == "QUIT\r\n");  // nothing more to send: no RSET
        c.server("221 Bye\r\n");
        CHECK(c.events() == "closed 221");
        CHECK(c.all_finished());
    }

    TEST_CASE("all RCPTs refused and DATA refused: no body, RSET before the next message") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"b@example.net"}));
        c.submit(message("a@example.org", {"c@example.net"}));
        c.sent();
        c.server("250 Ok\r\n550 No\r\n554 5.5.1 No valid recipients\r\n");
        CHECK(c.events() == "rcpt 1.0 permanent 550, message 1 delivered=0 permanent 550");
        CHECK(c.sent() == "RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n");
    }

    TEST_CASE("DATA refused fails the accepted recipients with its reply") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"b@example.net", "c@example.net"}));
        c.sent();
        c.server("250 Ok\r\n250 Ok\r\n550 Refused\r\n451 4.3.0 Not now\r\n");
        CHECK(c.events() ==
              "rcpt 1.1 permanent 550, rcpt 1.0 temporary 451, message 1 delivered=0 temporary 451");
        CHECK(c.sent().empty());
        CHECK(c.all_finished());
    }

    TEST_CASE("a 4xx to the final dot makes accepted recipients temporary, a 5xx permanent") {
        for (const auto& step : std::vector<std::pair<std::string, std::string>>{
                 {"451 4.3.0 Try again\r\n", "temporary 451"},
                 {"554 5.6.0 Bad content\r\n", "permanent 554"}}) {
            const std::string& reply = step.first;
            const std::string& outcome = step.second;
            CAPTURE(reply);
            Client c;
            c.connect();
            c.submit(message("a@example.org", {"b@example.net", "c@example.net"}));
            c.sent();
            c.server("250 Ok\r\n250 Ok\r\n250 Ok\r\n354 Go\r\n");
            CHECK(c.events() == "body 1");
            c.session.write_body("text\r\n");
            c.session.end_body();
            c.sent();
            c.server(reply);
            CHECK(c.events() ==
                  "rcpt 1.0 " + outcome + ", rcpt 1.1 " + outcome + ", message 1 delivered=0 " + outcome);
            c.submit(message("a@example.org", {"d@example.net"}));
            CHECK(c.sent() == "RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<d@example.net>\r\nDATA\r\n");
        }
    }

    TEST_CASE("several messages in one session: no RSET after success, QUIT after the last") {
        Client c;
        c.connect();
        for (int i = 1; i <= 3; ++i)
            c.submit(message("a@example.org", {"r" + std::to_string(i) + "@example.net"}));
        c.session.quit();
        for (int i = 1; i <= 3; ++i) {
            CAPTURE(i);
            const std::string n = std::to_string(i);
            CHECK(c.sent() == "MAIL FROM:<a@example.org>\r\nRCPT TO:<r" + n + "@example.net>\r\nDATA\r\n");
            c.server("250 Ok\r\n250 Ok\r\n354 Go\r\n");
            CHECK(c.events() == "body " + n);
            c.session.write_body("message " + n + "\r\n");
            c.session.end_body();
            CHECK(c.sent() == "message " + n + "\r\n.\r\n");
            c.server("250 Ok\r\n");
            CHECK(c.events() ==
                  "rcpt " + n + ".0 delivered 250, message " + n + " delivered=1 delivered 250");
        }
        CHECK(c.sent() == "QUIT\r\n");
        c.server("221 Bye\r\n");
        CHECK(c.events() == "closed 221");
        CHECK(c.session.should_close());
        CHECK(c.all_finished());
    }

    TEST_CASE("messages submitted before the greeting go out once EHLO is answered") {
        Client c;
        c.submit(message("", {"b@example.net"}));
        CHECK(c.sent().empty());
        c.server(greeting);
        CHECK(c.sent() == "EHLO client.example.org\r\n");
        c.server(ehlo_pipelining);
        CHECK(c.events() == "ready");
        CHECK(c.sent() == "MAIL FROM:<>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
    }

    TEST_CASE("quit with nothing submitted: EHLO, QUIT, closed") {
        Client c;
        c.session.quit();
        c.connect();
        CHECK(c.sent() == "QUIT\r\n");
        c.server("221 2.0.0 Bye\r\n");
        CHECK(c.events() == "closed 221");
        CHECK(c.session.should_close());
        c.server("250 ignored\r\n");  // after the end nothing counts
        CHECK(c.events().empty());
    }

    TEST_CASE("a message submitted after quit() is not sent and fails temporarily") {
        Client c;
        c.connect();
        c.session.quit();
        CHECK(c.sent() == "QUIT\r\n");
        c.submit(message("a@example.org", {"b@example.net"}));
        CHECK(c.events() == "rcpt 1.0 temporary 451 local, message 1 delivered=0 temporary 451 local");
        CHECK(c.sent().empty());
        CHECK(c.all_finished());
    }

    TEST_CASE("the message parameters follow the message and what the server offered") {
        Client c;
        c.connect();
        smtp::OutgoingMessage m = message("a@example.org", {"b@example.net"});
        m.eight_bit = true;
        m.smtputf8 = true;
        m.size = 1000000;  // exactly the server's SIZE: fine
        c.submit(std::move(m));
        CHECK(c.sent() ==
              "MAIL FROM:<a@example.org> SIZE=1000000 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<b@example.net>\r\n"
              "DATA\r\n");
    }

    TEST_CASE("SIZE= is sent only when the server offers SIZE") {
        Client c;
        c.connect("250-mx\r\n250 8BITMIME\r\n");
        smtp::OutgoingMessage m = message("a@example.org", {"b@example.net"});
        m.size = 5;
        m.eight_bit = true;
        c.submit(std::move(m));
        CHECK(c.sent() == "MAIL FROM:<a@example.org> BODY=8BITMIME\r\n");
    }

    TEST_CASE("a message needing 8BITMIME is refused locally when the server does not offer it") {
        Client c;
        c.connect("250-mx\r\n250 PIPELINING\r\n");
        smtp::OutgoingMessage m = message("a@example.org", {"b@example.net", "c@example.net"});
        m.eight_bit = true;
        c.submit(std::move(m));
        c.submit(message("a@example.org", {"d@example.net"}));
        CHECK(c.sent() == "MAIL FROM:<a@example.org>\r\nRCPT TO:<d@example.net>\r\nDATA\r\n");
        const auto e = c.session.next_event();
        REQUIRE(e);
        REQUIRE(e->reply != nullptr);
        CHECK(e->local);
        CHECK(e->reply->code == 554);
        CHECK(e->reply->lines == std::vector<std::string>{"5.6.3 Server does not offer 8BITMIME"});
        CHECK(c.events() == "rcpt 1.1 permanent 554 local, message 1 delivered=0 permanent 554 local");
    }

    TEST_CASE("a message needing SMTPUTF8 is refused locally when the server does not offer it") {
        Client c;
        c.connect("250-mx\r\n250 8BITMIME\r\n");
        smtp::OutgoingMessage m = message("a@example.org", {"b@example.net"});
        m.smtputf8 = true;
        c.submit(std::move(m));
        CHECK(c.sent().empty());
        const auto e = c.session.next_event();
        REQUIRE(e);
        REQUIRE(e->reply != nullptr);
        CHECK(e->reply->to_string() == "553 5.6.7 Server does not offer SMTPUTF8\r\n");
        CHECK(c.events() == "message 1 delivered=0 permanent 553 local");
    }

    TEST_CASE("a message over the server's SIZE is refused locally; SIZE 0 has no limit") {
        Client c;
        c.connect();
        smtp::OutgoingMessage m = message("a@example.org", {"b@example.net"});
        m.size = 1000001;
        c.submit(std::move(m));
        CHECK(c.sent().empty());
        const auto e = c.session.next_event();
        REQUIRE(e);
        REQUIRE(e->reply != nullptr);
        CHECK(e->reply->to_string() == "552 5.3.4 Message size exceeds server limit\r\n");
        CHECK(c.events() == "message 1 delivered=0 permanent 552 local");

        Client unlimited;
        unlimited.connect("250-mx\r\n250 SIZE 0\r\n");
        m = message("a@example.org", {"b@example.net"});
        m.size = 1'000'000'000;
        unlimited.submit(std::move(m));
        CHECK(unlimited.sent() == "MAIL FROM:<a@example.org> SIZE=1000000000\r\n");
    }

    TEST_CASE("CR, LF or NUL in the sender fails the whole message; in a recipient only that recipient") {
        for (const std::string& bad : std::vector<std::string>{"a\r@example.org", "a@example.org\r\nRSET",
                                                               std::string("a\0@b.org", 8)}) {
            CAPTURE(bad);
            Client c;
            c.connect();
            c.submit(message(bad, {"b@example.net", "c@example.net"}));
            CHECK(c.events() ==
                  "rcpt 1.0 permanent 553 local, rcpt 1.1 permanent 553 local, "
                  "message 1 delivered=0 permanent 553 local");
            c.submit(message("a@example.org", {"b@example.net", bad}));
            const auto e = c.session.next_event();
            REQUIRE(e);
            CHECK(describe(*e) == "rcpt 2.1 permanent 553 local");
            REQUIRE(e->reply != nullptr);
            CHECK(e->reply->to_string() == "553 5.1.3 Invalid address: contains CR, LF or NUL\r\n");
            CHECK(c.sent() == "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
        }
    }

    TEST_CASE("a sender with CR or LF is refused with 5.1.7, the sender's status") {
        Client c;
        c.submit(message("a\n@example.org", {"b@example.net"}));
        const auto e = c.session.next_event();
        REQUIRE(e);
        REQUIRE(e->reply != nullptr);
        CHECK(e->reply->to_string() == "553 5.1.7 Invalid address: contains CR, LF or NUL\r\n");
    }

    TEST_CASE("addresses that are no plain mailbox are refused locally and never sent") {
        const std::vector<std::string> bad = {
            "no-at-sign",
            "a@",
            "@example.net",
            "a b@example.net",
            "a@example.net> ENVID=x",
            "@relay.example:a@example.net",  // a source route: RFC 5321 says not to send one
            "<a@example.net>",
            "a@-bad-.example",
            std::string(65, 'x') + "@example.net",
            "caf\xc3\xa9@example.net",  // UTF-8 without smtputf8
        };
        for (const std::string& address : bad) {
            CAPTURE(address);
            Client c;
            c.connect();
            c.submit(message("a@example.org", {address, "ok@example.net"}));
            CHECK(c.events() == "rcpt 1.0 permanent 553 local");
            CHECK(c.sent() == "MAIL FROM:<a@example.org>\r\nRCPT TO:<ok@example.net>\r\nDATA\r\n");

            Client s;
            s.submit(message(address, {"ok@example.net"}));
            CHECK(s.events() == "rcpt 1.0 permanent 553 local, message 1 delivered=0 permanent 553 local");
            s.connect();
            CHECK(s.sent().empty());
            CHECK(s.all_finished());
        }
    }

    TEST_CASE("a UTF-8 address without smtputf8 is refused with 5.6.7; with it, it is sent") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"caf\xc3\xa9@example.net"}));
        const auto e = c.session.next_event();
        REQUIRE(e);
        REQUIRE(e->reply != nullptr);
        CHECK(e->reply->code == 553);
        CHECK(e->reply->enhanced_status() == smtp::EnhancedStatus{5, 6, 7});

        smtp::OutgoingMessage m = message("\xc3\xa9@example.org", {"caf\xc3\xa9@example.net"});
        m.smtputf8 = true;
        c.events();
        c.submit(std::move(m));
        CHECK(c.events().empty());
        CHECK(c.sent() ==
              "MAIL FROM:<\xc3\xa9@example.org> SMTPUTF8\r\nRCPT TO:<caf\xc3\xa9@example.net>\r\nDATA\r\n");
    }

    TEST_CASE("the null sender, Postmaster and quoted local parts are valid") {
        Client c;
        c.connect();
        c.submit(message("", {"Postmaster", "\"john doe\"@example.net", "x@[192.0.2.1]"}));
        CHECK(c.events().empty());
        CHECK(c.sent() ==
              "MAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<\"john doe\"@example.net>\r\n"
              "RCPT TO:<x@[192.0.2.1]>\r\nDATA\r\n");
    }

    TEST_CASE("a message with no recipients fails permanently at once") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {}));
        CHECK(c.events() == "message 1 delivered=0 permanent 554 local");
        CHECK(c.sent().empty());
        CHECK(c.all_finished());
    }

    TEST_CASE("a message whose recipients are all invalid ends at once and sends nothing") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"x", "y"}));
        CHECK(c.events() ==
              "rcpt 1.0 permanent 553 local, rcpt 1.1 permanent 553 local, message 1 delivered=0 permanent "
              "553 local");
        CHECK(c.sent().empty());
        CHECK(c.all_finished());
    }

    TEST_CASE("an invalid helo_name is replaced by localhost") {
        smtp::ClientConfig cfg = config();
        cfg.helo_name = "evil\r\nMAIL FROM:<x@y>";
        Client c(cfg);
        c.server(greeting);
        CHECK(c.sent() == "EHLO localhost\r\n");
        cfg.helo_name = "[192.0.2.7]";
        Client literal(cfg);
        literal.server(greeting);
        CHECK(literal.sent() == "EHLO [192.0.2.7]\r\n");
    }

    TEST_CASE("a 421 mid-session closes: every unfinished recipient is temporary") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"b@example.net", "c@example.net"}));
        c.submit(message("a@example.org", {"d@example.net"}));
        c.sent();
        c.server("250 Ok\r\n250 Ok\r\n421 4.7.0 Too many errors, closing\r\n");
        CHECK(c.events() ==
              "failed closed_by_server 421, rcpt 1.0 temporary 421, rcpt 1.1 temporary 421, "
              "message 1 delivered=0 temporary 421, rcpt 2.0 temporary 421, message 2 delivered=0 temporary "
              "421, "
              "closed");
        CHECK(c.sent().empty());
        CHECK(c.session.should_close());
        CHECK(c.all_finished());
    }

    TEST_CASE("a 421 to the final dot: the message is not delivered") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"b@example.net"}));
        c.sent();
        c.server("250 Ok\r\n250 Ok\r\n354 Go\r\n");
        CHECK(c.events() == "body 1");
        c.session.end_body();
        c.sent();
        c.server("421 4.3.2 Shutting down\r\n");
        CHECK(c.events() ==
              "failed closed_by_server 421, rcpt 1.0 temporary 421, message 1 delivered=0 temporary 421, "
              "closed");
        CHECK(c.all_finished());
    }

    TEST_CASE("an unsolicited 421 while idle or while writing the body closes the session") {
        Client idle;
        idle.connect();
        idle.server("421 4.4.2 Idle too long\r\n");
        CHECK(idle.events() == "failed closed_by_server 421, closed");

        Client writing;
        writing.connect();
        writing.submit(message("a@example.org", {"b@example.net"}));
        writing.sent();
        writing.server("250 Ok\r\n250 Ok\r\n354 Go\r\n");
        CHECK(writing.events() == "body 1");
        writing.session.write_body("abc");
        writing.server("421 4.4.2 Timeout\r\n");
        CHECK(writing.events() ==
              "failed closed_by_server 421, rcpt 1.0 temporary 421, message 1 delivered=0 temporary 421, "
              "closed");
        CHECK(writing.sent().empty());  // the unsent body is dropped
        CHECK(writing.session.write_body("more") == smtp::Usage::closed);
        CHECK(writing.session.end_body() == smtp::Usage::closed);
        CHECK(writing.all_finished());
    }

    TEST_CASE("a reply that breaks the grammar is a protocol error") {
        for (const std::string_view garbage : {"hello there\r\n"sv, "250 bare LF\n"sv, "250-a\r\n251 b\r\n"sv,
                                               "2\r\n"sv, "250 a\0b\r\n"sv, "250 a\rb\r\n"sv}) {
            CAPTURE(garbage);
            Client c;
            c.connect();
            c.submit(message("a@example.org", {"b@example.net"}));
            c.sent();
            c.server(garbage);
            CHECK(c.events() ==
                  "failed protocol_error 451 local, rcpt 1.0 temporary 451 local, "
                  "message 1 delivered=0 temporary 451 local, closed");
            CHECK(c.session.should_close());
            CHECK(c.all_finished());
        }
    }

    TEST_CASE("the protocol error says what broke") {
        Client c;
        c.connect();
        c.server("250 LF\n");
        const auto e = c.session.next_event();
        REQUIRE(e);
        REQUIRE(e->reply != nullptr);
        CHECK(e->failure == smtp::ConnectionFailure::protocol_error);
        CHECK(e->reply->to_string() ==
              "451 4.5.0 Protocol error: " + std::string(smtp::error_info(smtp::Errc::reply_bare_lf).reason) +
                  "\r\n");
    }

    TEST_CASE("a reply line over Limits::reply_line is a protocol error, at the limit it is fine") {
        smtp::ClientConfig cfg = config();
        cfg.limits.reply_line = 64;
        const auto line = [](std::size_t size) { return "250 " + std::string(size - 6, 'x') + "\r\n"; };
        for (const std::size_t size : {63u, 64u}) {
            Client c(cfg);
            c.connect(line(size));
            CHECK(c.session.capabilities().esmtp);
        }
        Client c(cfg);
        c.server(greeting);
        c.sent();
        c.server(line(65));
        CHECK(c.events() == "failed protocol_error 451 local, closed");
    }

    TEST_CASE("an EHLO reply over Limits::reply_lines is a protocol error") {
        smtp::ClientConfig cfg = config();
        cfg.limits.reply_lines = 3;
        Client ok(cfg);
        ok.connect("250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n");
        Client c(cfg);
        c.server(greeting);
        c.sent();
        c.server("250-mx\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE\r\n");
        CHECK(c.events() == "failed protocol_error 451 local, closed");
    }

    TEST_CASE("a reply with no command outstanding is a protocol error") {
        Client c;
        c.connect();
        c.server("250 Ok\r\n");
        CHECK(c.events() == "failed protocol_error 451 local, closed");
    }

    TEST_CASE("a reply to a command not yet written is a protocol error") {
        Client c;
        c.server(greeting);
        c.server("250 mx\r\n");  // EHLO is still in pending_output()
        CHECK(c.events() == "failed protocol_error 451 local, closed");
        CHECK(c.sent().empty());
    }

    TEST_CASE("a reply to a command written only in part is a protocol error") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"b@example.net"}));
        const std::string group(c.session.pending_output());
        c.session.consume_output(group.find("RCPT") + 3);  // MAIL and "RCP"
        c.server("250 Ok\r\n");
        CHECK(c.events().empty());
        c.server("250 Ok\r\n");
        CHECK(c.events() ==
              "failed protocol_error 451 local, rcpt 1.0 temporary 451 local, "
              "message 1 delivered=0 temporary 451 local, closed");
    }

    TEST_CASE("a reply code that cannot answer the command is a protocol error") {
        Client mail;
        mail.connect();
        mail.submit(message("a@example.org", {"b@example.net"}));
        mail.sent();
        mail.server("354 Go\r\n");  // to MAIL
        CHECK(mail.events() ==
              "failed protocol_error 451 local, rcpt 1.0 temporary 451 local, "
              "message 1 delivered=0 temporary 451 local, closed");

        Client data;
        data.connect();
        data.submit(message("a@example.org", {"b@example.net"}));
        data.sent();
        data.server("250 Ok\r\n250 Ok\r\n250 Ok\r\n");  // 250 to DATA
        CHECK(data.events() ==
              "failed protocol_error 451 local, rcpt 1.0 temporary 451 local, "
              "message 1 delivered=0 temporary 451 local, closed");
    }

    TEST_CASE("timeout fails the connection and every unfinished recipient temporarily") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"b@example.net", "c@example.net"}));
        c.sent();
        c.server("250 Ok\r\n550 No\r\n");
        CHECK(c.events() == "rcpt 1.0 permanent 550");
        c.session.timeout();
        CHECK(c.events() ==
              "failed timeout 451 local, rcpt 1.1 temporary 451 local, message 1 delivered=0 temporary 451 "
              "local, "
              "closed");
        CHECK(c.session.should_close());
        CHECK(c.session.timeout_ms() == 0);
        c.session.timeout();
        c.session.peer_closed();
        CHECK(c.events().empty());
        CHECK(c.all_finished());
    }

    TEST_CASE("timeout_ms follows RFC 5321 section 4.5.3.2 and the config") {
        smtp::ClientConfig cfg = config(false);
        cfg.greeting_timeout_ms = 1;
        cfg.command_timeout_ms = 2;
        cfg.data_timeout_ms = 3;
        cfg.data_block_timeout_ms = 4;
        cfg.data_end_timeout_ms = 5;
        Client c(cfg);
        CHECK(c.session.timeout_ms() == 1);
        c.server(greeting);
        CHECK(c.session.timeout_ms() == 2);  // EHLO
        c.sent();
        c.server(ehlo_plain);
        CHECK(c.events() == "ready");
        CHECK(c.session.timeout_ms() == 0);
        c.submit(message("a@example.org", {"b@example.net"}));
        CHECK(c.session.timeout_ms() == 2);  // MAIL
        c.sent();
        c.server("250 Ok\r\n");
        CHECK(c.session.timeout_ms() == 2);  // RCPT
        c.sent();
        c.server("250 Ok\r\n");
        CHECK(c.session.timeout_ms() == 3);  // DATA
        c.sent();
        c.server("354 Go\r\n");
        CHECK(c.session.timeout_ms() == 4);  // the program writes the body
        c.session.end_body();
        CHECK(c.session.timeout_ms() == 5);  // the final dot
    }

    TEST_CASE("peer_closed fails the connection; before the greeting too") {
        Client c;
        c.submit(message("a@example.org", {"b@example.net"}));
        c.session.peer_closed();
        CHECK(c.events() ==
              "failed peer_closed 451 local, rcpt 1.0 temporary 451 local, message 1 delivered=0 temporary "
              "451 local, "
              "closed");
        CHECK(c.session.should_close());
        CHECK(c.all_finished());
        // Once closed, a submitted message fails at once: the session will not send it.
        c.submit(message("a@example.org", {"b@example.net"}));
        CHECK(c.events() == "rcpt 2.0 temporary 451 local, message 2 delivered=0 temporary 451 local");
    }

    TEST_CASE("peer_closed after QUIT was sent but not answered is still peer_closed") {
        Client c;
        c.connect();
        c.session.quit();
        CHECK(c.sent() == "QUIT\r\n");
        c.session.peer_closed();
        CHECK(c.events() == "failed peer_closed 451 local, closed");
    }

    TEST_CASE("body writes before need_body or after end_body are misuse and change nothing") {
        Client c;
        CHECK(c.session.write_body("x") == smtp::Usage::no_verdict_pending);
        CHECK(c.session.end_body() == smtp::Usage::no_verdict_pending);
        c.connect();
        c.submit(message("a@example.org", {"b@example.net"}));
        c.sent();
        CHECK(c.session.write_body("x") == smtp::Usage::no_verdict_pending);
        c.server("250 Ok\r\n250 Ok\r\n354 Go\r\n");
        CHECK(c.events() == "body 1");
        CHECK(c.session.end_body() == smtp::Usage::ok);
        CHECK(c.session.end_body() == smtp::Usage::no_verdict_pending);
        CHECK(c.session.write_body("late") == smtp::Usage::no_verdict_pending);
        CHECK(c.sent() == ".\r\n");
    }

    TEST_CASE("the body is dot-stuffed and line endings become CRLF, across chunk boundaries") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"b@example.net"}));
        c.sent();
        c.server("250 Ok\r\n250 Ok\r\n354 Go\r\n");
        CHECK(c.events() == "body 1");
        for (const std::string_view chunk :
             {".starts with a dot\r", "\n", ".", "\r\n..two\nbare LF\r\n.", "end"})
            CHECK(c.session.write_body(chunk) == smtp::Usage::ok);
        c.session.end_body();
        CHECK(c.sent() == "..starts with a dot\r\n..\r\n...two\r\nbare LF\r\n..end\r\n.\r\n");
    }

    TEST_CASE("a 1 MB body written in 64 KB chunks arrives whole, and output stays one chunk") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"b@example.net"}));
        c.sent();
        c.server("250 Ok\r\n250 Ok\r\n354 Go\r\n");
        CHECK(c.events() == "body 1");
        std::string line(78, 'a');
        line[0] = '.';  // every line needs stuffing
        line += "\r\n";
        std::string body;
        while (body.size() < 1024 * 1024) body += line;
        body.resize(1024 * 1024);  // the last line ends unterminated
        std::string wire;
        std::size_t most = 0;
        for (std::size_t at = 0; at < body.size(); at += 64 * 1024) {
            CHECK(c.session.write_body(std::string_view(body).substr(at, 64 * 1024)) == smtp::Usage::ok);
            most = std::max(most, c.session.pending_output().size());
            wire += c.sent();
        }
        c.session.end_body();
        wire += c.sent();
        const std::size_t lines = (body.size() + line.size() - 1) / line.size();
        CHECK(wire.size() == body.size() + lines + 2 + 3);  // a dot per line, the last CRLF, ".\r\n"
        CHECK(wire.substr(0, line.size() + 1) == '.' + line);
        CHECK(wire.substr(wire.size() - 5) == "\r\n.\r\n");
        CHECK(most <= 64 * 1024 + 64 * 1024 / line.size() + 2);
        c.server("250 Ok\r\n");
        CHECK(c.events() == "rcpt 1.0 delivered 250, message 1 delivered=1 delivered 250");
    }

    TEST_CASE("replies split at every offset, byte by byte or whole give the same events") {
        // Each step's server bytes are fed in every chunking, the others whole.
        const std::vector<std::string> steps = {
            std::string(greeting),
            std::string(ehlo_pipelining),
            "250 2.1.0 Ok\r\n550-5.1.1 No such\r\n550 5.1.1 user\r\n250 2.1.5 Ok\r\n354 Go\r\n",
            "250 2.0.0 Queued\r\n",
            "221 Bye\r\n",
        };
        const std::string expected =
            "ready | rcpt 1.0 permanent 550, body 1 | rcpt 1.1 delivered 250, message 1 delivered=1 "
            "permanent 250 | "
            "closed 221";
        const std::string expected_out =
            "EHLO client.example.org\r\n|MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n"
            "RCPT TO:<c@example.net>\r\nDATA\r\n|Hi\r\n.\r\n|QUIT\r\n";
        for (std::size_t chunked = 0; chunked < steps.size(); ++chunked) {
            smtp::test::for_each_chunking(
                steps[chunked], [&](const std::vector<std::string_view>& pieces, const std::string& label) {
                    CAPTURE(chunked);
                    CAPTURE(label);
                    Client c;
                    c.submit(message("a@example.org", {"b@example.net", "c@example.net"}));
                    c.session.quit();
                    std::string events, out;
                    for (std::size_t i = 0; i < steps.size(); ++i) {
                        if (i == chunked)
                            for (const std::string_view piece : pieces) c.server(piece);
                        else
                            c.server(steps[i]);
                        const std::string e = c.events();
                        if (e.ends_with("body 1")) {
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
                    CHECK(c.all_finished());
                });
        }
    }

    TEST_CASE("an address that would make the command line over 512 octets is refused") {
        smtp::ClientConfig cfg = config();
        cfg.limits.path = 1000;
        cfg.limits.domain = 1000;
        const auto domain = [](std::size_t n) {  // a valid domain of n octets
            std::string d;
            while (d.size() + 61 < n) d += std::string(60, 'd') + '.';
            return d + std::string(n - d.size(), 'e');
        };
        const std::string fits = "a@" + domain(498);      // "RCPT TO:<" 500 ">" CRLF: 512
        const std::string too_long = "a@" + domain(499);  // 513
        Client c(cfg);
        c.connect();
        c.submit(message("a@example.org", {fits, too_long}));
        const auto e = c.session.next_event();
        REQUIRE(e);
        CHECK(describe(*e) == "rcpt 1.1 permanent 553 local");
        REQUIRE(e->reply != nullptr);
        CHECK(e->reply->to_string() == "553 5.1.3 Invalid address: " +
                                           std::string(smtp::error_info(smtp::Errc::path_too_long).reason) +
                                           "\r\n");
        const std::string out = c.sent();
        CHECK(out.find("RCPT TO:<" + fits + ">\r\n") != std::string::npos);
        CHECK(out.find(too_long) == std::string::npos);
    }

    TEST_CASE("output taken in small pieces comes out whole and in order") {
        Client c;
        c.connect();
        c.submit(message("a@example.org", {"b@example.net"}));
        c.sent();
        c.server("250 Ok\r\n250 Ok\r\n354 Go\r\n");
        CHECK(c.events() == "body 1");
        std::string body;
        for (int i = 0; i < 2000; ++i) body += "line " + std::to_string(i) + "\r\n";
        c.session.write_body(body);
        c.session.end_body();
        std::string wire;
        while (!c.session.pending_output().empty()) {
            const std::string_view out = c.session.pending_output();
            const std::size_t n = std::min<std::size_t>(out.size(), 333);
            wire.append(out.substr(0, n));
            c.session.consume_output(n);
            CHECK(c.session.want_write() == !c.session.pending_output().empty());
        }
        CHECK(wire == body + ".\r\n");
        c.session.consume_output(10);  // more than there is: nothing happens
        CHECK(c.session.pending_output().empty());
        c.server("250 Ok\r\n");
        CHECK(c.events() == "rcpt 1.0 delivered 250, message 1 delivered=1 delivered 250");
    }

    TEST_CASE("a 3xx reply to HELO is a protocol error that names the command") {
        Client c;
        c.server(greeting);
        c.sent();
        c.server("502 No\r\n");
        CHECK(c.sent() == "HELO client.example.org\r\n");
        c.server("354 What\r\n");
        const auto e = c.session.next_event();
        REQUIRE(e);
        REQUIRE(e->reply != nullptr);
        CHECK(e->reply->to_string() == "451 4.5.0 Protocol error: reply 354 to HELO\r\n");
    }

    TEST_CASE("a session can be moved") {
        Client c;
        c.connect();
        smtp::ClientSession moved(std::move(c.session));
        moved.submit(message("a@example.org", {"b@example.net"}));
        CHECK(moved.pending_output() == "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n");
    }
}
