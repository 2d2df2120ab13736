#!/usr/bin/env python3
"""smtpd system tests: reverse DNS of clients, against a private dnsmasq.

  test_smtpd_rdns.py SMTPD [CASE...]

dnsmasq on 127.0.0.1 (its own records only, nothing forwarded) knows:
  127.0.0.1 <-> client.test      (PTR and A: confirmed)
  127.0.0.2                      (no PTR: NXDOMAIN)
  127.0.0.3  -> fake.test -> 127.0.0.9   (PTR, but A elsewhere: unconfirmed)
With --rdns --dns-server 127.0.0.1:PORT the Received header and the log name the
confirmed name; --reject-unknown-client answers 450 4.7.25 (RFC 7372) to 127.0.0.2
and 127.0.0.3 and still greets 127.0.0.1.
"""
import smtpd_harness as h
from smtpd_harness import Smtpd, check, check_reply, dot_encode, parse_received, split_trace

RECORDS = ["--host-record=client.test,127.0.0.1",
           "--ptr-record=3.0.0.127.in-addr.arpa,fake.test",
           "--host-record=fake.test,127.0.0.9"]


def _deliver(d, source, mailbox):
    c = d.client(source=source)
    c.expect_greeting()
    c.hello("helo.example")
    check_reply(c.transaction("a@client.example", ["%s@test.local" % mailbox],
                              dot_encode(b"Subject: rdns\r\n\r\nx\r\n")), 250, what="delivery from %s" % source)
    c.expect("QUIT", 221)
    c.close()
    _, rec, _ = split_trace(d.only_message(mailbox))
    return parse_received(rec)


def test_a_confirmed_name_is_in_received_and_the_log():
    with h.Dnsmasq(RECORDS) as dns:
        with Smtpd(["--rdns", "--dns-server", dns.server, "--dns-timeout", "5s"]) as d:
            m = _deliver(d, "127.0.0.1", "alice")
            check(m.group("rdns") == "client.test" and m.group("addr") == "127.0.0.1",
                  "Received: %r" % m.group(0))
            check(m.group("helo") == "helo.example", "Received from: %r" % m.group(0))
            d.wait_log(r"connect from client\.test\[127\.0\.0\.1\] rdns=confirmed")
            d.wait_log(r"client=client\.test\[127\.0\.0\.1\], helo=<helo\.example>")

            m = _deliver(d, "127.0.0.2", "bob")
            check(m.group("rdns") is None and m.group("addr") == "127.0.0.2", "Received: %r" % m.group(0))
            d.wait_log(r"connect from \S*\[127\.0\.0\.2\] rdns=no_name")

            m = _deliver(d, "127.0.0.3", "carol")
            check(m.group("rdns") is None, "an unconfirmed name is in Received: %r" % m.group(0))
            d.wait_log(r"connect from \S*\[127\.0\.0\.3\] rdns=unconfirmed")
        check("client.test" in dns.log(), "dnsmasq was not asked: %s" % dns.log()[-1000:])


def test_reject_unknown_client_gets_450_4_7_25():
    with h.Dnsmasq(RECORDS) as dns:
        with Smtpd(["--rdns", "--dns-server", dns.server, "--reject-unknown-client"]) as d:
            for source, status in (("127.0.0.2", "no_name"), ("127.0.0.3", "unconfirmed")):
                c = d.client(source=source)
                check_reply(c.reply(), 450, "4.7.25", "greeting for %s (%s)" % (source, status))
                c.wait_closed(10)  # a 4xx connect verdict closes
            m = _deliver(d, "127.0.0.1", "alice")
            check(m.group("rdns") == "client.test", "Received: %r" % m.group(0))
            check(d.mailboxes() == ["alice"], "mailboxes: %s" % d.mailboxes())


def test_no_rdns_does_no_lookup():
    with h.Dnsmasq(RECORDS) as dns:
        with Smtpd(["--no-rdns", "--dns-server", dns.server]) as d:
            m = _deliver(d, "127.0.0.1", "alice")
            check(m.group("rdns") is None, "Received has a name with --no-rdns: %r" % m.group(0))
            d.wait_log(r"connect from \S*\[127\.0\.0\.1\] rdns=off")
        check("query[PTR]" not in dns.log(), "--no-rdns asked the name server: %s" % dns.log()[-1000:])


def test_a_silent_name_server_delays_but_does_not_refuse():
    with h.SilentDns() as dns:
        with Smtpd(["--rdns", "--dns-server", dns.server, "--dns-timeout", "2s"], probe_greeting=False) as d:
            c = d.client(timeout=20)
            check_reply(c.reply(timeout=20), 220, what="greeting after the lookup timed out")
            c.expect("QUIT", 221)
            d.wait_log(r"connect from \S*\[127\.0\.0\.1\] rdns=temporary")
        with Smtpd(["--rdns", "--dns-server", dns.server, "--dns-timeout", "2s", "--reject-unknown-client"],
                   probe_greeting=False) as d:
            c = d.client(timeout=20)
            check_reply(c.reply(timeout=20), 450, "4.7.25", "temporary failure with --reject-unknown-client")


if __name__ == "__main__":
    h.main([
        test_a_confirmed_name_is_in_received_and_the_log,
        test_reject_unknown_client_gets_450_4_7_25,
        test_no_rdns_does_no_lookup,
        test_a_silent_name_server_delays_but_does_not_refuse,
    ])
