// Tests of apps/smtpd/policy.hpp: recipient routing, relay control and the refusal
// of relay tricks. Every path comes from a real RCPT line through smtp::parse_command,
// so what is tested is what the worker will see (source routes already dropped).
#include "policy.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

using smtp::Command;
using smtp::DeliveryReply;
using smtp::smtpd::Policy;
using smtp::smtpd::RecipientVerdict;
using smtp::smtpd::Resolved;
using smtp::smtpd::Route;

namespace {

// Settings as resolve() leaves them: domains and users lower-cased.
Resolved make_resolved(std::vector<std::string> local_user = {}) {
    Resolved r;
    r.hostname = "mx.example.org";
    r.local_domain = {"example.org", "mx.example.org", "[127.0.0.1]", "[ipv6:::1]"};
    r.local_user = std::move(local_user);
    auto nets = smtp::parse_network_list("127.0.0.0/8, ::1/128, 192.0.2.0/24");
    REQUIRE(nets.ok());
    r.relay_net = *nets.value;
    return r;
}

// One parsed RCPT command; the Command's views point into line_, so both live here.
class Rcpt {
public:
    explicit Rcpt(std::string_view address, bool smtputf8 = false)
        : line_("RCPT TO:" + std::string(address)) {
        smtp::ParseOptions options;
        options.smtputf8 = smtputf8;
        const auto result = smtp::parse_command(line_, command_, options);
        INFO("line: ", line_);
        REQUIRE(result.ok());
    }
    Rcpt(const Rcpt&) = delete;
    Rcpt& operator=(const Rcpt&) = delete;
    const smtp::Path& path() const { return command_.path; }

private:
    std::string line_;
    Command command_;
};

RecipientVerdict classify(const Policy& p, std::string_view address, bool may_relay) {
    const Rcpt rcpt(address);
    return p.classify(rcpt.path(), may_relay);
}

void check_refused(const RecipientVerdict& v, const DeliveryReply& expected) {
    CHECK_FALSE(v.accepted);
    CHECK(v.reply.code == expected.code);
    CHECK(v.reply.status == expected.status);
    CHECK(v.reply.text == expected.text);
}

void check_local(const RecipientVerdict& v, std::string_view mailbox) {
    CHECK(v.accepted);
    CHECK(v.route == Route::local);
    CHECK(v.mailbox == mailbox);
}

void check_remote(const RecipientVerdict& v) {
    CHECK(v.accepted);
    CHECK(v.route == Route::remote);
    CHECK(v.mailbox.empty());
}

smtp::IpAddress ip(std::string_view text) {
    auto parsed = smtp::parse_ip_address(text);
    REQUIRE(parsed.ok());
    return *parsed.value;
}

}  // namespace

