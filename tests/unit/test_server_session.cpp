// Unit tests of ServerSession: every rule of smtp/server_session.hpp with its exact
// reply, every limit at limit-1, limit and limit+1, deferred verdicts, pipelining,
// backpressure and misuse. Conversations go through talk(), which runs each one in
// every chunking of the client's bytes (chunking.hpp), with verdicts given at once
// and deferred, and requires the same replies and events from all of them.
#include <smtp/server_session.hpp>

#include "../../libsmtp/server_states.hpp"
#include "chunking.hpp"
#include "server_driver.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <set>
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
using smtp::test::Policy;
using smtp::test::Verdict;
using Kind = ServerEvent::Kind;
using namespace std::string_literals;

ServerConfig config() {
    ServerConfig c;
    c.hostname = "mx.example";
    return c;
}

const std::string greeting = "220 mx.example ESMTP ready\r\n";
const std::string ehlo_reply =
    lines({"250-mx.example Hello client.example", "250-PIPELINING", "250-SIZE 10240000", "250-8BITMIME",
           "250-ENHANCEDSTATUSCODES", "250 SMTPUTF8"});
const std::string ehlo = "EHLO client.example\r\n";
const std::string ok = "250 2.0.0 Ok\r\n";
const std::string mail_ok = "250 2.1.0 Ok\r\n";
const std::string rcpt_ok = "250 2.1.5 Ok\r\n";
const std::string go_ahead = "354 End data with <CR><LF>.<CR><LF>\r\n";

struct Talk {
    std::string replies;  // what the server said after the greeting
    std::vector<std::string> log;
    std::string message;
    bool closed = false;
};

Talk run_once(const std::vector<std::string_view>& pieces, const ServerConfig& c, const Policy& policy,
              bool defer) {
    Driver d(c, policy, defer);
    d.greet();
    for (const std::string_view piece : pieces) d.feed(piece);
    d.finish();
    REQUIRE(d.output.substr(0, greeting.size()) == greeting);
    REQUIRE(d.log.front() == "connect");
    d.log.erase(d.log.begin());
    return {d.output.substr(greeting.size()), d.log, d.message, d.session.should_close()};
}

// The conversation after the greeting: `client` fed in every chunking, verdicts
// at once and deferred. All must agree; returns the one fed whole.
Talk talk(std::string_view client, const ServerConfig& c = config(),
          const Policy& policy = smtp::test::accept_all, int random_ways = 2) {
    const Talk whole = run_once({client}, c, policy, false);
    for (const bool defer : {false, true}) {
        smtp::test::for_each_chunking(
            client,
            [&](const std::vector<std::string_view>& pieces, const std::string& label) {
                CAPTURE(label);
                CAPTURE(defer);
                const Talk t = run_once(pieces, c, policy, defer);
                CHECK(t.replies == whole.replies);
                CHECK(t.log == whole.log);
                CHECK(t.message == whole.message);
                CHECK(t.closed == whole.closed);
            },
            random_ways);
    }
    return whole;
}

std::string replies(std::string_view client, const ServerConfig& c = config(),
                    const Policy& policy = smtp::test::accept_all) {
    return talk(client, c, policy).replies;
}

// A policy that rejects, with `code status text`, the events whose log line (as
// describe() writes it, with 0 octets) or kind is `target`.
Policy reject_when(std::string target, int code, smtp::EnhancedStatus status, std::string text) {
    return [=](const ServerEvent& e) {
        const bool hit = smtp::test::describe(e, 0) == target || smtp::test::kind_name(e.kind) == target;
        return hit ? Verdict::no(code, status, text) : Verdict::yes();
    };
}

const std::string transaction = ehlo + "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n";

}  // namespace

