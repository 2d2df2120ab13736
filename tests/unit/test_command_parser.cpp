// parse_command() and the address validators: RFC 5321 §4.1 grammar, every limit at
// limit-1, limit and limit+1, the ESMTP parameters, UTF-8, and each leniency on and off.
#include <smtp/command.hpp>

#include <doctest/doctest.h>

#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace {

using smtp::Command;
using smtp::Errc;
using smtp::Limits;
using smtp::ParseOptions;
using smtp::Verb;

// The error's name, so a failed check prints "bad_sender" rather than a number.
std::string name(Errc e) { return std::string(smtp::error_info(e).name); }

std::string parse_error(std::string_view line, const ParseOptions& options = {}, const Limits& limits = {}) {
    Command c;
    return name(smtp::parse_command(line, c, options, limits).error);
}

ParseOptions utf8_options() {
    ParseOptions o;
    o.smtputf8 = true;
    return o;
}

// "a.a.a..." of exactly n octets: a valid domain of any length.
std::string domain_of(std::size_t n) {
    std::string d(n, 'a');
    for (std::size_t i = 1; i + 1 < n; i += 2) d[i] = '.';
    return d;
}

struct Case {
    std::string_view line;
    std::string_view error;  // expected error name, "ok" for success
};

void check_cases(const std::vector<Case>& cases, const ParseOptions& options = {},
                 const Limits& limits = {}) {
    for (const Case& c : cases) {
        CAPTURE(c.line);
        CHECK(parse_error(c.line, options, limits) == c.error);
    }
}

bool inside(std::string_view part, std::string_view line) {
    return part.empty() ||
           (part.data() >= line.data() && part.data() + part.size() <= line.data() + line.size());
}

}  // namespace

