// Integration tests of ClientSession against ServerSession, wired in memory
// (session_pair.hpp): whole conversations with random chunking of both directions,
// pipelining on and off, scripted and held-back verdicts. What must hold in every
// one of them:
//  - each message the server accepted arrives byte-exact: content == canonical(body)
//    (the bodies are CRLF text, so that is the body itself), with its envelope;
//  - each recipient gets exactly one recipient_result, with the outcome the
//    server's verdict implies and that verdict's reply code; each message exactly
//    one message_result, after its recipients';
//  - the conversation ends with QUIT/221 and both sides closing.
#include <smtp/client_session.hpp>
#include <smtp/server_session.hpp>

#include "canonical.hpp"
#include "session_pair.hpp"

#include <doctest/doctest.h>

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using smtp::test::canonical;

using smtp::Outcome;
using smtp::test::PairConfig;
using smtp::test::ScriptedVerdict;
using smtp::test::SessionPair;

std::size_t pick(std::mt19937& rng, std::size_t low, std::size_t high) {
    return std::uniform_int_distribution<std::size_t>(low, high)(rng);
}

// Valid message text of about `target` octets: CRLF lines, some empty, some
// starting with "." (a lone ".", "..", ".text": all must be dot-stuffed), and with
// `eight_bit` some UTF-8. No capital letters, so no body line looks like a command
// in the pair's pipelining check.
std::string make_body(std::mt19937& rng, std::size_t target, bool eight_bit = false) {
    constexpr std::string_view text = "abcdefghijklmnopqrstuvwxyz0123456789 .,;:-_!?'";
    std::string body;
    while (body.size() < target) {
        const std::size_t kind = pick(rng, 0, 9);
        if (kind == 1) body += '.';
        if (kind == 2) body += "..";
        if (kind >= 3) {
            if (kind == 3) body += '.';
            for (std::size_t n = pick(rng, 1, 70); n > 0; --n) body += text[pick(rng, 0, text.size() - 1)];
            if (eight_bit && kind == 4) body += "\xc3\xa9t\xc3\xa9";  // "été"
        }
        body += "\r\n";  // kind 0: an empty line
    }
    return body;
}

// A body as a careless program hands it over: line ends CRLF, bare LF or bare CR,
// sometimes none at the end, lines of dots among them.
std::string make_raw_body(std::mt19937& rng, std::size_t target) {
    constexpr std::string_view ends[] = {"\r\n", "\n", "\r"};
    constexpr std::string_view starts[] = {"", ".", "..", "x", "\r"};
    std::string body;
    while (body.size() < target) {
        body += starts[pick(rng, 0, 4)];
        for (std::size_t n = pick(rng, 0, 30); n > 0; --n) body += static_cast<char>('a' + pick(rng, 0, 25));
        body += ends[pick(rng, 0, 2)];
    }
    if (pick(rng, 0, 1) == 0) body += "no line end";
    return body;
}

// One message of a test: what is sent, and what the server application answers.
struct Planned {
    smtp::OutgoingMessage message;
    std::string body;
    std::vector<ScriptedVerdict> rcpt;  // per recipient
    ScriptedVerdict at_dot;             // to the final dot
    std::uint64_t id = 0;
};