TEST_SUITE("server") {
    // ------------------------------------------------------------------ connect

    TEST_CASE("the first event is connect and it needs a verdict") {
        smtp::ServerSession s(config());
        CHECK(s.pending_output().empty());
        const auto e = s.next_event();
        REQUIRE(e);
        CHECK(e->kind == Kind::connect);
        CHECK(e->needs_verdict);
        CHECK_FALSE(s.next_event());  // nothing more until the verdict
        CHECK(s.timeout_ms() == 0);
        CHECK(s.accept() == Usage::ok);
        CHECK(s.pending_output() == greeting);
        CHECK(s.timeout_ms() == 300'000);
    }

    TEST_CASE("accept text replaces what follows the host name in the greeting") {
        smtp::ServerSession s(config());
        s.next_event();
        s.accept("Sendmail ready, sort of");
        CHECK(s.pending_output() == "220 mx.example Sendmail ready, sort of\r\n");
    }

    TEST_CASE("a connection refused with 554 answers 503 to all but QUIT (RFC 5321 3.1)") {
        Driver d(config(), [](const ServerEvent& e) {
            return e.kind == Kind::connect ? Verdict::no(554, {5, 7, 1}, "No service for you")
                                           : Verdict::yes();
        });
        d.greet();
        CHECK(d.output == "554 5.7.1 No service for you\r\n");
        CHECK_FALSE(d.session.should_close());
        d.feed(ehlo + "NOOP\r\nQUIT\r\n");
        CHECK(d.output == "554 5.7.1 No service for you\r\n" +
                              lines({"503 5.5.1 Bad sequence of commands",
                                     "503 5.5.1 Bad sequence of commands", "221 2.0.0 Bye"}));
        CHECK(d.session.should_close());
    }

    TEST_CASE("a connection refused with 421 is closed after the reply") {
        Driver d(config(), [](const ServerEvent&) { return Verdict::no(421, {4, 3, 2}, "Try later"); });
        d.greet();
        CHECK(d.output == "421 4.3.2 Try later\r\n");
        CHECK(d.log == std::vector<std::string>{"connect", "closing 421"});
        CHECK(d.session.should_close());
        CHECK_FALSE(d.session.want_read());
        // Input after the close is discarded: feed() takes all, as input_room() says.
        CHECK(d.session.input_room() >= ehlo.size());
        CHECK(d.session.feed(ehlo) == ehlo.size());
        CHECK(d.session.pending_output().empty());
    }

    TEST_CASE("input before the greeting is a pregreet: 554 5.5.0 and close") {
        smtp::ServerSession s(config());
        CHECK(s.feed(ehlo) == ehlo.size());  // before the connect event
        s.next_event();
        s.accept();
        std::vector<std::string> log;
        while (auto e = s.next_event()) log.push_back(smtp::test::describe(*e, 0));
        CHECK(log == std::vector<std::string>{"protocol_error pregreet 554", "closing 554"});
        CHECK(s.pending_output() ==
              greeting + "554 5.5.0 Protocol error: client spoke before the greeting\r\n");
        s.consume_output(s.pending_output().size());
        CHECK(s.should_close());
    }

    TEST_CASE("input after the greeting was made but before it was sent is a pregreet") {
        smtp::ServerSession s(config());
        s.next_event();
        s.accept();
        s.consume_output(5);  // part of the greeting is out
        s.feed(ehlo);
        s.consume_output(s.pending_output().size());
        const auto e = s.next_event();
        REQUIRE(e);
        CHECK(e->kind == Kind::protocol_error);
        CHECK(e->error == Errc::pregreet);
        CHECK(s.pending_output() == "554 5.5.0 Protocol error: client spoke before the greeting\r\n");
    }

    TEST_CASE("input after the greeting was sent is read as commands") {
        smtp::ServerSession s(config());
        s.next_event();
        s.accept();
        s.consume_output(greeting.size());
        s.feed(ehlo);
        const auto e = s.next_event();
        REQUIRE(e);
        CHECK(e->kind == Kind::hello);
        CHECK(e->name == "client.example");
        CHECK(e->esmtp);
        CHECK(e->command->verb == smtp::Verb::ehlo);
    }

    // ------------------------------------------------------------------ HELO, EHLO

    TEST_CASE("EHLO is answered with the extension list") {
        const Talk t = talk(ehlo);
        CHECK(t.replies == ehlo_reply);
        CHECK(t.log == std::vector<std::string>{"hello EHLO client.example"});
    }

    TEST_CASE("HELO is answered with one line and no extensions") {
        CHECK(replies("HELO client.example\r\n") == "250 mx.example Hello client.example\r\n");
    }

    TEST_CASE("the EHLO reply lists what ServerExtensions offers") {
        ServerConfig c = config();
        c.extensions = {false, false, false, false, false, false};
        CHECK(replies(ehlo, c) == "250 mx.example Hello client.example\r\n");
        c.extensions.dsn = true;
        c.extensions.size = true;
        c.limits.message_size = 1000;
        CHECK(replies(ehlo, c) == lines({"250-mx.example Hello client.example", "250-SIZE 1000", "250 DSN"}));
    }

    TEST_CASE("accept text replaces what follows the host name in the EHLO reply") {
        Driver d(config(), [](const ServerEvent& e) {
            return Verdict::yes(e.kind == Kind::hello ? "greets client.example" : "");
        });
        d.greet();
        d.feed("HELO client.example\r\n");
        CHECK(d.output == greeting + "250 mx.example greets client.example\r\n");
    }

    TEST_CASE("EHLO without a domain gets 501 5.5.4, with a bad one 501 5.5.2") {
        CHECK(replies("EHLO\r\n") == "501 5.5.4 Argument required\r\n");
        CHECK(replies("EHLO -bad-.example\r\n") == "501 5.5.2 Invalid domain name\r\n");
        CHECK(replies("HELO [192.0.2.1]\r\n") == "501 5.5.2 Invalid domain name\r\n");
        ServerConfig c = config();
        c.leniency.helo_address_literal = true;
        CHECK(replies("HELO [192.0.2.1]\r\n", c) == "250 mx.example Hello [192.0.2.1]\r\n");
    }

    TEST_CASE("a refused EHLO leaves the transaction as it was (RFC 5321 4.1.4)") {
        const Talk t = talk(transaction + "EHLO other.example\r\nDATA\r\n.\r\n", config(),
                            reject_when("hello EHLO other.example", 550, {5, 7, 1}, "Go away"));
        CHECK(t.replies == ehlo_reply + mail_ok + rcpt_ok + "550 5.7.1 Go away\r\n" + go_ahead + ok);
        CHECK(t.log.back() == "message_end 0 octets");
    }

    TEST_CASE("an accepted EHLO ends the transaction: the reset event follows the hello") {
        const Talk t = talk(transaction + "EHLO other.example\r\nDATA\r\n");
        CHECK(t.replies ==
              ehlo_reply + mail_ok + rcpt_ok +
                  lines({"250-mx.example Hello other.example", "250-PIPELINING", "250-SIZE 10240000",
                         "250-8BITMIME", "250-ENHANCEDSTATUSCODES", "250 SMTPUTF8"}) +
                  "503 5.5.1 Bad sequence of commands\r\n");
        CHECK(t.log == std::vector<std::string>{"hello EHLO client.example", "mail_from <a@example.org>",
                                                "rcpt_to <b@example.net>", "hello EHLO other.example",
                                                "reset", "protocol_error bad_sequence 503"});
    }

    TEST_CASE("a second EHLO without a transaction gives no reset event") {
        const Talk t = talk(ehlo + "HELO other.example\r\n");
        CHECK(t.log == std::vector<std::string>{"hello EHLO client.example", "hello HELO other.example"});
    }

    // ------------------------------------------------------------------ MAIL

    TEST_CASE("MAIL before HELO gets 503 5.5.1") {
        CHECK(replies("MAIL FROM:<a@example.org>\r\n") == "503 5.5.1 Bad sequence of commands\r\n");
        // The order is checked before the arguments.
        CHECK(replies("MAIL FROM:<bad\r\n") == "503 5.5.1 Bad sequence of commands\r\n");
    }

    TEST_CASE("a nested MAIL gets 503 5.5.1") {
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org>\r\nMAIL FROM:<c@example.org>\r\n") ==
              ehlo_reply + mail_ok + "503 5.5.1 Bad sequence of commands\r\n");
    }

    TEST_CASE("MAIL is answered 250 2.1.0 after the verdict, with the program's text if any") {
        const Talk t = talk(ehlo + "MAIL FROM:<a@example.org>\r\n");
        CHECK(t.replies == ehlo_reply + mail_ok);
        CHECK(t.log.back() == "mail_from <a@example.org>");
        Driver d(config(), [](const ServerEvent& e) {
            return Verdict::yes(e.kind == Kind::mail_from ? "Sender fine" : "");
        });
        d.greet();
        d.feed(ehlo + "MAIL FROM:<>\r\n");
        CHECK(d.output == greeting + ehlo_reply + "250 2.1.0 Sender fine\r\n");
    }

    TEST_CASE("a refused MAIL leaves the session ready for another MAIL") {
        CHECK(replies(ehlo + "MAIL FROM:<spam@example.org>\r\nMAIL FROM:<a@example.org>\r\n", config(),
                      reject_when("mail_from <spam@example.org>", 550, {5, 7, 1}, "No")) ==
              ehlo_reply + "550 5.7.1 No\r\n" + mail_ok);
    }

    TEST_CASE("MAIL with a bad path gets 501 5.1.7") {
        CHECK(replies(ehlo + "MAIL FROM:<a@>\r\n") == ehlo_reply + "501 5.1.7 Bad sender address syntax\r\n");
    }

    TEST_CASE("SIZE at the limit is accepted, over it is 552 5.3.4 (RFC 1870)") {
        ServerConfig c = config();
        c.limits.message_size = 1000;
        const std::string ehlo1000 =
            lines({"250-mx.example Hello client.example", "250-PIPELINING", "250-SIZE 1000", "250-8BITMIME",
                   "250-ENHANCEDSTATUSCODES", "250 SMTPUTF8"});
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org> SIZE=999\r\n", c) == ehlo1000 + mail_ok);
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org> SIZE=1000\r\n", c) == ehlo1000 + mail_ok);
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org> SIZE=1001\r\n", c) ==
              ehlo1000 + "552 5.3.4 Message size exceeds fixed limit\r\n");
    }

    TEST_CASE("parameters of extensions not offered get 555 5.5.4") {
        ServerConfig c = config();
        c.extensions.eight_bit_mime = false;
        c.extensions.smtputf8 = false;
        c.extensions.size = false;
        const std::string reply =
            lines({"250-mx.example Hello client.example", "250-PIPELINING", "250 ENHANCEDSTATUSCODES"});
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org> BODY=8BITMIME\r\n", c) ==
              reply + "555 5.5.4 Unsupported parameter: BODY\r\n");
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org> SMTPUTF8\r\n", c) ==
              reply + "555 5.5.4 Unsupported parameter: SMTPUTF8\r\n");
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org> SIZE=10\r\n", c) ==
              reply + "555 5.5.4 Unsupported parameter: SIZE\r\n");
        // DSN is off by default (RFC 3461).
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org> RET=HDRS\r\n") ==
              ehlo_reply + "555 5.5.4 Unsupported parameter: RET\r\n");
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org> ENVID=x\r\n") ==
              ehlo_reply + "555 5.5.4 Unsupported parameter: ENVID\r\n");
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net> NOTIFY=NEVER\r\n") ==
              ehlo_reply + mail_ok + "555 5.5.4 Unsupported parameter: NOTIFY\r\n");
        // AUTH is never offered.
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org> AUTH=<>\r\n") ==
              ehlo_reply + "555 5.5.4 Unsupported parameter: AUTH\r\n");
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org> FOO=1\r\n") ==
              ehlo_reply + "555 5.5.4 Unsupported parameter: FOO\r\n");
    }

    TEST_CASE("parameters of offered extensions are accepted") {
        ServerConfig c = config();
        c.extensions.dsn = true;
        const Talk t =
            talk(ehlo +
                     "MAIL FROM:<a@example.org> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x\r\n"
                     "RCPT TO:<b@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b@example.net\r\n",
                 c);
        CHECK(t.log == std::vector<std::string>{"hello EHLO client.example", "mail_from <a@example.org>",
                                                "rcpt_to <b@example.net>"});
    }

    TEST_CASE("after HELO no extension was offered, so every parameter gets 555") {
        CHECK(replies("HELO client.example\r\nMAIL FROM:<a@example.org> SIZE=10\r\n") ==
              "250 mx.example Hello client.example\r\n555 5.5.4 Unsupported parameter: SIZE\r\n");
    }

    TEST_CASE("a UTF-8 sender needs the SMTPUTF8 parameter: 553 5.6.7 (RFC 6531)") {
        CHECK(replies(ehlo + "MAIL FROM:<\xc3\xa9@example.org>\r\n") ==
              ehlo_reply + "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n");
        CHECK(replies(ehlo + "MAIL FROM:<\xc3\xa9@example.org> SMTPUTF8\r\n") == ehlo_reply + mail_ok);
    }

    // ------------------------------------------------------------------ RCPT

    TEST_CASE("RCPT before MAIL gets 503 5.5.1") {
        CHECK(replies("RCPT TO:<b@example.net>\r\n") == "503 5.5.1 Bad sequence of commands\r\n");
        CHECK(replies(ehlo + "RCPT TO:<b@example.net>\r\n") ==
              ehlo_reply + "503 5.5.1 Bad sequence of commands\r\n");
    }

    TEST_CASE("RCPT is answered 250 2.1.5 after the verdict") {
        const Talk t = talk(transaction);
        CHECK(t.replies == ehlo_reply + mail_ok + rcpt_ok);
    }

    TEST_CASE("a UTF-8 recipient is allowed only when the MAIL had SMTPUTF8") {
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org>\r\nRCPT TO:<\xc3\xa9@example.net>\r\n") ==
              ehlo_reply + mail_ok + "553 5.6.7 Non-ASCII address requires SMTPUTF8\r\n");
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org> SMTPUTF8\r\nRCPT TO:<\xc3\xa9@example.net>\r\n") ==
              ehlo_reply + mail_ok + rcpt_ok);
    }

    TEST_CASE("max_recipients accepted recipients, then 452 4.5.3") {
        for (const std::size_t max : {1u, 2u, 3u}) {
            CAPTURE(max);
            ServerConfig c = config();
            c.max_recipients = max;
            // One recipient, one refused by the program (it does not count), two more.
            std::string client = ehlo + "MAIL FROM:<a@example.org>\r\n";
            for (const char* r : {"r1", "bad", "r2", "r3"})
                client += "RCPT TO:<" + std::string(r) + "@example.net>\r\n";
            // The limit is checked before the program is asked.
            const std::string too_many = "452 4.5.3 Too many recipients\r\n";
            std::string expected = ehlo_reply + mail_ok + rcpt_ok;
            expected += max >= 2 ? "550 5.1.1 No such user\r\n" : too_many;
            expected += max >= 2 ? rcpt_ok : too_many;
            expected += max >= 3 ? rcpt_ok : too_many;
            CHECK(replies(client, c,
                          reject_when("rcpt_to <bad@example.net>", 550, {5, 1, 1}, "No such user")) ==
                  expected);
        }
    }

    TEST_CASE("the recipient count starts again with each transaction") {
        ServerConfig c = config();
        c.max_recipients = 1;
        CHECK(replies(transaction + "RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<c@example.net>\r\n", c) ==
              ehlo_reply + mail_ok + rcpt_ok + ok + mail_ok + rcpt_ok);
    }

    // ------------------------------------------------------------------ DATA

    TEST_CASE("DATA before MAIL gets 503 5.5.1") {
        CHECK(replies("DATA\r\n") == "503 5.5.1 Bad sequence of commands\r\n");
        CHECK(replies(ehlo + "DATA\r\n") == ehlo_reply + "503 5.5.1 Bad sequence of commands\r\n");
    }

    TEST_CASE("DATA without an accepted recipient gets 554 5.5.1 (RFC 2920 3.1)") {
        CHECK(replies(ehlo + "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\nSubject: x\r\n",
                      config(), reject_when("rcpt_to <b@example.net>", 550, {5, 1, 1}, "No such user")) ==
              ehlo_reply + mail_ok + "550 5.1.1 No such user\r\n" + "554 5.5.1 No valid recipients\r\n" +
                  "500 5.5.2 Command unrecognized\r\n");
    }

    TEST_CASE("a message is delivered in chunks and answered 250 2.0.0 after the verdict") {
        const Talk t = talk(transaction + "DATA\r\nSubject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nQUIT\r\n");
        CHECK(t.replies == ehlo_reply + mail_ok + rcpt_ok + go_ahead + ok + "221 2.0.0 Bye\r\n");
        CHECK(t.message == "Subject: hi\r\n\r\n.dot\r\nbody\r\n");
        CHECK(t.log == std::vector<std::string>{"hello EHLO client.example", "mail_from <a@example.org>",
                                                "rcpt_to <b@example.net>", "data_begin",
                                                "message_end 27 octets", "quit"});
        CHECK(t.closed);
    }

    TEST_CASE("accept text replaces Ok in the reply to the message") {
        Driver d(config(), [](const ServerEvent& e) {
            return Verdict::yes(e.kind == Kind::message_end ? "Ok: queued as 4F2A1" : "");
        });
        d.greet();
        d.feed(transaction + "DATA\r\nx\r\n.\r\n");
        CHECK(d.output ==
              greeting + ehlo_reply + mail_ok + rcpt_ok + go_ahead + "250 2.0.0 Ok: queued as 4F2A1\r\n");
    }

    TEST_CASE("after a message the transaction is over and HELO is kept") {
        CHECK(replies(
                  transaction + "DATA\r\nx\r\n.\r\nRCPT TO:<b@example.net>\r\nMAIL FROM:<a@example.org>\r\n",
                  config(), reject_when("message_end", 554, {5, 7, 1}, "Spam")) ==
              ehlo_reply + mail_ok + rcpt_ok + go_ahead + "554 5.7.1 Spam\r\n" +
                  "503 5.5.1 Bad sequence of commands\r\n" + mail_ok);
    }

    TEST_CASE("message size at limit-1 and limit is accepted, limit+1 gets 552 5.3.4 with no verdict") {
        ServerConfig c = config();
        c.limits.message_size = 10;  // content octets after unstuffing, CRLFs included
        const std::string start =
            "EHLO client.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n";
        const std::string head =
            lines({"250-mx.example Hello client.example", "250-PIPELINING", "250-SIZE 10", "250-8BITMIME",
                   "250-ENHANCEDSTATUSCODES", "250 SMTPUTF8"}) +
            mail_ok + rcpt_ok + go_ahead;
        CHECK(replies(start + "1234567\r\n.\r\n", c) == head + ok);
        CHECK(replies(start + "12345678\r\n.\r\n", c) == head + ok);
        const Talk t = talk(start + "123456789\r\n.\r\nNOOP\r\n", c);
        CHECK(t.replies == head + "552 5.3.4 Message size exceeds fixed limit\r\n" + ok);
        CHECK(t.log.back().find("message_too_big") != std::string::npos);
    }

    TEST_CASE("a bare LF in message data gets 550 5.5.2, a long line 550 5.6.0") {
        const std::string head = ehlo_reply + mail_ok + rcpt_ok + go_ahead;
        CHECK(replies(transaction + "DATA\r\na\nb\r\n.\r\n") ==
              head + "550 5.5.2 Bare LF in message data\r\n");
        CHECK(replies(transaction + "DATA\r\n" + std::string(999, 'x') + "\r\n.\r\n") ==
              head + "550 5.6.0 Message line too long\r\n");
        CHECK(replies(transaction + "DATA\r\n" + std::string(998, 'x') + "\r\n.\r\n") == head + ok);
    }

    TEST_CASE("LF.LF, LF.CRLF and CRLF.LF do not end the data (SMTP smuggling)") {
        for (const char* end : {"\n.\n", "\n.\r\n", "\r\n.\n", "\r.\r"}) {
            CAPTURE(end);
            const Talk t = talk(transaction + "DATA\r\nx" + end + "MAIL FROM:<evil@example.org>\r\n.\r\n");
            CHECK(t.replies.find("250 2.1.0") == t.replies.rfind("250 2.1.0"));  // one MAIL only
            CHECK(t.log.back().rfind("message_end", 0) == 0);
            CHECK(t.log.back().find("data_bare") != std::string::npos);
        }
    }

    TEST_CASE("a message larger than the input buffer streams through in chunks") {
        ServerConfig c = config();
        c.input_buffer = 1024;
        std::string body;
        for (int i = 0; i < 300; ++i) body += "line " + std::to_string(i) + " of the message\r\n";
        Driver d(c);
        d.greet();
        d.feed(transaction + "DATA\r\n" + body + ".\r\nQUIT\r\n");
        CHECK(d.message == body);
        CHECK(d.chunks > 1);
        CHECK(d.output == greeting + ehlo_reply + mail_ok + rcpt_ok + go_ahead + ok + "221 2.0.0 Bye\r\n");
    }

    TEST_CASE("data chunk views point into the session's input, not the caller's bytes") {
        smtp::ServerSession s(config());
        s.next_event();
        s.accept();
        s.consume_output(s.pending_output().size());
        const std::string in = transaction + "DATA\r\nhello\r\n";
        s.feed(in);
        bool seen = false;
        while (auto e = s.next_event()) {
            if (e->needs_verdict) s.accept();
            if (e->kind == Kind::data_chunk) {
                seen = true;
                CHECK(e->data == "hello\r\n");
                CHECK((e->data.data() < in.data() || e->data.data() >= in.data() + in.size()));
            }
        }
        CHECK(seen);
        CHECK(s.timeout_ms() == ServerConfig{}.data_timeout_ms);
    }

    // ------------------------------------------------------------------ RSET, NOOP, QUIT, the rest

    TEST_CASE("RSET before HELO is answered 250 2.0.0 and gives a reset event (RFC 5321 4.1.1.5)") {
        const Talk t = talk("RSET\r\n");
        CHECK(t.replies == ok);
        CHECK(t.log == std::vector<std::string>{"reset"});
    }

    TEST_CASE("RSET ends the transaction and keeps HELO") {
        CHECK(replies(transaction + "RSET\r\nDATA\r\nMAIL FROM:<a@example.org>\r\n") ==
              ehlo_reply + mail_ok + rcpt_ok + ok + "503 5.5.1 Bad sequence of commands\r\n" + mail_ok);
        CHECK(replies("RSET x\r\n") == "501 5.5.4 No arguments allowed\r\n");
    }

    TEST_CASE("NOOP is answered 250 2.0.0 Ok in every state") {
        CHECK(replies("NOOP\r\n" + ehlo + "NOOP\r\nMAIL FROM:<a@example.org>\r\nNOOP hello\r\n") ==
              ok + ehlo_reply + ok + mail_ok + ok);
    }

    TEST_CASE("QUIT is answered 221 2.0.0 Bye, gives a quit event and closes") {
        smtp::ServerSession s(config());
        s.next_event();
        s.accept();
        s.consume_output(greeting.size());
        s.feed("QUIT\r\nNOOP\r\n");
        const auto e = s.next_event();
        REQUIRE(e);
        CHECK(e->kind == Kind::quit);
        CHECK_FALSE(s.next_event());
        CHECK(s.pending_output() == "221 2.0.0 Bye\r\n");
        CHECK_FALSE(s.should_close());  // the reply is not sent yet
        CHECK(s.want_write());
        s.consume_output(15);
        CHECK(s.should_close());
        CHECK(s.timeout_ms() == 0);
        CHECK(s.feed("NOOP\r\n") == 6);  // discarded
        CHECK_FALSE(s.next_event());
        CHECK(s.pending_output().empty());
    }

    TEST_CASE("VRFY and EXPN get 252: this server does not verify (RFC 5321 7.3)") {
        CHECK(replies("VRFY postmaster\r\nEXPN staff\r\n") ==
              lines({"252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
                     "252 2.0.0 Cannot EXPN list, but will accept message and attempt delivery"}));
        CHECK(replies("VRFY\r\n") == "501 5.5.4 Argument required\r\n");
    }

    TEST_CASE("HELP, BDAT, STARTTLS and AUTH get 502 5.5.1") {
        CHECK(replies(ehlo + "HELP\r\nBDAT 10 LAST\r\nSTARTTLS\r\nAUTH PLAIN\r\n") ==
              ehlo_reply + lines({"502 5.5.1 Command not implemented", "502 5.5.1 Command not implemented",
                                  "502 5.5.1 Command not implemented", "502 5.5.1 Command not implemented"}));
    }

    TEST_CASE("an unknown command gets 500 5.5.2") {
        const Talk t = talk("XYZZY\r\nMAIL\r\n");
        CHECK(t.replies == lines({"500 5.5.2 Command unrecognized", "503 5.5.1 Bad sequence of commands"}));
        CHECK(t.log == std::vector<std::string>{"protocol_error unknown_command 500",
                                                "protocol_error bad_sequence 503"});
    }

    TEST_CASE("a command line of limit-1 and limit octets is read, limit+1 gets 500 5.5.2") {
        // Limits::command_line (512) counts the CRLF (RFC 5321 4.5.3.1.4).
        for (const std::size_t length : {510u, 511u, 512u, 513u}) {
            CAPTURE(length);
            const std::string line = "NOOP " + std::string(length - 7, 'x') + "\r\n";
            REQUIRE(line.size() == length);
            CHECK(replies(line + "NOOP\r\n") == (length <= 512 ? ok : "500 5.5.2 Line too long\r\n") + ok);
        }
    }

    TEST_CASE("bare LF, bare CR and NUL in a command line get 500 5.5.2 and the next line is read") {
        CHECK(replies("NOOP\nNOOP\r\nNO\rOP\r\nNO\0OP\r\nNOOP\r\n"s) ==
              lines({"500 5.5.2 Bare LF in command line", "250 2.0.0 Ok", "500 5.5.2 Bare CR in command line",
                     "500 5.5.2 NUL byte in command line", "250 2.0.0 Ok"}));
    }

    TEST_CASE("without ENHANCEDSTATUSCODES replies carry no enhanced code") {
        ServerConfig c = config();
        c.extensions.enhanced_status_codes = false;
        CHECK(replies("NOOP\r\nMAIL\r\nFOO\r\n", c) ==
              lines({"250 Ok", "503 Bad sequence of commands", "500 Command unrecognized"}));
    }

    // ------------------------------------------------------------------ errors, 421

    TEST_CASE("max_errors errors are answered, one more ends the session with 421 4.7.0") {
        for (const std::size_t errors : {2u, 3u, 4u}) {
            CAPTURE(errors);
            ServerConfig c = config();
            c.max_errors = 3;
            std::string client;
            for (std::size_t i = 0; i < errors; ++i) client += "FOO\r\n";
            client += "NOOP\r\n";
            const Talk t = talk(client, c);
            std::string expected;
            for (std::size_t i = 0; i < errors; ++i) expected += "500 5.5.2 Command unrecognized\r\n";
            if (errors <= 3) {
                expected += ok;
                CHECK_FALSE(t.closed);
            } else {
                expected += "421 4.7.0 Too many errors, closing connection\r\n";
                CHECK(t.closed);
                CHECK(t.log.back() == "closing 421");
            }
            CHECK(t.replies == expected);
        }
    }

    TEST_CASE("rejections by the program count as errors") {
        ServerConfig c = config();
        c.max_errors = 1;
        const Talk t =
            talk(ehlo + "MAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.net>\r\nRCPT TO:<x@example.net>\r\n",
                 c, reject_when("rcpt_to <x@example.net>", 550, {5, 1, 1}, "No"));
        CHECK(t.replies == ehlo_reply + mail_ok + "550 5.1.1 No\r\n550 5.1.1 No\r\n" +
                               "421 4.7.0 Too many errors, closing connection\r\n");
    }

    TEST_CASE("a delivered message sets the error count back to zero") {
        // Postfix smtpd_hard_error_limit: errors made *without delivering mail*. With
        // max_errors 1, a rejection, a delivery, then another rejection is no 421.
        ServerConfig c = config();
        c.max_errors = 1;
        const std::string transaction =
            "MAIL FROM:<a@example.org>\r\nRCPT TO:<x@example.net>\r\nRCPT TO:<y@example.net>\r\n";
        const Talk t = talk(ehlo + transaction + "DATA\r\nHi\r\n.\r\n" + transaction + "NOOP\r\n", c,
                            reject_when("rcpt_to <x@example.net>", 550, {5, 1, 1}, "No"));
        const std::string rcpts = "550 5.1.1 No\r\n" + rcpt_ok;
        CHECK(t.replies == ehlo_reply + mail_ok + rcpts + go_ahead + ok + mail_ok + rcpts + ok);
        CHECK_FALSE(t.closed);
    }

    TEST_CASE("a 421 verdict closes the session") {
        const Talk t = talk(ehlo + "MAIL FROM:<a@example.org>\r\nNOOP\r\n", config(),
                            reject_when("mail_from <a@example.org>", 421, {4, 3, 0}, "Busy"));
        CHECK(t.replies == ehlo_reply + "421 4.3.0 Busy\r\n");
        CHECK(t.closed);
        CHECK(t.log.back() == "closing 421");
    }

    TEST_CASE("timeout() answers 421 4.4.2 and closes") {
        Driver d(config());
        d.greet();
        d.feed("NOOP\r\n");
        CHECK(d.session.timeout_ms() == 300'000);
        d.session.timeout();
        d.pump();
        CHECK(d.output == greeting + ok + "421 4.4.2 Timeout, closing connection\r\n");
        CHECK(d.log.back() == "closing 421");
        CHECK(d.session.should_close());
        d.session.timeout();  // nothing more
        d.session.shutdown();
        CHECK(d.session.pending_output().empty());
    }

    TEST_CASE("shutdown() answers 421 4.3.2 and closes, even with a verdict pending") {
        smtp::ServerSession s(config());
        s.next_event();
        s.accept();
        s.consume_output(greeting.size());
        s.feed(ehlo);
        REQUIRE(s.next_event()->kind == Kind::hello);
        CHECK(s.timeout_ms() == 0);
        s.shutdown();
        CHECK(s.pending_output() == "421 4.3.2 Service shutting down, closing connection\r\n");
        CHECK(s.accept() == Usage::closed);
        CHECK(s.next_event()->kind == Kind::closing);
    }

    TEST_CASE("timeout_ms is the command timeout, the data timeout in DATA, 0 when waiting for a verdict") {
        ServerConfig c = config();
        c.command_timeout_ms = 111;
        c.data_timeout_ms = 222;
        smtp::ServerSession s(c);
        CHECK(s.timeout_ms() == 0);
        s.next_event();
        CHECK(s.timeout_ms() == 0);
        s.accept();
        s.consume_output(greeting.size());
        CHECK(s.timeout_ms() == 111);
        s.feed(transaction + "DATA\r\n");
        while (auto e = s.next_event()) {
            if (e->needs_verdict) {
                CHECK(s.timeout_ms() == 0);
                s.accept();
            }
        }
        CHECK(s.timeout_ms() == 222);
        s.feed(".\r\n");
        REQUIRE(s.next_event()->kind == Kind::message_end);
        CHECK(s.timeout_ms() == 0);
        s.accept();
        CHECK(s.timeout_ms() == 111);
    }

    // ------------------------------------------------------------------ pipelining

    TEST_CASE("a pipelined group with deferred verdicts is answered in order, nothing early (RFC 2920)") {
        smtp::ServerSession s(config());
        s.next_event();
        s.accept();
        s.consume_output(greeting.size());
        s.feed(ehlo);
        REQUIRE(s.next_event()->kind == Kind::hello);
        s.accept();
        s.consume_output(s.pending_output().size());

        s.feed(
            "MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nRCPT "
            "TO:<c@example.net>\r\nDATA\r\nHi\r\n.\r\n");
        auto e = s.next_event();
        REQUIRE(e);
        CHECK(e->kind == Kind::mail_from);
        CHECK(e->command->path.mailbox == "a@example.org");
        CHECK_FALSE(s.next_event());  // the RCPTs wait behind the verdict
        CHECK(s.pending_output().empty());

        CHECK(s.accept() == Usage::ok);
        e = s.next_event();
        REQUIRE(e);
        CHECK(e->kind == Kind::rcpt_to);
        CHECK(e->command->path.mailbox == "b@example.net");
        CHECK_FALSE(s.next_event());
        CHECK(s.reject(550, {5, 1, 1}, "No such user") == Usage::ok);
        e = s.next_event();
        REQUIRE(e);
        CHECK(e->command->path.mailbox == "c@example.net");
        CHECK(s.pending_output() == mail_ok + "550 5.1.1 No such user\r\n");
        s.accept();
        CHECK(s.next_event()->kind == Kind::data_begin);
        e = s.next_event();
        REQUIRE(e);
        CHECK(e->kind == Kind::data_chunk);
        CHECK(e->data == "Hi\r\n");
        e = s.next_event();
        REQUIRE(e);
        CHECK(e->kind == Kind::message_end);
        CHECK(e->needs_verdict);
        s.accept("queued");
        CHECK(s.pending_output() ==
              mail_ok + "550 5.1.1 No such user\r\n" + rcpt_ok + go_ahead + "250 2.0.0 queued\r\n");
    }

    TEST_CASE("hello and command views stay valid until the verdict while more input arrives") {
        ServerConfig c = config();
        c.input_buffer = 1024;
        smtp::ServerSession s(c);
        s.next_event();
        s.accept();
        s.consume_output(greeting.size());
        s.feed(std::string(500, ' ') + "\r\n");  // one long junk line, read and answered
        REQUIRE(s.next_event()->kind == Kind::protocol_error);
        s.feed(transaction);
        auto e = s.next_event();
        REQUIRE(e->kind == Kind::hello);
        // Fill the buffer while the verdict is pending; the views must not move.
        while (s.input_room() >= 6) s.feed("NOOP\r\n");
        CHECK(e->name == "client.example");
        CHECK(e->command->domain == "client.example");
        s.accept();
        e = s.next_event();
        REQUIRE(e->kind == Kind::mail_from);
        CHECK(e->command->path.mailbox == "a@example.org");
    }

    // ------------------------------------------------------------------ buffers

    TEST_CASE("feed takes at most input_room octets: limit-1, limit, limit+1") {
        ServerConfig c = config();
        c.input_buffer = 2048;
        for (const std::size_t n : {2047u, 2048u, 2049u}) {
            CAPTURE(n);
            smtp::ServerSession s(c);
            s.next_event();
            s.accept();
            s.consume_output(greeting.size());
            CHECK(s.input_room() == 2048);
            const std::string bytes(n, 'x');
            CHECK(s.feed(bytes) == std::min<std::size_t>(n, 2048));
            CHECK(s.input_room() == 2048 - std::min<std::size_t>(n, 2048));
            CHECK(s.want_read() == (n < 2048));
        }
    }

    TEST_CASE("once next_event() has nothing more, all input it read is room again") {
        ServerConfig c = config();
        c.input_buffer = 1024;
        smtp::ServerSession s(c);
        s.next_event();
        s.accept();
        s.consume_output(greeting.size());
        s.feed(transaction + "DATA\r\n");
        while (auto e = s.next_event())
            if (e->needs_verdict) s.accept();
        CHECK(s.input_room() == 1024);
        // Message data that fills the buffer exactly, read without an event at the end.
        std::string data;
        for (int i = 0; i < 10; ++i) data += std::string(98, 'x') + "\r\n";
        data += std::string(22, 'y') + "\r\n";
        REQUIRE(s.feed(data) == 1024);
        CHECK(s.input_room() == 0);
        std::size_t content = 0;
        while (auto e = s.next_event()) content += e->data.size();
        CHECK(content == 1024);
        CHECK(s.input_room() == 1024);
        // A partial command line left at the end moves to the front.
        s.feed(".\r\n");
        REQUIRE(s.next_event()->kind == Kind::message_end);
        s.accept();
        std::string pipelined;
        while (pipelined.size() + 6 <= 1024) pipelined += "NOOP\r\n";
        pipelined.resize(1024, 'N');  // the start of one more line
        CHECK(s.feed(pipelined) == 1024);
        CHECK_FALSE(s.next_event());
        CHECK(s.input_room() == 1024 - (1024 % 6));
    }

    TEST_CASE("an input buffer smaller than two command lines is made that big") {
        ServerConfig c = config();
        c.input_buffer = 1;
        smtp::ServerSession s(c);
        CHECK(s.input_room() == 1024);
        CHECK(replies(ehlo + "NOOP\r\n", c) == ehlo_reply + ok);
    }

    TEST_CASE("a full input buffer of pipelined commands drains without loss") {
        ServerConfig c = config();
        c.input_buffer = 1024;
        std::string client;
        std::string expected;
        for (int i = 0; i < 200; ++i) {
            client += "NOOP " + std::to_string(i) + "\r\n";
            expected += ok;
        }
        CHECK(talk(client, c, smtp::test::accept_all, 0).replies == expected);
    }

    TEST_CASE("processing pauses while the output could pass output_buffer: limit-1, limit, limit+1") {
        // A step may write 8 lines of up to 512 octets; with output_buffer 4096 + k a
        // step runs while pending + 4096 <= output_buffer, so k / 14 + 1 NOOP replies
        // (14 octets each) come out before it pauses.
        for (const std::size_t extra : {27u, 28u, 29u}) {
            CAPTURE(extra);
            ServerConfig c = config();
            c.output_buffer = 8 * 512 + extra;
            smtp::ServerSession s(c);
            s.next_event();
            s.accept();
            s.consume_output(greeting.size());
            std::string client;
            for (int i = 0; i < 10; ++i) client += "NOOP\r\n";
            s.feed(client);
            CHECK_FALSE(s.next_event());
            CHECK(s.pending_output().size() == 14 * (extra / 14 + 1));
            CHECK(s.pending_output().size() <= c.output_buffer);
            s.consume_output(s.pending_output().size());  // drained: it goes on
            CHECK_FALSE(s.next_event());
            CHECK(s.pending_output().size() == 14 * (extra / 14 + 1));
        }
    }

    TEST_CASE("output is bounded even when nobody reads it") {
        ServerConfig c = config();
        smtp::ServerSession s(c);
        s.next_event();
        s.accept();
        s.consume_output(greeting.size());
        std::string junk;
        for (int i = 0; i < 2000; ++i) junk += "NOOP\r\n";
        while (!junk.empty()) {
            const std::size_t n = s.feed(junk);
            junk.erase(0, n);
            while (s.next_event()) {
            }
            if (n == 0) break;
        }
        CHECK(s.pending_output().size() <= c.output_buffer);
        CHECK(s.pending_output().size() > c.output_buffer - 8 * 512 - 14);
        s.timeout();
        CHECK(s.pending_output().size() <= c.output_buffer);
    }

    TEST_CASE("a long reject text is cut to fit a 512-octet reply line") {
        const std::string text(1000, 'z');
        const Talk t = talk(ehlo + "MAIL FROM:<a@example.org>\r\n", config(),
                            reject_when("mail_from <a@example.org>", 550, {5, 7, 1}, text));
        const std::string line = t.replies.substr(ehlo_reply.size());
        CHECK(line.size() == 512);
        CHECK(line.rfind("550 5.7.1 zzz", 0) == 0);
        CHECK(line.substr(510) == "\r\n");
    }

    TEST_CASE("CR and LF in a reject text cannot start a reply of their own") {
        const Talk t = talk(ehlo + "MAIL FROM:<a@example.org>\r\n", config(),
                            reject_when("mail_from <a@example.org>", 550, {5, 7, 1}, "No\r\n250 Ok"));
        CHECK(t.replies == ehlo_reply + "550 5.7.1 No  250 Ok\r\n");
    }

    // ------------------------------------------------------------------ misuse

    TEST_CASE("a verdict with none pending is no_verdict_pending and changes nothing") {
        smtp::ServerSession s(config());
        CHECK(s.accept() == Usage::no_verdict_pending);
        CHECK(s.reject(550, {}, "x") == Usage::no_verdict_pending);
        CHECK(s.pending_output().empty());
        CHECK(s.next_event()->kind == Kind::connect);
        CHECK(s.accept() == Usage::ok);
        CHECK(s.accept() == Usage::no_verdict_pending);
        CHECK(s.pending_output() == greeting);
    }

    TEST_CASE("reject with a code that is not 4xx or 5xx is bad_reply_code and changes nothing") {
        smtp::ServerSession s(config());
        s.next_event();
        for (const int code : {250, 354, 399, 460, 560, 600, 0, -1})
            CHECK(s.reject(code, {}, "x") == Usage::bad_reply_code);
        CHECK(s.pending_output().empty());
        CHECK(s.accept() == Usage::ok);  // the verdict is still pending
    }

    TEST_CASE("verdicts after the session closed are Usage::closed") {
        smtp::ServerSession s(config());
        s.next_event();
        s.timeout();
        CHECK(s.accept() == Usage::closed);
        CHECK(s.reject(550, {}, "x") == Usage::closed);
    }

    TEST_CASE("a session moved with a verdict pending goes on where it was") {
        smtp::ServerSession a(config());
        a.next_event();
        a.accept();
        a.consume_output(greeting.size());
        a.feed(ehlo + "NOOP\r\n");
        const auto e = a.next_event();
        REQUIRE(e->kind == Kind::hello);
        smtp::ServerSession b(std::move(a));
        CHECK(e->name == "client.example");
        CHECK(b.accept() == Usage::ok);
        CHECK_FALSE(b.next_event());
        CHECK(b.pending_output() == ehlo_reply + ok);
    }

    // ------------------------------------------------------------------ what it knows

    TEST_CASE("protocol() is SMTP after HELO, ESMTP after EHLO, UTF8SMTP for an SMTPUTF8 transaction") {
        Driver d(config());
        d.greet();
        CHECK(d.session.protocol() == "SMTP");
        d.feed("HELO client.example\r\n");
        CHECK(d.session.protocol() == "SMTP");
        CHECK(d.session.helo_name() == "client.example");
        d.feed("EHLO other.example\r\n");
        CHECK(d.session.protocol() == "ESMTP");
        CHECK(d.session.helo_name() == "other.example");
        d.feed("MAIL FROM:<a@example.org> SMTPUTF8\r\nRCPT TO:<b@example.net>\r\nDATA\r\nx\r\n.\r\n");
        CHECK(d.session.protocol() == "UTF8SMTP");  // the last transaction's
        d.feed("MAIL FROM:<a@example.org>\r\n");
        CHECK(d.session.protocol() == "ESMTP");
    }

    TEST_CASE("helo_name() is the last accepted name") {
        Driver d(config(), reject_when("hello EHLO bad.example", 550, {5, 7, 1}, "No"));
        d.greet();
        d.feed("EHLO good.example\r\nEHLO bad.example\r\n");
        CHECK(d.session.helo_name() == "good.example");
    }

    // ------------------------------------------------------------------ the state table

    TEST_CASE("the state table has one row per verb in each state that reads commands") {
        using smtp::detail::ServerInput;
        using smtp::detail::ServerState;
        const auto rows = smtp::detail::server_transitions();
        std::set<std::pair<int, int>> seen;
        for (const auto& r : rows) {
            CHECK(seen.insert({static_cast<int>(r.from), static_cast<int>(r.input)}).second);
            CHECK(smtp::detail::state_name(r.from) != "invalid");
            CHECK(!smtp::detail::input_name(r.input).empty());
            if (r.refusal != Errc::ok) CHECK(r.to == r.from);
            if (r.verdict) CHECK(r.refusal == Errc::ok);
        }
        for (const ServerState s : {ServerState::refused, ServerState::start, ServerState::ready,
                                    ServerState::mail, ServerState::rcpt})
            for (int v = 0; v <= static_cast<int>(ServerInput::unknown); ++v)
                CHECK(seen.count({static_cast<int>(s), v}) == 1);
        CHECK(smtp::detail::input_name(ServerInput::final_dot) == "final dot");
        CHECK(smtp::detail::input_name(ServerInput::mail) == "MAIL");
        const auto& t = smtp::detail::server_transition(ServerState::mail, ServerInput::data);
        CHECK(t.refusal == Errc::no_valid_recipients);
        CHECK(smtp::detail::server_transition(ServerState::data, ServerInput::mail).refusal ==
              Errc::bad_sequence);
    }
}
