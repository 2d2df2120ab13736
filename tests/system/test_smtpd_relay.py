#!/usr/bin/env python3
"""smtpd system tests: who may relay (apps/smtpd/policy.hpp).

  test_smtpd_relay.py SMTPD [CASE...]

The daemon runs with --relay-net 127.0.0.1/32; clients bind their socket to
127.0.0.2 to be outside the relay networks. A remote recipient is refused with
554 5.7.1 for such a client, local ones are still accepted, and relay tricks
(user%remote@local, remote!user@local, "user@remote"@local, source routes) are
refused: 554 5.7.1 outside, 550 5.1.3 inside the relay networks.
"""
import smtplib

import smtpd_harness as h
from smtpd_harness import Smtpd, check, check_reply, dot_encode, parse_received, split_trace

OUTSIDE = "127.0.0.2"
RELAY_ONLY_LOCALHOST = ["--relay-net", "127.0.0.1/32"]

TRICKS = ['<user%remote.example@test.local>',
          '<remote.example!user@test.local>',
          '<"user@remote.example"@test.local>',
          '<"user%remote.example"@test.local>',
          '<"remote.example!user"@test.local>']


def test_a_client_outside_the_relay_networks_gets_554_5_7_1_for_a_remote_recipient():
    with Smtpd(RELAY_ONLY_LOCALHOST) as d:
        c = d.client(source=OUTSIDE)
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<a@client.example>", 250)
        c.expect("RCPT TO:<carol@remote.example>", 554, "5.7.1")
        c.expect("RCPT TO:<carol@REMOTE.example>", 554, "5.7.1")
        # A source route is dropped by the parser; the final mailbox is remote.
        c.expect("RCPT TO:<@test.local:carol@remote.example>", 554, "5.7.1")
        # Local recipients are still accepted, the domain in any case.
        c.expect("RCPT TO:<alice@test.local>", 250, "2.1.5")
        c.expect("RCPT TO:<Dave@TEST.LOCAL>", 250, "2.1.5")
        c.expect("DATA", 354)
        body = b"Subject: from outside\r\n\r\nhello\r\n"
        c.send(dot_encode(body))
        check_reply(c.reply(), 250, what="message to the local recipients")
        c.expect("QUIT", 221)
        check(d.queue_ids() == [], "a refused remote recipient was queued: %s" % d.queue_ids())
        _, rec, rest = split_trace(d.only_message("alice"))
        check(rest == body, "content differs")
        check(parse_received(rec).group("addr") == OUTSIDE, "Received address: %r" % rec)
        _, _, rest = split_trace(d.only_message("dave"))
        check(rest == body, "content differs")
        d.wait_log(r"NOQUEUE: reject: RCPT from \S*\[127\.0\.0\.2\]: 554 5\.7\.1 <carol@remote\.example>: "
                   r"Relay access denied; from=<a@client\.example> to=<carol@remote\.example> helo=<client\.example>")


def test_relay_tricks_are_refused_554_outside_the_relay_networks():
    with Smtpd(RELAY_ONLY_LOCALHOST) as d:
        c = d.client(source=OUTSIDE)
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<a@client.example>", 250)
        for rcpt in TRICKS:
            c.expect("RCPT TO:" + rcpt, 554, "5.7.1")
        c.expect("RCPT TO:<alice@test.local>", 250)
        c.expect("QUIT", 221)
        check(d.mailboxes() == [] and d.queue_ids() == [], "something was stored")


def test_relay_tricks_are_bad_mailboxes_550_5_1_3_inside_the_relay_networks():
    with Smtpd(RELAY_ONLY_LOCALHOST) as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<a@client.example>", 250)
        for rcpt in TRICKS:
            c.expect("RCPT TO:" + rcpt, 550, "5.1.3")
        # The relay itself is fine from 127.0.0.1.
        c.expect("RCPT TO:<carol@remote.example>", 250)
        c.expect("DATA", 354)
        c.send(dot_encode(b"Subject: relayed\r\n\r\nvia 127.0.0.1\r\n"))
        check_reply(c.reply(), 250, what="relayed message")
        c.expect("QUIT", 221)
        ids = d.queue_ids()
        check(len(ids) == 1, "queue: %s" % ids)
        _, rcpts = d.envelope(ids[0])
        check([r["to"] for r in rcpts] == ["carol@remote.example"], "envelope: %r" % rcpts)
        check(d.mailboxes() == [], "tricks made mailboxes: %s" % d.mailboxes())