// `count` messages of about `body_size` octets with 1 to 3 recipients each. With
// `mixed_verdicts`, some recipients get 550 5.1.1 or 451 4.3.0 and some final dots
// 554 5.6.0 or 452 4.3.1; otherwise all is accepted. Addresses are unique, so
// verdicts can be scripted per mailbox and per sender.
std::vector<Planned> plan(std::mt19937& rng, std::size_t count, std::size_t body_size, bool mixed_verdicts) {
    std::vector<Planned> plans(count);
    for (std::size_t m = 0; m < count; ++m) {
        Planned& p = plans[m];
        p.message.sender = "sender" + std::to_string(m) + "@example.org";
        const bool eight_bit = pick(rng, 0, 4) == 0;
        p.message.eight_bit = eight_bit;
        p.body = make_body(rng, pick(rng, body_size / 2, body_size), eight_bit);
        for (std::size_t r = pick(rng, 1, 3); r > 0; --r) {
            p.message.recipients.push_back("rcpt" + std::to_string(m) + "." + std::to_string(r) +
                                           "@example.net");
            const std::size_t roll = mixed_verdicts ? pick(rng, 0, 9) : 9;
            p.rcpt.push_back(roll == 0   ? smtp::test::no_such_user()
                             : roll == 1 ? smtp::test::try_later()
                                         : smtp::test::accept_verdict());
        }
        const std::size_t roll = mixed_verdicts ? pick(rng, 0, 19) : 19;
        if (roll == 0) p.at_dot = {554, {5, 6, 0}, "Content refused"};
        if (roll == 1) p.at_dot = {452, {4, 3, 1}, "Spool full"};
    }
    return plans;
}

// A message with its envelope only. (Aggregate initialization that leaves `size`
// out, even designated, warns with g++ 12 -Wextra.)
smtp::OutgoingMessage message(std::string sender, std::vector<std::string> recipients) {
    smtp::OutgoingMessage m;
    m.sender = std::move(sender);
    m.recipients = std::move(recipients);
    return m;
}

Outcome outcome_of(int code) {
    if (code < 400) return Outcome::delivered;
    return code < 500 ? Outcome::temporary : Outcome::permanent;
}

const char* name(Outcome o) {
    return o == Outcome::delivered ? "delivered" : o == Outcome::temporary ? "temporary" : "permanent";
}

// Compares what happened with what the plans imply; "" when all agrees, else the
// first difference, in words.
std::string first_difference(const SessionPair& pair, const std::vector<Planned>& plans) {
    std::size_t next_received = 0;
    for (std::size_t m = 0; m < plans.size(); ++m) {
        const Planned& p = plans[m];
        const std::string where = "message " + std::to_string(m) + ": ";
        std::vector<std::string> accepted;
        for (std::size_t r = 0; r < p.rcpt.size(); ++r)
            if (p.rcpt[r].accepted()) accepted.push_back(p.message.recipients[r]);
        const bool delivered = !accepted.empty() && p.at_dot.accepted();

        if (delivered) {
            if (next_received >= pair.received().size()) return where + "never arrived";
            const smtp::test::ReceivedMessage& got = pair.received()[next_received++];
            if (got.sender != p.message.sender) return where + "arrived from " + got.sender;
            if (got.recipients != accepted) return where + "arrived with other recipients";
            const std::string want = canonical(p.body);
            if (got.content != want)
                return where + "content differs: " + std::to_string(got.content.size()) + " octets, not " +
                       std::to_string(want.size());
        }

        const smtp::test::MessageReport& report = pair.report(p.id);
        if (report.results != 1) return where + std::to_string(report.results) + " message_results";
        if (report.delivered != (delivered ? accepted.size() : 0))
            return where + "message_result says " + std::to_string(report.delivered) + " delivered";
        for (std::size_t r = 0; r < p.rcpt.size(); ++r) {
            const smtp::test::RecipientReport& got = report.recipients[r];
            const ScriptedVerdict& want = p.rcpt[r].accepted() ? p.at_dot : p.rcpt[r];
            const std::string who = where + "recipient " + std::to_string(r) + ": ";
            if (got.results != 1) return who + std::to_string(got.results) + " recipient_results";
            if (got.outcome != outcome_of(want.code))
                return who + name(got.outcome) + ", not " + name(outcome_of(want.code));
            if (got.local) return who + "refused locally";
            if (got.code != want.code)
                return who + "reply " + std::to_string(got.code) + ", not " + std::to_string(want.code);
            if (want.status.present() && got.status != want.status) return who + "enhanced status lost";
        }
    }
    if (next_received != pair.received().size()) return "the server received messages nobody sent";
    return "";
}