TEST_SUITE("command") {
    TEST_CASE("verbs are recognized in any case and need one SP before an argument") {
        check_cases({
            {"QUIT", "ok"},
            {"quit", "ok"},
            {"QuIt", "ok"},
            {"DATA", "ok"},
            {"RSET", "ok"},
            {"NOOP", "ok"},
            {"HELP", "ok"},
            {"STARTTLS", "ok"},
            {"StartTLS", "ok"},
            {"", "unknown_command"},
            {"QUI", "unknown_command"},
            {"QUITX", "unknown_command"},
            {"QUIT\t", "unknown_command"},
            {" QUIT", "unknown_command"},
            {"XYZZY plugh", "unknown_command"},
            {"STAR", "unknown_command"},
            {"STARTTLSX", "unknown_command"},
            {"Q\xc3\x9cIT", "unknown_command"},
            {"Q@IT", "unknown_command"},
        });
    }

    TEST_CASE("DATA, RSET, QUIT and STARTTLS take no argument, not even a trailing SP") {
        check_cases({
            {"DATA x", "unexpected_argument"},
            {"RSET now", "unexpected_argument"},
            {"QUIT ", "unexpected_argument"},
            {"STARTTLS x", "unexpected_argument"},
        });
    }

    TEST_CASE("an unknown verb reports unknown_command with the verb as written") {
        Command c;
        const auto r = smtp::parse_command("XYZZY plugh", c);
        CHECK(r.error == Errc::unknown_command);
        CHECK(c.verb == Verb::unknown);
        CHECK(c.verb_text == "XYZZY");
        CHECK(smtp::error_info(r.error).reply_code == 500);
    }

    TEST_CASE("verb_name gives the upper-case verb") {
        CHECK(smtp::verb_name(Verb::helo) == "HELO");
        CHECK(smtp::verb_name(Verb::starttls) == "STARTTLS");
        CHECK(smtp::verb_name(Verb::auth) == "AUTH");
        CHECK(smtp::verb_name(Verb::unknown) == "unknown");
    }

    TEST_CASE("NOOP and HELP take any text, VRFY and EXPN require some") {
        Command c;
        CHECK(smtp::parse_command("NOOP hello world", c).ok());
        CHECK(c.text == "hello world");
        CHECK(smtp::parse_command("HELP MAIL", c).ok());
        CHECK(c.verb == Verb::help);
        CHECK(c.text == "MAIL");
        CHECK(smtp::parse_command("VRFY Crispin", c).ok());  // RFC 5321 Appendix D
        CHECK(c.verb == Verb::vrfy);
        CHECK(c.text == "Crispin");
        CHECK(smtp::parse_command("EXPN Example-People", c).ok());
        CHECK(c.text == "Example-People");
        check_cases(
            {{"VRFY", "missing_argument"}, {"VRFY ", "missing_argument"}, {"EXPN", "missing_argument"}});
    }

    // ------------------------------------------------------------ HELO and EHLO

    TEST_CASE("EHLO takes a domain or an address literal") {
        Command c;
        REQUIRE(smtp::parse_command("EHLO foo.com", c).ok());
        CHECK(c.verb == Verb::ehlo);
        CHECK(c.verb_text == "EHLO");
        CHECK(c.domain == "foo.com");
        REQUIRE(smtp::parse_command("ehlo [192.0.2.1]", c).ok());
        CHECK(c.verb_text == "ehlo");
        CHECK(c.domain == "[192.0.2.1]");
        check_cases({
            {"EHLO a", "ok"},
            {"EHLO 123.example", "ok"},
            {"EHLO xn--bcher-kva.example", "ok"},
            {"EHLO mail-1.EXAMPLE.org", "ok"},
            {"EHLO [IPv6:2001:db8::1]", "ok"},
            {"EHLO [IPv6:::1]", "ok"},
            {"EHLO", "missing_argument"},
            {"EHLO ", "missing_argument"},
            {"EHLO example.com.", "bad_domain"},
            {"EHLO .example.com", "bad_domain"},
            {"EHLO a..b", "bad_domain"},
            {"EHLO -a.com", "bad_domain"},
            {"EHLO a-.com", "bad_domain"},
            {"EHLO a_b.com", "bad_domain"},
            {"EHLO  example.com", "bad_domain"},
            {"EHLO example.com ", "bad_domain"},
            {"EHLO example.com extra", "bad_domain"},
            {"EHLO [IPv6:1:2:3:4:5:6:7:8:9]", "bad_domain"},
            {"EHLO [300.1.1.1]", "bad_domain"},
            {"EHLO b\xc3\xbc"
             "cher.example",
             "bad_domain"},
        });
    }

    TEST_CASE("HELO takes an address literal only with helo_address_literal") {
        check_cases(
            {{"HELO foo.com", "ok"}, {"HELO [192.0.2.1]", "bad_domain"}, {"HELO", "missing_argument"}});
        ParseOptions lenient;
        lenient.helo_address_literal = true;
        check_cases({{"HELO foo.com", "ok"}, {"HELO [192.0.2.1]", "ok"}, {"HELO [1.2.3]", "bad_domain"}},
                    lenient);
    }

    TEST_CASE("a domain label may have 63 octets, not 64") {
        for (std::size_t n : {62u, 63u, 64u}) {
            CAPTURE(n);
            const std::string label(n, 'x');
            const std::string expected = n <= 63 ? "ok" : "bad_domain";
            CHECK(parse_error("EHLO " + label + ".example") == expected);
            CHECK(smtp::is_valid_domain(label) == (n <= 63));
            CHECK(parse_error("RCPT TO:<a@" + label + ".example>") == (n <= 63 ? "ok" : "bad_recipient"));
        }
    }

    TEST_CASE("a domain may have 255 octets, not 256") {
        for (std::size_t n : {254u, 255u, 256u}) {
            CAPTURE(n);
            CHECK(smtp::is_valid_domain(domain_of(n)) == (n <= 255));
            CHECK(parse_error("EHLO " + domain_of(n)) == (n <= 255 ? "ok" : "bad_domain"));
            // In a path the 256-octet path limit comes first; lift it to reach this one.
            Limits wide;
            wide.path = 1000;
            CHECK(parse_error("RCPT TO:<a@" + domain_of(n) + ">", {}, wide) ==
                  (n <= 255 ? "ok" : "path_too_long"));
        }
    }

    TEST_CASE("is_valid_domain follows RFC 5321 sub-domain grammar, with U-labels only when asked") {
        CHECK(smtp::is_valid_domain("example.com"));
        CHECK(smtp::is_valid_domain("a"));
        CHECK(smtp::is_valid_domain("1-2.x"));
        CHECK_FALSE(smtp::is_valid_domain(""));
        CHECK_FALSE(smtp::is_valid_domain("example.com."));
        CHECK_FALSE(smtp::is_valid_domain("-x.com"));
        CHECK_FALSE(smtp::is_valid_domain("x-.com"));
        CHECK_FALSE(smtp::is_valid_domain("x y.com"));
        CHECK_FALSE(smtp::is_valid_domain("[1.2.3.4]"));
        CHECK_FALSE(
            smtp::is_valid_domain("b\xc3\xbc"
                                  "cher.example"));
        CHECK(
            smtp::is_valid_domain("b\xc3\xbc"
                                  "cher.example",
                                  {}, true));
        CHECK(smtp::is_valid_domain("\xe4\xbe\x8b\xe3\x81\x88.jp", {}, true));
        CHECK_FALSE(
            smtp::is_valid_domain("b\xc0\xbc"
                                  "cher.example",
                                  {}, true));  // overlong
        CHECK_FALSE(smtp::is_valid_domain("-\xc3\xbc.example", {}, true));
    }

    // ------------------------------------------------------------ address literals

    TEST_CASE("address literals: IPv4, all four RFC 5321 IPv6 forms, and general literals") {
        const std::vector<std::pair<std::string_view, bool>> literals{
            {"[192.0.2.1]", true},
            {"[0.0.0.0]", true},
            {"[255.255.255.255]", true},
            {"[01.002.3.4]", true},  // Snum = 1*3DIGIT allows leading zeros
            {"[256.0.0.0]", false},
            {"[300.1.1.1]", false},
            {"[1.2.3]", false},
            {"[1.2.3.4.5]", false},
            {"[1.2.3.1234]", false},
            {"[1..2.3]", false},
            {"[]", false},
            {"[192.0.2.1", false},
            {"192.0.2.1]", false},
            {"[IPv6:1:2:3:4:5:6:7:8]", true},           // IPv6-full
            {"[IPv6:2001:DB8:0:0:0:0:0:1]", true},      //
            {"[IPv6:1:2:3:4:5:6:7]", false},            // 7 groups, no "::"
            {"[IPv6:1:2:3:4:5:6:7:8:9]", false},        // 9 groups
            {"[IPv6:12345::1]", false},                 // group of 5 digits
            {"[IPv6:g::1]", false},                     //
            {"[IPv6:::1]", true},                       // IPv6-comp
            {"[IPv6:::]", true},                        //
            {"[IPv6:2001:db8::]", true},                //
            {"[IPv6:1:2:3:4:5:6::]", true},             // 6 groups beside "::"
            {"[IPv6:1:2:3:4:5:6:7::]", false},          // "::" is at least two groups
            {"[IPv6:1::2::3]", false},                  // two "::"
            {"[IPv6:1:::2]", false},                    //
            {"[IPv6::1]", false},                       // a lone leading colon
            {"[IPv6:1:]", false},                       //
            {"[IPv6:]", false},                         //
            {"[ipv6:::1]", true},                       // the tag is case-insensitive
            {"[IPv6:1:2:3:4:5:6:192.0.2.1]", true},     // IPv6v4-full
            {"[IPv6:1:2:3:4:5:192.0.2.1]", false},      //
            {"[IPv6:1:2:3:4:5:6:7:192.0.2.1]", false},  //
            {"[IPv6:::ffff:192.0.2.1]", true},          // IPv6v4-comp
            {"[IPv6:1:2:3:4::192.0.2.1]", true},        // 4 groups beside "::" and IPv4
            {"[IPv6:1:2:3:4:5::192.0.2.1]", false},     // 5
            {"[IPv6:::300.0.2.1]", false},              //
            {"[IPv6:::1.2.3]", false},                  //
            {"[IPv6:1.2.3.4]", false},                  //
            {"[IPv6:::1.2.3.4:1]", false},              // IPv4 only last
            {"[x-tag:some-content]", true},             // General-address-literal
            {"[tag:a]", true},                          //
            {"[x-:abc]", false},                        // Ldh-str ends in let-dig
            {"[tag:]", false},                          // 1*dcontent
            {"[tag:a b]", false},                       //
            {"[tag:a[b]", false},                       //
            {"[t_g:a]", false},                         //
            {"[:abc]", false},                          //
        };
        for (const auto& literal : literals) {  // no structured binding: CAPTURE takes it by lambda
            CAPTURE(literal.first);
            CHECK(smtp::is_valid_address_literal(literal.first) == literal.second);
        }
    }

    TEST_CASE("is_valid_ipv4 and is_valid_ipv6 take the text without brackets or tag") {
        CHECK(smtp::is_valid_ipv4("10.0.0.1"));
        CHECK_FALSE(smtp::is_valid_ipv4("10.0.0.1."));
        CHECK_FALSE(smtp::is_valid_ipv4("10.0.0"));
        CHECK_FALSE(smtp::is_valid_ipv4(""));
        CHECK(smtp::is_valid_ipv6("fe80::1"));
        CHECK(smtp::is_valid_ipv6("::"));
        CHECK(smtp::is_valid_ipv6("1:2:3:4:5:6:7:8"));
        CHECK_FALSE(smtp::is_valid_ipv6("1:2:3:4:5:6:7:8:9"));
        CHECK_FALSE(smtp::is_valid_ipv6(":::"));
        CHECK_FALSE(smtp::is_valid_ipv6(""));
    }

    // ------------------------------------------------------------ MAIL and RCPT paths

    TEST_CASE("MAIL FROM takes a reverse-path and fills the path fields") {
        Command c;
        REQUIRE(smtp::parse_command("MAIL FROM:<Smith@bar.com>", c).ok());  // RFC 5321 Appendix D
        CHECK(c.verb == Verb::mail);
        CHECK(c.argument == "FROM:<Smith@bar.com>");
        CHECK(c.path.local_part == "Smith");
        CHECK(c.path.domain == "bar.com");
        CHECK(c.path.mailbox == "Smith@bar.com");
        CHECK_FALSE(c.path.postmaster);
        CHECK_FALSE(c.path.is_null());
        CHECK(c.parameter_count == 0);
    }

    TEST_CASE("MAIL FROM:<> is the null reverse-path") {
        Command c;
        REQUIRE(smtp::parse_command("MAIL FROM:<>", c).ok());
        CHECK(c.path.is_null());
        CHECK(c.path.mailbox.empty());
        REQUIRE(smtp::parse_command("mail from:<> SIZE=100", c).ok());
        CHECK(c.path.is_null());
        CHECK(c.size == 100u);
    }

    TEST_CASE("paths that break RFC 5321 §4.1.2 are bad_sender for MAIL and bad_recipient for RCPT") {
        const std::vector<std::string_view> bad_paths{
            "<a@b",
            "a@b>",
            "<a@b>>",
            "<a>",
            "<@b>",
            "<a@>",
            "<@>",
            "<.a@b>",
            "<a.@b>",
            "<a..b@c>",
            "<a@b.>",
            "<a@-b>",
            "<a@b..c>",
            "<a b@c>",
            "<a@b c>",
            "<\"a@c>",
            "<\"a\tb\"@c>",
            "<\"a\\\x01\"@c>",
            "<a@[300.1.1.1]>",
            "<a@[1.2.3.4>",
            "<a@b>x",
            "<a@b>\t",
            "<a\"b\"@c>",
            "<a@b>SIZE=1",
            "<a@@b>",
            "<a(b)@c>",
            "<a@b_c>",
        };
        for (std::string_view path : bad_paths) {
            CAPTURE(path);
            CHECK(parse_error("MAIL FROM:" + std::string(path)) == "bad_sender");
            CHECK(parse_error("RCPT TO:" + std::string(path)) == "bad_recipient");
        }
        CHECK(parse_error("RCPT TO:<>") == "bad_recipient");
        CHECK(parse_error("MAIL FROM:<Postmaster>") == "bad_sender");
        CHECK(parse_error("MAIL FROM:") == "bad_sender");
        CHECK(smtp::error_info(Errc::bad_sender).status == smtp::EnhancedStatus{5, 1, 7});
    }

    TEST_CASE("MAIL and RCPT need FROM: and TO:, in any case") {
        check_cases({
            {"MAIL", "missing_argument"},
            {"MAIL ", "missing_argument"},
            {"RCPT", "missing_argument"},
            {"MAIL TO:<a@b>", "syntax_error"},
            {"MAIL FROM <a@b>", "syntax_error"},
            {"MAIL  FROM:<a@b>", "syntax_error"},
            {"RCPT FROM:<a@b>", "syntax_error"},
            {"mail from:<a@b>", "ok"},
            {"Mail From:<a@b>", "ok"},
            {"rcpt to:<a@b>", "ok"},
            {"RCPT To:<a@b>", "ok"},
        });
    }

    TEST_CASE("local parts may be dot-strings or quoted strings with escapes") {
        Command c;
        REQUIRE(smtp::parse_command("RCPT TO:<first.last+tag@example.com>", c).ok());
        CHECK(c.path.local_part == "first.last+tag");
        REQUIRE(smtp::parse_command("RCPT TO:<!#$%&'*+-/=?^_`{|}~@example.com>", c).ok());
        CHECK(c.path.local_part == "!#$%&'*+-/=?^_`{|}~");
        REQUIRE(smtp::parse_command(R"(RCPT TO:<"a\"b"@example.com>)", c).ok());
        CHECK(c.path.local_part == R"("a\"b")");
        CHECK(c.path.mailbox == R"("a\"b"@example.com)");
        CHECK(smtp::unquote_local_part(c.path.local_part) == "a\"b");
        REQUIRE(smtp::parse_command(R"(RCPT TO:<"john smith"@example.com>)", c).ok());
        CHECK(smtp::unquote_local_part(c.path.local_part) == "john smith");
        REQUIRE(smtp::parse_command(R"(RCPT TO:<"a\\b@c>"@example.com>)", c).ok());
        CHECK(c.path.local_part == R"("a\\b@c>")");
        CHECK(smtp::unquote_local_part(c.path.local_part) == R"(a\b@c>)");
        REQUIRE(smtp::parse_command(R"(RCPT TO:<""@example.com>)", c).ok());  // empty, but grammar
        CHECK(c.path.local_part == "\"\"");
        CHECK(smtp::unquote_local_part(c.path.local_part).empty());
        CHECK(smtp::unquote_local_part("plain.dot") == "plain.dot");
    }

    TEST_CASE("a mailbox domain may be an address literal") {
        Command c;
        REQUIRE(smtp::parse_command("RCPT TO:<a@[192.0.2.1]>", c).ok());
        CHECK(c.path.domain == "[192.0.2.1]");
        CHECK(c.path.mailbox == "a@[192.0.2.1]");
        REQUIRE(smtp::parse_command("RCPT TO:<a@[IPv6:::1]> NOTIFY=NEVER", c).ok());
        CHECK(c.path.domain == "[IPv6:::1]");
        CHECK(c.notify == smtp::notify_never);
        CHECK(parse_error("RCPT TO:<a@[IPv6:1:2:3:4:5:6:7:8:9]>") == "bad_recipient");
    }

    TEST_CASE("source routes are accepted and dropped, their domains still checked") {
        Command c;
        // RFC 5321 Appendix C.
        REQUIRE(smtp::parse_command("RCPT TO:<@HOSTA.ARPA,@HOSTB.ARPA:JOE@HOSTC.ARPA>", c).ok());
        CHECK(c.path.mailbox == "JOE@HOSTC.ARPA");
        CHECK(c.path.local_part == "JOE");
        CHECK(c.path.domain == "HOSTC.ARPA");
        REQUIRE(smtp::parse_command("MAIL FROM:<@a.example:user@c.example> SIZE=10", c).ok());
        CHECK(c.path.mailbox == "user@c.example");
        CHECK(c.size == 10u);
        check_cases({
            {"MAIL FROM:<@a,b:user@c>", "bad_sender"},
            {"MAIL FROM:<@a.:user@c>", "bad_sender"},
            {"MAIL FROM:<@:user@c>", "bad_sender"},
            {"MAIL FROM:<@a,@b:>", "bad_sender"},
            {"MAIL FROM:<@a,@b>", "bad_sender"},
            {"MAIL FROM:<@a;user@c>", "bad_sender"},
            {"RCPT TO:<@[1.2.3.4]:u@c>", "bad_recipient"},  // At-domain is a Domain only
            {"RCPT TO:<@a:Postmaster>", "bad_recipient"},
        });
    }

    TEST_CASE("RCPT TO:<Postmaster> needs no domain; <Postmaster@domain> is a normal mailbox") {
        Command c;
        REQUIRE(smtp::parse_command("RCPT TO:<Postmaster>", c).ok());
        CHECK(c.path.postmaster);
        CHECK(c.path.local_part == "Postmaster");
        CHECK(c.path.mailbox == "Postmaster");
        CHECK(c.path.domain.empty());
        CHECK_FALSE(c.path.is_null());
        REQUIRE(smtp::parse_command("RCPT TO:<postMASTER> NOTIFY=FAILURE", c).ok());
        CHECK(c.path.postmaster);
        CHECK(c.path.local_part == "postMASTER");
        CHECK(c.notify == smtp::notify_failure);
        REQUIRE(smtp::parse_command("RCPT TO:<Postmaster@example.com>", c).ok());
        CHECK_FALSE(c.path.postmaster);
        CHECK(c.path.domain == "example.com");
        CHECK(parse_error("RCPT TO:<Postmasterx>") == "bad_recipient");
        CHECK(parse_error("RCPT TO:<Postmaster") == "bad_recipient");
    }

    TEST_CASE("a local part may have 64 octets, not 65") {
        for (std::size_t n : {63u, 64u, 65u}) {
            CAPTURE(n);
            const std::string local(n, 'l');
            const std::string expected = n <= 64 ? "ok" : "path_too_long";
            CHECK(parse_error("MAIL FROM:<" + local + "@example.com>") == expected);
            CHECK(parse_error("RCPT TO:<\"" + std::string(n - 2, 'q') + "\"@example.com>") == expected);
        }
    }

    TEST_CASE("a path may have 256 octets with its brackets, not 257") {
        for (std::size_t n : {255u, 256u, 257u}) {
            CAPTURE(n);
            // "<" + 64 + "@" + domain + ">"
            const std::string path = "<" + std::string(64, 'l') + "@" + domain_of(n - 67) + ">";
            REQUIRE(path.size() == n);
            const std::string expected = n <= 256 ? "ok" : "path_too_long";
            CHECK(parse_error("MAIL FROM:" + path + " SIZE=1") == expected);
            CHECK(parse_error("RCPT TO:" + path) == expected);
            // The source route counts too (RFC 5321 §4.5.3.1.3).
            const std::string routed = "<@r.example:" + std::string(64, 'l') + "@" + domain_of(n - 78) + ">";
            REQUIRE(routed.size() == n);
            CHECK(parse_error("RCPT TO:" + routed) == expected);
        }
        CHECK(smtp::error_info(Errc::path_too_long).reply_code == 501);
    }

    TEST_CASE("space_after_colon accepts MAIL FROM: <a@b> only when set") {
        CHECK(parse_error("MAIL FROM: <a@b>") == "bad_sender");
        CHECK(parse_error("RCPT TO: <a@b>") == "bad_recipient");
        ParseOptions lenient;
        lenient.space_after_colon = true;
        Command c;
        REQUIRE(smtp::parse_command("MAIL FROM: <a@b> SIZE=5", c, lenient).ok());
        CHECK(c.path.mailbox == "a@b");
        CHECK(c.size == 5u);
        CHECK(parse_error("RCPT TO: <a@b>", lenient) == "ok");
        CHECK(parse_error("MAIL FROM:<a@b>", lenient) == "ok");
        CHECK(parse_error("MAIL FROM: ", lenient) == "bad_sender");
    }

    TEST_CASE("missing_brackets accepts a bare mailbox without parameters only when set") {
        CHECK(parse_error("MAIL FROM:a@b") == "bad_sender");
        CHECK(parse_error("RCPT TO:a@b") == "bad_recipient");
        ParseOptions lenient;
        lenient.missing_brackets = true;
        Command c;
        REQUIRE(smtp::parse_command("MAIL FROM:a@b.example", c, lenient).ok());
        CHECK(c.path.mailbox == "a@b.example");
        CHECK(c.path.domain == "b.example");
        REQUIRE(smtp::parse_command("RCPT TO:postmaster", c, lenient).ok());
        CHECK(c.path.postmaster);
        check_cases(
            {
                {"MAIL FROM:a@b SIZE=1", "bad_sender"},
                {"MAIL FROM:a@b>", "bad_sender"},
                {"MAIL FROM:", "bad_sender"},
                {"RCPT TO:a", "bad_recipient"},
                {"MAIL FROM:<a@b> SIZE=1", "ok"},
            },
            lenient);
        // The path limit counts the brackets that are not there: 254 octets + 2.
        for (std::size_t n : {253u, 254u, 255u}) {
            const std::string mailbox = std::string(64, 'l') + "@" + domain_of(n - 65);
            CHECK(parse_error("RCPT TO:" + mailbox, lenient) == (n <= 254 ? "ok" : "path_too_long"));
        }
    }

    // ------------------------------------------------------------ ESMTP parameters

    TEST_CASE("known MAIL parameters are stored as written and typed") {
        Command c;
        REQUIRE(smtp::parse_command("MAIL FROM:<ned@thor.innosoft.com> SIZE=500000", c).ok());  // RFC 1870
        CHECK(c.size == 500000u);
        REQUIRE(smtp::parse_command("MAIL FROM:<Alice@Pure.example.com> RET=HDRS ENVID=QQ314159", c)
                    .ok());  // RFC 3461
        CHECK(c.ret == smtp::Ret::hdrs);
        CHECK(c.envid == "QQ314159");
        REQUIRE(c.parameter_count == 2);
        CHECK(c.parameters[0].keyword == "RET");
        CHECK(c.parameters[0].value == "HDRS");
        CHECK(c.parameters[0].has_value);
        CHECK(c.parameters[1].keyword == "ENVID");
        REQUIRE(smtp::parse_command("MAIL FROM:<a@b> size=1 body=7bit smtputf8 ret=full auth=<>", c,
                                    utf8_options())
                    .ok());
        CHECK(c.size == 1u);
        CHECK(c.body == smtp::Body::seven_bit);
        CHECK(c.smtputf8);
        CHECK(c.ret == smtp::Ret::full);
        REQUIRE(c.parameter_count == 5);
        CHECK(c.parameters[2].keyword == "smtputf8");
        CHECK_FALSE(c.parameters[2].has_value);
        CHECK(c.parameters[2].value.empty());
        CHECK(c.parameters[4].value == "<>");
        REQUIRE(smtp::parse_command("MAIL FROM:<a@b> BODY=8BITMIME AUTH=e+3Dmc2@example.com", c).ok());
        CHECK(c.body == smtp::Body::eight_bit_mime);
    }

    TEST_CASE("SIZE takes 1 to 20 digits that fit in 64 bits") {
        Command c;
        REQUIRE(smtp::parse_command("MAIL FROM:<a@b> SIZE=18446744073709551615", c).ok());
        CHECK(c.size == 18446744073709551615u);
        REQUIRE(smtp::parse_command("MAIL FROM:<a@b> SIZE=0", c).ok());
        CHECK(c.size == 0u);
        check_cases({
            {"MAIL FROM:<a@b> SIZE=18446744073709551616", "parameter_value"},
            {"MAIL FROM:<a@b> SIZE=000000000000000000001", "parameter_value"},
            {"MAIL FROM:<a@b> SIZE=00000000000000000001", "ok"},
            {"MAIL FROM:<a@b> SIZE=abc", "parameter_value"},
            {"MAIL FROM:<a@b> SIZE=-1", "parameter_value"},
            {"MAIL FROM:<a@b> SIZE", "parameter_value"},
            {"MAIL FROM:<a@b> SIZE=", "parameter_syntax"},
        });
    }

    TEST_CASE("bad values of known MAIL parameters are parameter_value naming the keyword") {
        const std::vector<std::pair<std::string_view, std::string_view>> cases{
            {"MAIL FROM:<a@b> BODY=BINARYMIME", "BODY"},
            {"MAIL FROM:<a@b> body", "body"},
            {"MAIL FROM:<a@b> RET=ALL", "RET"},
            {"MAIL FROM:<a@b> ENVID=a+2bb", "ENVID"},  // hexchar is upper case
            {"MAIL FROM:<a@b> ENVID=a+2", "ENVID"},
            {"MAIL FROM:<a@b> ENVID", "ENVID"},
            {"MAIL FROM:<a@b> AUTH=a+", "AUTH"},
        };
        for (const auto& test : cases) {
            CAPTURE(test.first);
            Command c;
            const auto r = smtp::parse_command(test.first, c);
            CHECK(name(r.error) == "parameter_value");
            CHECK(r.detail == test.second);
        }
    }

    TEST_CASE("SMTPUTF8 is a parameter only when the server offered it, and it has no value") {
        CHECK(parse_error("MAIL FROM:<a@b> SMTPUTF8") == "parameter_unsupported");
        CHECK(parse_error("MAIL FROM:<a@b> SMTPUTF8", utf8_options()) == "ok");
        Command c;
        const auto r = smtp::parse_command("MAIL FROM:<a@b> SMTPUTF8=yes", c, utf8_options());
        CHECK(r.error == Errc::parameter_value);
        CHECK(r.detail == "SMTPUTF8");
        CHECK(parse_error("RCPT TO:<a@b> SMTPUTF8", utf8_options()) == "parameter_unsupported");
    }

    TEST_CASE("ENVID may have 100 characters, not 101") {
        for (std::size_t n : {99u, 100u, 101u}) {
            CAPTURE(n);
            Command c;
            const std::string envid(n, 'e');
            const std::string line = "MAIL FROM:<a@b> ENVID=" + envid;
            const auto r = smtp::parse_command(line, c);
            CHECK(name(r.error) == (n <= 100 ? "ok" : "parameter_value"));
            if (r.ok()) CHECK(c.envid.size() == n);
        }
    }

    TEST_CASE("MAIL with an unknown parameter gets 555 5.5.4 naming it") {
        Command c;
        const auto r = smtp::parse_command("MAIL FROM:<a@b> SIZE=1 X-FOO=bar", c);
        CHECK(r.error == Errc::parameter_unsupported);
        CHECK(r.detail == "X-FOO");
        CHECK(smtp::error_info(r.error).reply_code == 555);
        CHECK(smtp::error_info(r.error).status == smtp::EnhancedStatus{5, 5, 4});
        CHECK(c.verb == Verb::mail);
        CHECK(c.parameter_count == 0);  // unknown keywords never get into `parameters`
        const auto bare = smtp::parse_command("MAIL FROM:<a@b> foo", c);
        CHECK(bare.error == Errc::parameter_unsupported);
        CHECK(bare.detail == "foo");
    }

    TEST_CASE("RCPT with an unknown parameter gets 555 5.5.4") {
        Command c;
        const auto r = smtp::parse_command("RCPT TO:<a@b> SIZE=1", c);  // SIZE is MAIL's
        CHECK(r.error == Errc::parameter_unsupported);
        CHECK(r.detail == "SIZE");
        CHECK(c.verb == Verb::rcpt);
        CHECK(parse_error("MAIL FROM:<a@b> NOTIFY=NEVER") == "parameter_unsupported");
    }

    TEST_CASE("the same keyword twice is parameter_duplicate, in any case") {
        Command c;
        auto r = smtp::parse_command("MAIL FROM:<a@b> SIZE=1 SIZE=2", c);
        CHECK(r.error == Errc::parameter_duplicate);
        CHECK(r.detail == "SIZE");
        r = smtp::parse_command("RCPT TO:<a@b> notify=NEVER NOTIFY=NEVER", c);
        CHECK(r.error == Errc::parameter_duplicate);
        CHECK(r.detail == "NOTIFY");
        CHECK(parse_error("MAIL FROM:<a@b> SMTPUTF8 smtputf8", utf8_options()) == "parameter_duplicate");
    }

    TEST_CASE("parameter grammar errors are parameter_syntax") {
        check_cases({
            {"MAIL FROM:<a@b> ", "parameter_syntax"},
            {"MAIL FROM:<a@b>  SIZE=1", "parameter_syntax"},
            {"MAIL FROM:<a@b> SIZE=1 ", "parameter_syntax"},
            {"MAIL FROM:<a@b> SIZE=1=2", "parameter_syntax"},
            {"MAIL FROM:<a@b> SIZE==1", "parameter_syntax"},
            {"MAIL FROM:<a@b> -SIZE=1", "parameter_syntax"},
            {"MAIL FROM:<a@b> SI_ZE=1", "parameter_syntax"},
            {"MAIL FROM:<a@b> =1", "parameter_syntax"},
            {"MAIL FROM:<a@b> SIZE=1\t", "parameter_syntax"},
            {"MAIL FROM:<a@b> ENVID=\x7f", "parameter_syntax"},
            {"MAIL FROM:<a@b> ENVID=caf\xc3\xa9", "parameter_syntax"},  // UTF-8 needs smtputf8
            {"MAIL FROM:<a@b> 1SIZE=1 FOO", "parameter_unsupported"},   // grammar fine
        });
    }

    TEST_CASE("at most 16 parameters") {
        std::string line = "MAIL FROM:<a@b>";
        for (int i = 0; i < 16; ++i) line += " X" + std::to_string(i);
        CHECK(parse_error(line) == "parameter_unsupported");  // 16: grammar fine, then unknown
        CHECK(parse_error(line + " X16") == "parameter_syntax");
    }

    TEST_CASE("NOTIFY is NEVER or a list of SUCCESS, FAILURE, DELAY without repeats") {
        Command c;
        // RFC 3461 §6 example.
        REQUIRE(
            smtp::parse_command(
                "RCPT TO:<Dana@Ivory.example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Dana@Ivory.example.com",
                c)
                .ok());
        CHECK(c.notify == (smtp::notify_success | smtp::notify_failure));
        CHECK(c.orcpt_type == "rfc822");
        CHECK(c.orcpt == "Dana@Ivory.example.com");
        REQUIRE(c.parameter_count == 2);
        CHECK(c.parameters[1].keyword == "ORCPT");
        REQUIRE(smtp::parse_command("RCPT TO:<a@b> NOTIFY=delay,Success,FAILURE", c).ok());
        CHECK(c.notify == (smtp::notify_success | smtp::notify_failure | smtp::notify_delay));
        REQUIRE(smtp::parse_command("RCPT TO:<a@b> NOTIFY=NEVER", c).ok());
        CHECK(c.notify == smtp::notify_never);
        check_cases({
            {"RCPT TO:<a@b> NOTIFY=NEVER,SUCCESS", "parameter_value"},
            {"RCPT TO:<a@b> NOTIFY=SUCCESS,NEVER", "parameter_value"},
            {"RCPT TO:<a@b> NOTIFY=SUCCESS,SUCCESS", "parameter_value"},
            {"RCPT TO:<a@b> NOTIFY=SUCCESS,", "parameter_value"},
            {"RCPT TO:<a@b> NOTIFY=,SUCCESS", "parameter_value"},
            {"RCPT TO:<a@b> NOTIFY=ALWAYS", "parameter_value"},
            {"RCPT TO:<a@b> NOTIFY", "parameter_value"},
            {"RCPT TO:<a@b> NOTIFY=", "parameter_syntax"},
        });
    }

    TEST_CASE("ORCPT is addr-type;xtext of at most 500 characters") {
        Command c;
        REQUIRE(smtp::parse_command("RCPT TO:<a@b> ORCPT=rfc822;a+2Bb@c.example", c).ok());
        CHECK(c.orcpt == "a+2Bb@c.example");
        CHECK(smtp::decode_xtext(c.orcpt) == "a+b@c.example");
        check_cases({
            {"RCPT TO:<a@b> ORCPT=;a@b", "parameter_value"},
            {"RCPT TO:<a@b> ORCPT=rfc822", "parameter_value"},
            {"RCPT TO:<a@b> ORCPT=rfc822;a+zz", "parameter_value"},
            {"RCPT TO:<a@b> ORCPT=rf(c;a", "parameter_value"},
        });
        for (std::size_t n : {499u, 500u, 501u}) {
            CAPTURE(n);
            const std::string value = "rfc822;" + std::string(n - 7, 'x');
            CHECK(parse_error("RCPT TO:<a@b> ORCPT=" + value) == (n <= 500 ? "ok" : "parameter_value"));
        }
    }

    // ------------------------------------------------------------ UTF-8 (RFC 6531)

    TEST_CASE("a UTF-8 address needs smtputf8, and for MAIL the SMTPUTF8 parameter too") {
        const std::string mail =
            "MAIL FROM:<j\xc3\xbcrgen@b\xc3\xbc"
            "cher.example>";
        const std::string rcpt = "RCPT TO:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe3\x81\x88.jp>";
        CHECK(parse_error(mail) == "non_ascii_address");
        CHECK(parse_error(mail + " SMTPUTF8") == "non_ascii_address");
        CHECK(parse_error(rcpt) == "non_ascii_address");
        CHECK(parse_error(mail, utf8_options()) == "non_ascii_address");
        CHECK(parse_error(mail + " SMTPUTF8", utf8_options()) == "ok");
        CHECK(parse_error(rcpt, utf8_options()) == "ok");
        CHECK(parse_error("RCPT TO:<\"j\xc3\xbcrgen smith\"@example.com>", utf8_options()) == "ok");
        CHECK(parse_error("RCPT TO:<\xf0\x9f\x98\x80@example.com>", utf8_options()) == "ok");  // 4 octets
        CHECK(smtp::error_info(Errc::non_ascii_address).reply_code == 553);
        Command c;
        const std::string line = mail + " SMTPUTF8 BODY=8BITMIME";  // outlives the views into it
        REQUIRE(smtp::parse_command(line, c, utf8_options()).ok());
        CHECK(c.path.local_part == "j\xc3\xbcrgen");
        CHECK(c.smtputf8);
    }

    TEST_CASE("ill-formed UTF-8 is bad_utf8 where UTF-8 is allowed, non_ascii_address where not") {
        const std::vector<std::string_view> ill_formed{
            "\xc0\xaf",          // overlong "/"
            "\xe0\x80\xaf",      // overlong, 3 octets
            "\xf0\x80\x80\xaf",  // overlong, 4 octets
            "\xed\xa0\x80",      // surrogate U+D800
            "\xf4\x90\x80\x80",  // U+110000
            "\xf5\x80\x80\x80",  //
            "\xc3",              // truncated
            "\x80",              // stray continuation
            "\xff",              //
        };
        for (std::string_view bytes : ill_formed) {
            CAPTURE(bytes);
            const std::string line = "RCPT TO:<a" + std::string(bytes) + "@example.com>";
            CHECK(parse_error(line, utf8_options()) == "bad_utf8");
            CHECK(parse_error(line) == "non_ascii_address");
            CHECK_FALSE(smtp::is_valid_utf8(bytes));
        }
        CHECK(parse_error("RCPT TO:<a@b> ORCPT=utf-8;caf\xc3\xa9", utf8_options()) == "ok");
        CHECK(parse_error("RCPT TO:<a@b> ORCPT=utf-8;caf\xc3", utf8_options()) == "bad_utf8");
        CHECK(parse_error("RCPT TO:<a@b> ORCPT=utf-8;caf\xc3\xa9") == "parameter_syntax");
    }

    TEST_CASE("is_valid_utf8 accepts every well-formed sequence length") {
        CHECK(smtp::is_valid_utf8(""));
        CHECK(smtp::is_valid_utf8("ascii"));
        CHECK(smtp::is_valid_utf8("\xc2\x80"));          // U+0080
        CHECK(smtp::is_valid_utf8("\xdf\xbf"));          // U+07FF
        CHECK(smtp::is_valid_utf8("\xe0\xa0\x80"));      // U+0800
        CHECK(smtp::is_valid_utf8("\xed\x9f\xbf"));      // U+D7FF
        CHECK(smtp::is_valid_utf8("\xee\x80\x80"));      // U+E000
        CHECK(smtp::is_valid_utf8("\xf0\x90\x80\x80"));  // U+10000
        CHECK(smtp::is_valid_utf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
        CHECK_FALSE(smtp::is_valid_utf8("\xc1\xbf"));
        CHECK_FALSE(smtp::is_valid_utf8("\xe2\x82"));
        CHECK_FALSE(smtp::is_valid_utf8("\xe2\x28\xa1"));
    }

    // ------------------------------------------------------------ BDAT, AUTH

    TEST_CASE("BDAT takes a chunk size and an optional LAST") {
        Command c;
        REQUIRE(smtp::parse_command("BDAT 1000", c).ok());
        CHECK(c.verb == Verb::bdat);
        CHECK(c.chunk_size == 1000u);
        CHECK_FALSE(c.last);
        REQUIRE(smtp::parse_command("bdat 0 last", c).ok());
        CHECK(c.chunk_size == 0u);
        CHECK(c.last);
        REQUIRE(smtp::parse_command("BDAT 18446744073709551615 LAST", c).ok());
        CHECK(c.chunk_size == 18446744073709551615u);
        check_cases({
            {"BDAT", "missing_argument"},
            {"BDAT ", "missing_argument"},
            {"BDAT x", "syntax_error"},
            {"BDAT -1", "syntax_error"},
            {"BDAT 10 ", "syntax_error"},
            {"BDAT 10  LAST", "syntax_error"},
            {"BDAT 10 LAST x", "syntax_error"},
            {"BDAT 10 FIRST", "syntax_error"},
            {"BDAT 18446744073709551616", "syntax_error"},
        });
    }

    TEST_CASE("AUTH takes a mechanism and an optional base64 initial response") {
        Command c;
        REQUIRE(smtp::parse_command("AUTH PLAIN", c).ok());
        CHECK(c.mechanism == "PLAIN");
        CHECK(c.initial_response.empty());
        REQUIRE(smtp::parse_command("AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=", c).ok());
        CHECK(c.initial_response == "dGVzdAB0ZXN0AHRlc3Q=");
        REQUIRE(smtp::parse_command("AUTH EXTERNAL =", c).ok());
        CHECK(c.initial_response == "=");
        check_cases({
            {"AUTH SCRAM-SHA-256", "ok"},
            {"AUTH ABCDEFGHIJKLMNOPQRST", "ok"},  // 20
            {"AUTH PLAIN AAA=", "ok"},
            {"AUTH PLAIN AA==", "ok"},
            {"AUTH", "missing_argument"},
            {"AUTH ABCDEFGHIJKLMNOPQRSTU", "syntax_error"},  // 21
            {"AUTH PL@IN", "syntax_error"},
            {"AUTH PLAIN abc", "syntax_error"},
            {"AUTH PLAIN a===", "syntax_error"},
            {"AUTH PLAIN ab=c", "syntax_error"},
            {"AUTH PLAIN dGVz dA==", "syntax_error"},
            {"AUTH PLAIN ", "syntax_error"},
        });
    }

    // ------------------------------------------------------------ Command reuse and views

    TEST_CASE("parsing into a used Command leaves nothing of the previous line") {
        Command c;
        REQUIRE(smtp::parse_command("MAIL FROM:<a@b> SIZE=5 BODY=8BITMIME RET=FULL ENVID=x SMTPUTF8", c,
                                    utf8_options())
                    .ok());
        REQUIRE(smtp::parse_command("RCPT TO:<c@d>", c).ok());
        CHECK(c.verb == Verb::rcpt);
        CHECK_FALSE(c.size.has_value());
        CHECK(c.body == smtp::Body::unspecified);
        CHECK(c.ret == smtp::Ret::unspecified);
        CHECK_FALSE(c.smtputf8);
        CHECK(c.envid.empty());
        CHECK(c.parameter_count == 0);
        CHECK(c.parameters[0].keyword.empty());
        REQUIRE(smtp::parse_command("BDAT 5 LAST", c).ok());
        CHECK(c.path.mailbox.empty());
        REQUIRE(smtp::parse_command("QUIT", c).ok());
        CHECK_FALSE(c.last);
        CHECK(c.chunk_size == 0u);
        CHECK(c.argument.empty());
    }

    TEST_CASE("every view in a parsed Command points into the line") {
        const std::vector<std::string> lines{
            "MAIL FROM:<@a:u@b> SIZE=1 BODY=7BIT ENVID=e RET=FULL",
            "RCPT TO:<\"q\"@[1.2.3.4]> NOTIFY=DELAY ORCPT=rfc822;x",
            "AUTH PLAIN AA==",
            "EHLO x.example",
            "HELP me",
        };
        for (const std::string& line : lines) {
            CAPTURE(line);
            Command c;
            REQUIRE(smtp::parse_command(line, c).ok());
            for (std::string_view v :
                 {c.verb_text, c.argument, c.domain, c.path.local_part, c.path.domain, c.path.mailbox,
                  c.envid, c.orcpt_type, c.orcpt, c.mechanism, c.initial_response, c.text})
                CHECK(inside(v, line));
            for (std::size_t i = 0; i < c.parameter_count; ++i) {
                CHECK(inside(c.parameters[i].keyword, line));
                CHECK(inside(c.parameters[i].value, line));
            }
        }
    }

    TEST_CASE("an error detail is at most 64 octets, so the reply fits a reply line") {
        Command c;
        const std::string keyword(300, 'K');
        const std::string line = "MAIL FROM:<a@b> " + keyword + "=1";
        const auto r = smtp::parse_command(line, c);
        CHECK(r.error == Errc::parameter_unsupported);
        CHECK(r.detail == std::string_view(line).substr(16, 64));
    }

    // ------------------------------------------------------------ xtext

    TEST_CASE("xtext decodes upper-case hexchars and refuses anything else") {
        CHECK(smtp::decode_xtext("") == "");
        CHECK(smtp::decode_xtext("QQ314159") == "QQ314159");
        CHECK(smtp::decode_xtext("a+2Bb+3Dc") == "a+b=c");
        CHECK(smtp::decode_xtext("+00+FF") == std::string("\0\xff", 2));
        CHECK_FALSE(smtp::decode_xtext("a+2b").has_value());
        CHECK_FALSE(smtp::decode_xtext("a+2").has_value());
        CHECK_FALSE(smtp::decode_xtext("a+").has_value());
        CHECK_FALSE(smtp::decode_xtext("a=b").has_value());
        CHECK_FALSE(smtp::decode_xtext("a b").has_value());
        CHECK_FALSE(smtp::decode_xtext("caf\xc3\xa9").has_value());
    }

    TEST_CASE("xtext encodes +, =, space, controls and non-ASCII, and round-trips") {
        CHECK(smtp::encode_xtext("a+b=c d") == "a+2Bb+3Dc+20d");
        CHECK(smtp::encode_xtext(std::string("\0\x7f\xc3\xa9", 4)) == "+00+7F+C3+A9");
        CHECK(smtp::encode_xtext("plain!~") == "plain!~");
        std::string all;
        for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
        CHECK(smtp::decode_xtext(smtp::encode_xtext(all)) == all);
    }
}