TEST_SUITE("policy") {
    TEST_CASE("a recipient in a local domain goes to its lower-cased mailbox, whoever the client") {
        const Resolved r = make_resolved();
        const Policy p(r);
        for (bool relay : {false, true}) {
            check_local(classify(p, "<Alice@example.org>", relay), "alice");
            check_local(classify(p, "<bob@mx.example.org>", relay), "bob");
        }
    }

    // The parser refuses a trailing dot in an RCPT domain (RFC 5321 §4.1.2 Domain);
    // is_local_domain() ignores one anyway, for names that come from elsewhere.
    TEST_CASE("local domains match in any ASCII case and with one trailing dot") {
        const Resolved r = make_resolved();
        const Policy p(r);
        CHECK(p.is_local_domain("example.org"));
        CHECK(p.is_local_domain("EXAMPLE.Org"));
        CHECK(p.is_local_domain("Example.ORG."));
        CHECK(p.is_local_domain("MX.example.org."));
        CHECK_FALSE(p.is_local_domain("example.org.."));
        CHECK_FALSE(p.is_local_domain("sub.example.org"));
        CHECK_FALSE(p.is_local_domain("example.or"));
        CHECK_FALSE(p.is_local_domain("xexample.org"));
        CHECK_FALSE(p.is_local_domain(""));
        CHECK_FALSE(p.is_local_domain("."));
        check_local(classify(p, "<carol@EXAMPLE.ORG>", false), "carol");
        check_local(classify(p, "<carol@Mx.Example.Org>", false), "carol");
    }

    TEST_CASE("a configured domain with a trailing dot matches the name without it") {
        Resolved r = make_resolved();
        r.local_domain = {"other.example."};
        const Policy p(r);
        CHECK(p.is_local_domain("other.example"));
        CHECK(p.is_local_domain("OTHER.example."));
        check_local(classify(p, "<dave@other.example>", false), "dave");
    }

    TEST_CASE("address literals are local only when listed as written, in any case") {
        const Resolved r = make_resolved();
        const Policy p(r);
        CHECK(p.is_local_domain("[127.0.0.1]"));
        CHECK(p.is_local_domain("[IPv6:::1]"));
        CHECK(p.is_local_domain("[ipv6:::1]"));
        CHECK_FALSE(p.is_local_domain("[127.0.0.2]"));
        CHECK_FALSE(p.is_local_domain("127.0.0.1"));
        // No normalisation: another spelling of ::1 is not listed.
        CHECK_FALSE(p.is_local_domain("[IPv6:0::1]"));
        check_local(classify(p, "<alice@[127.0.0.1]>", false), "alice");
        check_local(classify(p, "<alice@[IPv6:::1]>", false), "alice");
        check_refused(classify(p, "<alice@[127.0.0.2]>", false), smtp::smtpd::relay_denied_reply);
        check_remote(classify(p, "<alice@[127.0.0.2]>", true));
        check_refused(classify(p, "<alice@[IPv6:0::1]>", false), smtp::smtpd::relay_denied_reply);
    }

    TEST_CASE("a remote recipient is accepted only from a client that may relay, with 554 5.7.1 otherwise") {
        const Resolved r = make_resolved();
        const Policy p(r);
        check_remote(classify(p, "<someone@remote.example>", true));
        const auto v = classify(p, "<someone@remote.example>", false);
        check_refused(v, smtp::smtpd::relay_denied_reply);
        CHECK(v.reply.code == 554);
        CHECK(v.reply.status == smtp::EnhancedStatus{5, 7, 1});
        CHECK(v.reply.text == "Relay access denied");
        // A subdomain of a local domain is not local.
        check_refused(classify(p, "<someone@sub.example.org>", false), smtp::smtpd::relay_denied_reply);
    }

    TEST_CASE("relay tricks in a local part are 554 5.7.1 for outsiders and 550 5.1.3 for relay clients") {
        const Resolved r = make_resolved();
        const Policy p(r);
        const std::vector<std::string> tricks = {
            R"(<"user@remote.example"@example.org>)",  // quoted '@'
            "<user%remote.example@example.org>",       // percent hack
            "<remote.example!user@example.org>",       // bang path
            R"(<"user%remote.example"@example.org>)",  // quoting hides nothing
            R"(<"remote.example!user"@example.org>)",
            R"(<"user\@remote.example"@example.org>)",  // quoted-pair '@'
            "<user%remote.example@EXAMPLE.ORG>",       "<user%remote.example@[127.0.0.1]>",
            "<user%remote.example@mx.example.org>",
        };
        for (const auto& t : tricks) {
            INFO("rcpt: ", t);
            check_refused(classify(p, t, false), smtp::smtpd::relay_denied_reply);
            check_refused(classify(p, t, true), smtp::bad_mailbox_reply);
        }
    }

    TEST_CASE("a source route is dropped by the parser and the final mailbox decides") {
        const Resolved r = make_resolved();
        const Policy p(r);
        // Through us to a remote mailbox: relaying, whatever the route says.
        {
            const Rcpt rcpt("<@example.org:user@remote.example>");
            CHECK(rcpt.path().domain == "remote.example");
            check_refused(p.classify(rcpt.path(), false), smtp::smtpd::relay_denied_reply);
            check_remote(p.classify(rcpt.path(), true));
        }
        {
            const Rcpt rcpt("<@example.org,@mx.example.org:user@remote.example>");
            check_refused(p.classify(rcpt.path(), false), smtp::smtpd::relay_denied_reply);
        }
        // Through a remote host to us: a local mailbox.
        check_local(classify(p, "<@remote.example:Alice@example.org>", false), "alice");
    }

    TEST_CASE("a remote local part is the remote host's business, tricks included") {
        const Resolved r = make_resolved();
        const Policy p(r);
        check_remote(classify(p, "<user%third.example@remote.example>", true));
        check_remote(classify(p, "<third.example!user@remote.example>", true));
        check_remote(classify(p, R"(<"user@third.example"@remote.example>)", true));
        check_remote(classify(p, R"(<"../x"@remote.example>)", true));
        check_refused(classify(p, "<user%third.example@remote.example>", false),
                      smtp::smtpd::relay_denied_reply);
    }

    TEST_CASE("Postmaster is the local mailbox postmaster for every client, always known") {
        const Resolved r = make_resolved({"alice"});
        const Policy p(r);
        for (bool relay : {false, true}) {
            check_local(classify(p, "<Postmaster>", relay), "postmaster");
            check_local(classify(p, "<POSTMASTER>", relay), "postmaster");
            check_local(classify(p, "<postmaster@example.org>", relay), "postmaster");
            check_local(classify(p, "<PostMaster@[127.0.0.1]>", relay), "postmaster");
        }
    }

    TEST_CASE("unsafe local parts of a local domain get 550 5.1.3") {
        const Resolved r = make_resolved();
        const Policy p(r);
        const std::vector<std::string> unsafe = {
            R"(<"../x"@example.org>)", R"(<".hidden"@example.org>)", "<a/b@example.org>",
            R"(<".."@example.org>)",   R"(<"a..b"@example.org>)",    R"(<"."@example.org>)",
            R"(<"a/b"@example.org>)",
        };
        for (const auto& u : unsafe) {
            INFO("rcpt: ", u);
            for (bool relay : {false, true}) check_refused(classify(p, u, relay), smtp::bad_mailbox_reply);
        }
        // 64 octets, the longest local part the parser lets through (RFC 5321
        // §4.5.3.1.1), is still a mailbox.
        const std::string long_part(64, 'a');
        check_local(classify(p, "<" + long_part + "@example.org>", false), long_part);
    }

    TEST_CASE("quoting is removed before the mailbox name is made") {
        const Resolved r = make_resolved();
        const Policy p(r);
        check_local(classify(p, R"(<"Alice"@example.org>)", false), "alice");
        check_local(classify(p, R"(<"first last"@example.org>)", false), "first last");
    }

    TEST_CASE("a UTF-8 local part is its own mailbox, only ASCII lower-cased") {
        const Resolved r = make_resolved();
        const Policy p(r);
        const Rcpt rcpt("<Ünï.X@example.org>", true);
        check_local(p.classify(rcpt.path(), false), "Ünï.x");
    }

    TEST_CASE("with local_user set, other mailboxes get 550 5.1.1") {
        const Resolved r = make_resolved({"alice", "bob"});
        const Policy p(r);
        check_local(classify(p, "<Alice@example.org>", false), "alice");
        check_local(classify(p, "<bob@EXAMPLE.org>", false), "bob");
        const auto v = classify(p, "<carol@example.org>", false);
        check_refused(v, smtp::unknown_mailbox_reply);
        CHECK(v.reply.code == 550);
        CHECK(v.reply.status == smtp::EnhancedStatus{5, 1, 1});
        check_refused(classify(p, "<carol@example.org>", true), smtp::unknown_mailbox_reply);
        // Syntax comes first: an unsafe name is 5.1.3 even though it is no user.
        check_refused(classify(p, R"(<"../alice"@example.org>)", false), smtp::bad_mailbox_reply);
        // The list does not restrict remote recipients.
        check_remote(classify(p, "<carol@remote.example>", true));
    }

    TEST_CASE("clients in the relay networks may relay, over IPv4, IPv6 and IPv4-mapped IPv6") {
        const Resolved r = make_resolved();
        const Policy p(r);
        CHECK(p.may_relay(ip("127.0.0.1")));
        CHECK(p.may_relay(ip("127.255.255.254")));
        CHECK(p.may_relay(ip("192.0.2.0")));
        CHECK(p.may_relay(ip("192.0.2.255")));
        CHECK_FALSE(p.may_relay(ip("192.0.3.0")));
        CHECK_FALSE(p.may_relay(ip("198.51.100.1")));
        CHECK_FALSE(p.may_relay(ip("128.0.0.1")));
        CHECK(p.may_relay(ip("::1")));
        CHECK_FALSE(p.may_relay(ip("::2")));
        CHECK_FALSE(p.may_relay(ip("2001:db8::1")));
        // A dual-stack socket reports IPv4 clients this way.
        CHECK(p.may_relay(ip("::ffff:127.0.0.1")));
        CHECK(p.may_relay(ip("::ffff:192.0.2.9")));
        CHECK_FALSE(p.may_relay(ip("::ffff:198.51.100.1")));
    }

    TEST_CASE("an empty relay list lets no client relay") {
        Resolved r = make_resolved();
        r.relay_net = smtp::NetworkList{};
        const Policy p(r);
        CHECK_FALSE(p.may_relay(ip("127.0.0.1")));
        CHECK_FALSE(p.may_relay(ip("::1")));
        check_refused(classify(p, "<x@remote.example>", p.may_relay(ip("127.0.0.1"))),
                      smtp::smtpd::relay_denied_reply);
    }
}