// The end every conversation must have: QUIT answered 221, both sides closed.
void check_clean_end(const SessionPair& pair) {
    for (const std::string& p : pair.problems()) FAIL_CHECK(p);
    CHECK(pair.server_quit());
    CHECK(pair.last_server_line().starts_with("221 "));
    CHECK(pair.client_closed_event());
    CHECK(pair.client_should_close());
    CHECK(pair.server_should_close());
    CHECK_FALSE(pair.client_failed());
    CHECK_FALSE(pair.peer_close_reported());
}

// Runs the plans through a pair and checks everything.
void run_plans(SessionPair& pair, std::vector<Planned>& plans) {
    for (Planned& p : plans) {
        for (std::size_t r = 0; r < p.rcpt.size(); ++r)
            pair.set_rcpt_verdict(p.message.recipients[r], p.rcpt[r]);
        pair.set_message_verdict(p.message.sender, p.at_dot);
        p.id = pair.submit(p.message, p.body);
    }
    pair.run();
    check_clean_end(pair);
    CHECK(first_difference(pair, plans) == "");
}

PairConfig config(std::uint32_t seed, std::size_t max_chunk, bool pipelining) {
    PairConfig c;
    c.seed = seed;
    c.max_chunk = max_chunk;
    c.max_body_chunk = max_chunk;
    c.server.extensions.pipelining = pipelining;
    c.client.use_pipelining = pipelining;
    return c;
}

// Pipelined groups (MAIL and RCPT in one burst) happen exactly when both sides
// want pipelining.
void check_pipelining(const SessionPair& pair, bool pipelining) {
    CHECK(pair.capabilities().pipelining == pipelining);
    if (pipelining)
        CHECK(pair.pipelined_groups() > 0);
    else
        CHECK(pair.pipelined_groups() == 0);
}

}  // namespace