def test_postmaster_without_a_domain_is_local_for_everyone():
    with Smtpd(RELAY_ONLY_LOCALHOST + ["--local-user", "alice"]) as d:
        c = d.client(source=OUTSIDE)
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<a@client.example>", 250)
        c.expect("RCPT TO:<Postmaster>", 250)  # RFC 5321 §4.5.1
        c.expect("DATA", 354)
        c.send(dot_encode(b"Subject: to postmaster\r\n\r\nx\r\n"))
        check_reply(c.reply(), 250)
        c.expect("MAIL FROM:<a@client.example>", 250)
        c.expect("RCPT TO:<postmaster@test.local>", 250)
        c.expect("RCPT TO:<carol@test.local>", 550, "5.1.1")
        c.expect("QUIT", 221)
        check(len(d.new("postmaster")) == 1, "postmaster/new: %s" % d.new("postmaster"))


def test_local_user_restricts_the_mailboxes():
    with Smtpd(["--local-user", "alice", "--local-user", "Bob"]) as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<a@client.example>", 250)
        c.expect("RCPT TO:<alice@test.local>", 250)
        c.expect("RCPT TO:<BOB@test.local>", 250)
        c.expect("RCPT TO:<mallory@test.local>", 550, "5.1.1")
        c.expect("RCPT TO:<postmaster@test.local>", 250)  # always known
        c.expect("QUIT", 221)


def test_smtplib_from_outside_gets_the_remote_recipient_refused():
    with Smtpd(RELAY_ONLY_LOCALHOST) as d:
        s = d.smtp(source=OUTSIDE)
        refused = s.sendmail("a@client.example", ["alice@test.local", "carol@remote.example"],
                             b"Subject: partly refused\r\n\r\nx\r\n")
        check(set(refused) == {"carol@remote.example"} and refused["carol@remote.example"][0] == 554,
              "refused: %r" % refused)
        try:
            s.sendmail("a@client.example", ["carol@remote.example"], b"Subject: refused\r\n\r\nx\r\n")
            raise AssertionError("relay accepted from outside the relay networks")
        except smtplib.SMTPRecipientsRefused as e:
            check(e.recipients["carol@remote.example"][0] == 554, "refused: %r" % e.recipients)
        s.quit()
        check(len(d.new("alice")) == 1 and d.queue_ids() == [], "stored: %s %s" % (d.new("alice"), d.queue_ids()))


def test_the_default_relay_networks_are_loopback_only_for_ipv4_and_ipv6():
    with Smtpd(ipv6=True) as d:  # default relay_net: 127.0.0.0/8 and ::1/128
        for host, source in (("127.0.0.1", None), ("127.0.0.1", OUTSIDE), ("::1", None)):
            c = d.client(host=host, source=source)
            c.expect_greeting()
            c.hello()
            c.expect("MAIL FROM:<a@client.example>", 250)
            c.expect("RCPT TO:<carol@remote.example>", 250)
            c.expect("QUIT", 221)
    with Smtpd(RELAY_ONLY_LOCALHOST, ipv6=True) as d:
        c = d.client(host="::1")
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<a@client.example>", 250)
        c.expect("RCPT TO:<carol@remote.example>", 554, "5.7.1")
        c.expect("RCPT TO:<alice@test.local>", 250)
        c.expect("QUIT", 221)


if __name__ == "__main__":
    h.main([
        test_a_client_outside_the_relay_networks_gets_554_5_7_1_for_a_remote_recipient,
        test_relay_tricks_are_refused_554_outside_the_relay_networks,
        test_relay_tricks_are_bad_mailboxes_550_5_1_3_inside_the_relay_networks,
        test_postmaster_without_a_domain_is_local_for_everyone,
        test_local_user_restricts_the_mailboxes,
        test_smtplib_from_outside_gets_the_remote_recipient_refused,
        test_the_default_relay_networks_are_loopback_only_for_ipv4_and_ipv6,
    ])