TEST_SUITE("session") {
    TEST_CASE("one message to two recipients arrives byte-exact in any chunking") {
        for (const bool pipelining : {true, false}) {
            for (const std::size_t max_chunk : {1, 2, 5, 64, 4096}) {
                for (std::uint32_t seed = 1; seed <= 4; ++seed) {
                    CAPTURE(pipelining);
                    CAPTURE(max_chunk);
                    CAPTURE(seed);
                    std::mt19937 rng(seed);
                    std::vector<Planned> plans = plan(rng, 1, 300, false);
                    plans[0].message.recipients = {"alice@example.net", "bob@example.net"};
                    plans[0].rcpt.resize(2);
                    plans[0].body = "Subject: test\r\n\r\n.\r\n..\r\n.leading dot\r\n\r\nend\r\n";
                    plans[0].message.eight_bit = false;
                    SessionPair pair(config(seed, max_chunk, pipelining));
                    run_plans(pair, plans);
                    check_pipelining(pair, pipelining);
                }
            }
        }
    }

    TEST_CASE("10 messages with scripted verdicts: each recipient's outcome carries the server's reply") {
        for (const bool pipelining : {true, false}) {
            for (const std::size_t max_chunk : {1, 7, 100, 3000}) {
                for (std::uint32_t seed = 1; seed <= 8; ++seed) {
                    CAPTURE(pipelining);
                    CAPTURE(max_chunk);
                    CAPTURE(seed);
                    std::mt19937 rng(seed * 101);
                    std::vector<Planned> plans = plan(rng, 10, 2000, true);
                    plans[3].body.clear();  // an empty message is a message too
                    SessionPair pair(config(seed, max_chunk, pipelining));
                    run_plans(pair, plans);
                    check_pipelining(pair, pipelining);
                }
            }
        }
    }

    TEST_CASE("1000 small messages in one conversation arrive byte-exact, pipelined or not") {
        for (const bool pipelining : {true, false}) {
            CAPTURE(pipelining);
            std::mt19937 rng(1000);
            std::vector<Planned> plans = plan(rng, 1000, 200, true);
            SessionPair pair(config(7, 512, pipelining));
            run_plans(pair, plans);
            check_pipelining(pair, pipelining);
        }
    }

    TEST_CASE("verdicts held back for rounds keep pipelined commands waiting, replies in order") {
        for (const bool pipelining : {true, false}) {
            for (std::uint32_t seed = 1; seed <= 5; ++seed) {
                CAPTURE(pipelining);
                CAPTURE(seed);
                std::mt19937 rng(seed);
                std::vector<Planned> plans = plan(rng, 20, 500, true);
                PairConfig c = config(seed, 32, pipelining);
                c.defer_rounds = 8;
                SessionPair pair(c);
                run_plans(pair, plans);
                check_pipelining(pair, pipelining);
                // Pipelined input arrives while a verdict is pending; without
                // pipelining the client waits for every reply, so nothing does.
                if (pipelining)
                    CHECK(pair.fed_while_waiting() > 0);
                else
                    CHECK(pair.fed_while_waiting() == 0);
            }
        }
    }

    TEST_CASE("large messages and 100 recipients pass through small server buffers") {
        for (const bool pipelining : {true, false}) {
            CAPTURE(pipelining);
            std::mt19937 rng(17);
            std::vector<Planned> plans = plan(rng, 4, 100'000, true);
            plans[1].message.recipients.clear();
            plans[1].rcpt.clear();
            for (int r = 0; r < 100; ++r) {
                plans[1].message.recipients.push_back("many" + std::to_string(r) + "@example.net");
                plans[1].rcpt.push_back(r % 7 == 3 ? smtp::test::no_such_user()
                                                   : smtp::test::accept_verdict());
            }
            PairConfig c = config(17, 5000, pipelining);
            c.max_body_chunk = 20'000;
            c.server.input_buffer = 2048;  // input waits on the wire, not in the session
            c.server.output_buffer = 600;  // 100 pipelined RCPT replies do not fit at once
            SessionPair pair(c);
            run_plans(pair, plans);
        }
    }

    TEST_CASE("a message with every recipient rejected is not sent; the next one is delivered") {
        for (const bool pipelining : {true, false}) {
            CAPTURE(pipelining);
            std::mt19937 rng(5);
            std::vector<Planned> plans = plan(rng, 2, 300, false);
            plans[0].message.recipients = {"gone@example.net", "busy@example.net"};
            plans[0].rcpt = {smtp::test::no_such_user(), smtp::test::try_later()};
            SessionPair pair(config(5, 16, pipelining));
            run_plans(pair, plans);
            CHECK(pair.received().size() == 1);
        }
    }

    TEST_CASE("a message over the server's SIZE is refused permanently, the next one delivered") {
        for (const bool pipelining : {true, false}) {
            CAPTURE(pipelining);
            std::mt19937 rng(9);
            PairConfig c = config(9, 200, pipelining);
            c.server.limits.message_size = 1000;
            SessionPair pair(c);

            const std::string big = make_body(rng, 5000);
            smtp::OutgoingMessage declared = message("big@example.org", {"a@example.net", "b@example.net"});
            declared.size = big.size();
            const std::uint64_t declared_id = pair.submit(declared, big);
            // Without SIZE= the server finds out only while reading: 552 after the dot.
            const std::uint64_t undeclared_id =
                pair.submit(message("big@example.org", {"c@example.net"}), big);
            const std::string small = make_body(rng, 500);
            const std::uint64_t small_id =
                pair.submit(message("small@example.org", {"d@example.net"}), small);
            pair.run();
            check_clean_end(pair);

            CHECK(pair.capabilities().size == std::optional<std::uint64_t>(1000));
            for (const auto& r : pair.report(declared_id).recipients) {
                CHECK(r.results == 1);
                CHECK(r.outcome == Outcome::permanent);
                CHECK((r.local || r.code == 552));  // refused locally, or the server's 552 to MAIL
            }
            CHECK(pair.report(declared_id).delivered == 0);
            const auto& undeclared = pair.report(undeclared_id).recipients.at(0);
            CHECK(undeclared.outcome == Outcome::permanent);
            CHECK(undeclared.code == 552);
            CHECK_FALSE(undeclared.local);
            CHECK(pair.server_refused_messages() == 1);
            CHECK(pair.report(small_id).delivered == 1);
            REQUIRE(pair.received().size() == 1);
            CHECK(pair.received()[0].content == small);
        }
    }

    TEST_CASE("an 8BITMIME message to a server without 8BITMIME is refused locally, nothing sent") {
        std::mt19937 rng(11);
        PairConfig c = config(11, 50, true);
        c.server.extensions.eight_bit_mime = false;
        SessionPair pair(c);
        smtp::OutgoingMessage eight_bit = message("latin@example.org", {"a@example.net", "b@example.net"});
        eight_bit.eight_bit = true;
        const std::uint64_t refused = pair.submit(eight_bit, make_body(rng, 300, true));
        const std::string plain = make_body(rng, 300);
        const std::uint64_t sent = pair.submit(message("ascii@example.org", {"c@example.net"}), plain);
        pair.run();
        check_clean_end(pair);

        CHECK_FALSE(pair.capabilities().eight_bit_mime);
        for (const auto& r : pair.report(refused).recipients) {
            CHECK(r.results == 1);
            CHECK(r.outcome == Outcome::permanent);
            CHECK(r.local);
        }
        CHECK(pair.report(refused).delivered == 0);
        CHECK(pair.mail_commands() == 1);  // only for the plain message
        CHECK(pair.report(sent).delivered == 1);
        REQUIRE(pair.received().size() == 1);
        CHECK(pair.received()[0].content == plain);
    }

    TEST_CASE("a session ended by the server with 421 still gives every recipient one result") {
        std::mt19937 rng(13);
        std::vector<Planned> plans = plan(rng, 10, 300, false);
        for (Planned& p : plans) p.rcpt[0] = smtp::test::no_such_user();  // an error each
        PairConfig c = config(13, 64, true);
        c.server.max_errors = 3;
        SessionPair pair(c);
        for (Planned& p : plans) {
            pair.set_rcpt_verdict(p.message.recipients[0], p.rcpt[0]);
            p.id = pair.submit(p.message, p.body);
        }
        pair.run();
        for (const std::string& p : pair.problems()) FAIL_CHECK(p);
        CHECK(pair.client_failed());
        CHECK(pair.last_server_line().starts_with("421 4.7.0 "));
        CHECK(pair.client_closed_event());
        CHECK(pair.client_should_close());
        CHECK(pair.server_should_close());
        CHECK_FALSE(pair.server_quit());
        for (const Planned& p : plans) {
            const smtp::test::MessageReport& report = pair.report(p.id);
            CHECK(report.results == 1);
            for (const smtp::test::RecipientReport& r : report.recipients) {
                CHECK(r.results == 1);
                // Delivered before the 421, or refused, or left to try again later.
                if (r.outcome == Outcome::delivered) CHECK(r.code == 250);
            }
            CHECK(report.recipients[0].outcome != Outcome::delivered);
        }
        // The last messages never got a transaction: they are to be tried again.
        CHECK(pair.report(plans.back().id).recipients[0].outcome == Outcome::temporary);
    }

    TEST_CASE("bodies with bare LF, bare CR and no final line end arrive as canonical(body)") {
        for (std::uint32_t seed = 1; seed <= 6; ++seed) {
            CAPTURE(seed);
            std::mt19937 rng(seed);
            std::vector<Planned> plans = plan(rng, 10, 300, false);
            for (Planned& p : plans) {
                p.body = make_raw_body(rng, pick(rng, 0, 400));
                p.message.eight_bit = false;
            }
            SessionPair pair(config(seed, seed * 3, seed % 2 == 0));
            run_plans(pair, plans);
        }
    }

    TEST_CASE("the null sender, <Postmaster> and SMTPUTF8 addresses arrive as sent") {
        SessionPair pair(config(19, 9, true));
        const std::uint64_t bounce = pair.submit(message("", {"Postmaster"}), "bounce\r\n");
        smtp::OutgoingMessage utf8 =
            message("\xe7\x94\xa8\xe6\x88\xb7@example.org", {"\xce\xb4@example.net"});
        utf8.smtputf8 = true;
        const std::uint64_t international = pair.submit(utf8, "utf8\r\n");
        pair.run();
        check_clean_end(pair);
        CHECK(pair.report(bounce).delivered == 1);
        CHECK(pair.report(international).delivered == 1);
        REQUIRE(pair.received().size() == 2);
        CHECK(pair.received()[0].sender == "");
        CHECK(pair.received()[0].recipients == std::vector<std::string>{"Postmaster"});
        CHECK(pair.received()[1].sender == utf8.sender);
        CHECK(pair.received()[1].recipients == utf8.recipients);
    }

    TEST_CASE("a line over 1000 octets is refused with 550 5.6.0 for every recipient") {
        SessionPair pair(config(23, 300, true));
        const std::string long_line = "ok\r\n" + std::string(1200, 'l') + "\r\nok\r\n";
        const std::uint64_t id =
            pair.submit(message("a@example.org", {"b@example.net", "c@example.net"}), long_line);
        const std::uint64_t next = pair.submit(message("a@example.org", {"d@example.net"}), "fine\r\n");
        pair.run();
        check_clean_end(pair);
        for (const auto& r : pair.report(id).recipients) {
            CHECK(r.outcome == Outcome::permanent);
            CHECK(r.code == 550);
            CHECK(r.status == std::optional<smtp::EnhancedStatus>({5, 6, 0}));
        }
        CHECK(pair.server_refused_messages() == 1);
        CHECK(pair.report(next).delivered == 1);
        CHECK(pair.received().size() == 1);
    }

    TEST_CASE("addresses that are no valid paths are refused locally and never reach the wire") {
        SessionPair pair(config(29, 64, true));
        const std::uint64_t space = pair.submit(message("a b@example.org", {"c@example.net"}), "x\r\n");
        const std::uint64_t injected = pair.submit(
            message("a@example.org", {"c@example.net>\r\nRSET\r\nRCPT TO:<d@example.net"}), "x\r\n");
        const std::uint64_t good = pair.submit(message("a@example.org", {"e@example.net"}), "x\r\n");
        pair.run();
        check_clean_end(pair);
        for (const std::uint64_t id : {space, injected}) {
            CAPTURE(id);
            REQUIRE(pair.report(id).recipients.size() == 1);
            CHECK(pair.report(id).recipients[0].outcome == Outcome::permanent);
            CHECK(pair.report(id).recipients[0].local);
        }
        CHECK(pair.report(good).delivered == 1);
        CHECK(pair.mail_commands() == 1);
        CHECK(pair.rcpt_commands() == 1);
    }

    // ------------------------------------------------------------------ STARTTLS

    TEST_CASE("both sides doing STARTTLS deliver every message over TLS, in any chunking") {
        for (const bool pipelining : {true, false}) {
            for (const std::size_t max_chunk : {1, 3, 64, 4096}) {
                for (std::uint32_t seed = 1; seed <= 4; ++seed) {
                    CAPTURE(pipelining);
                    CAPTURE(max_chunk);
                    CAPTURE(seed);
                    std::mt19937 rng(seed * 7);
                    std::vector<Planned> plans = plan(rng, 3, 500, true);
                    PairConfig c = config(seed, max_chunk, pipelining);
                    c.defer_rounds = static_cast<int>(seed % 3);
                    c.server.extensions.starttls = true;
                    c.client.tls = seed % 2 ? smtp::TlsPolicy::may : smtp::TlsPolicy::encrypt;
                    SessionPair pair(c);
                    run_plans(pair, plans);
                    check_pipelining(pair, pipelining);
                    CHECK(pair.client_tls_begins() == 1);
                    CHECK(pair.server_tls_begins() == 1);
                    CHECK(pair.client_in_tls());
                    CHECK(pair.server_in_tls());
                    CHECK(pair.client_ready_events() == 1);
                    CHECK_FALSE(pair.capabilities().starttls);  // not offered again inside TLS
                    for (const smtp::test::ReceivedMessage& m : pair.received())
                        CHECK(m.protocol == "ESMTPS");
                }
            }
        }
    }

    TEST_CASE("a server with require_tls takes mail from a client that does STARTTLS") {
        PairConfig c = config(41, 16, true);
        c.server.extensions.starttls = true;
        c.server.require_tls = true;
        c.client.tls = smtp::TlsPolicy::encrypt;
        SessionPair pair(c);
        const std::uint64_t id = pair.submit(message("a@example.org", {"b@example.net"}), "hello\r\n");
        pair.run();
        check_clean_end(pair);
        CHECK(pair.report(id).delivered == 1);
        REQUIRE(pair.received().size() == 1);
        CHECK(pair.received()[0].content == "hello\r\n");
    }

    TEST_CASE("a server with require_tls refuses a client without TLS: 530, permanent") {
        PairConfig c = config(43, 16, true);
        c.server.extensions.starttls = true;
        c.server.require_tls = true;
        SessionPair pair(c);  // client TlsPolicy::none
        const std::uint64_t id = pair.submit(message("a@example.org", {"b@example.net"}), "hello\r\n");
        pair.run();
        check_clean_end(pair);
        const auto& r = pair.report(id).recipients.at(0);
        CHECK(r.outcome == Outcome::permanent);
        CHECK(r.code == 530);
        CHECK(r.status == std::optional<smtp::EnhancedStatus>({5, 7, 0}));
        CHECK(pair.received().empty());
        CHECK(pair.server_tls_begins() == 0);
    }

    TEST_CASE("a client with encrypt against a server without STARTTLS sends no mail, only QUIT") {
        PairConfig c = config(47, 16, true);
        c.client.tls = smtp::TlsPolicy::encrypt;
        SessionPair pair(c);
        const std::uint64_t id =
            pair.submit(message("a@example.org", {"b@example.net", "c@example.net"}), "x\r\n");
        pair.run();
        for (const std::string& p : pair.problems()) FAIL_CHECK(p);
        CHECK(pair.client_failure() == smtp::ConnectionFailure::tls_unavailable);
        for (const auto& r : pair.report(id).recipients) {
            CHECK(r.outcome == Outcome::temporary);
            CHECK(r.local);
            CHECK(r.code == 451);
            CHECK(r.status == std::optional<smtp::EnhancedStatus>({4, 7, 4}));
        }
        CHECK(pair.mail_commands() == 0);
        CHECK(pair.server_quit());
        CHECK(pair.server_should_close());
    }

    TEST_CASE("a failed handshake fails every recipient temporarily and nothing is sent") {
        PairConfig c = config(53, 16, true);
        c.server.extensions.starttls = true;
        c.client.tls = smtp::TlsPolicy::may;
        c.handshake_fails = true;
        SessionPair pair(c);
        const std::uint64_t id =
            pair.submit(message("a@example.org", {"b@example.net", "c@example.net"}), "x\r\n");
        pair.run();
        for (const std::string& p : pair.problems()) FAIL_CHECK(p);
        CHECK(pair.client_failure() == smtp::ConnectionFailure::tls_failed);
        CHECK(pair.client_closed_event());
        CHECK(pair.client_should_close());
        for (const auto& r : pair.report(id).recipients) {
            CHECK(r.outcome == Outcome::temporary);
            CHECK(r.code == 451);
            CHECK(r.status == std::optional<smtp::EnhancedStatus>({4, 7, 5}));
        }
        CHECK(pair.report(id).results == 1);
        CHECK(pair.mail_commands() == 0);
        CHECK_FALSE(pair.server_in_tls());
        CHECK_FALSE(pair.server_should_close());  // its program drops it on EOF
    }
}
