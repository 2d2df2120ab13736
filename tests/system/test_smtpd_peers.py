#!/usr/bin/env python3
"""smtpd system tests: other peers and transports: IPv6, swaks, timeouts.

  test_smtpd_peers.py SMTPD [CASE...]

smtplib over ::1; swaks delivering plainly and with PIPELINING (swaks --pipeline:
swaks' --pipe is its pipe-to-a-program transport, not RFC 2920); an idle client
and a client stalled in DATA get 421 4.4.2 after --timeout / --data-timeout and
are disconnected, with nothing delivered.
"""
import re
import shutil
import time

import smtpd_harness as h
from smtpd_harness import Smtpd, check, check_reply, parse_received, split_trace

BODY = b"Subject: over IPv6\r\nMessage-ID: <v6@client.example>\r\n\r\nHello over ::1.\r\n"


def test_delivery_over_ipv6():
    with Smtpd(ipv6=True) as d:
        s = d.smtp(host="::1")
        refused = s.sendmail("a@client.example", ["alice@test.local", "carol@remote.example"], BODY)
        s.quit()
        check(refused == {}, "refused over ::1: %r" % refused)
        _, rec, rest = split_trace(d.only_message("alice"))
        check(rest == BODY, "content differs")
        m = parse_received(rec)
        check(m.group("addr") == "IPv6:::1", "Received does not name [IPv6:::1]: %r" % rec)
        check(len(d.queue_ids()) == 1, "queue: %s" % d.queue_ids())
        d.wait_log(r"connect from \S*\[::1\]")
        # IPv4 still works on the same daemon.
        s = d.smtp()
        s.sendmail("a@client.example", ["bob@test.local"], BODY)
        s.quit()
        check(len(d.new("bob")) == 1, "IPv4 delivery failed next to IPv6")


def _swaks(d, *extra, host="127.0.0.1"):
    if shutil.which("swaks") is None:
        raise h.Skip("swaks is not installed")
    argv = ["swaks", "--server", host, "--port", str(d.port), "--helo", "client.example",
            "--from", "a@client.example", "--timeout", "20"] + list(extra)
    return h.run_bounded(argv, 60)


def test_swaks_delivers():
    with Smtpd() as d:
        status, out, err = _swaks(d, "--to", "alice@test.local,carol@remote.example",
                                  "--header", "Subject: swaks plain", "--body", "Hello from swaks.")
        check(status == 0, "swaks exited %d: %s %s" % (status, out[-2000:], err[-2000:]))
        _, _, rest = split_trace(d.only_message("alice"))
        check(b"Subject: swaks plain\r\n" in rest and b"\r\n\r\nHello from swaks.\r\n" in rest,
              "swaks message not as sent: %r" % rest)
        check(len(d.queue_ids()) == 1, "remote recipient not queued: %s" % d.queue_ids())
        # swaks sees a refused recipient as such (exit 24: no recipient accepted).
        status, out, _ = _swaks(d, "--to", "bad/name@test.local", "--body", "x")
        check(status == 24 and re.search(r"<\*\* +550 5\.1\.3", out), "swaks to a bad mailbox: %d %s"
              % (status, out[-1500:]))


def test_swaks_pipelining_delivers():
    with Smtpd() as d:
        status, out, err = _swaks(d, "--pipeline", "--to", "alice@test.local,bob@test.local",
                                  "--header", "Subject: swaks pipelined", "--body", "Pipelined.")
        check(status == 0, "swaks --pipeline exited %d: %s %s" % (status, out[-2000:], err[-2000:]))
        # swaks sends MAIL and the RCPTs in one group, before reading the replies.
        check(re.search(r"-> MAIL FROM:<a@client\.example>\s*\n\s*-> RCPT TO:<alice@test\.local>\s*\n"
                        r"\s*-> RCPT TO:<bob@test\.local>\s*\n", out),
              "swaks did not pipeline: %s" % out[-1500:])
        for mailbox in ("alice", "bob"):
            _, _, rest = split_trace(d.only_message(mailbox))
            check(b"Subject: swaks pipelined\r\n" in rest and b"Pipelined.\r\n" in rest, "%s: %r" % (mailbox, rest))


def test_swaks_over_ipv6():
    with Smtpd(ipv6=True) as d:
        status, out, err = _swaks(d, "-6", "--to", "alice@test.local", "--body", "v6", host="::1")
        if "IPv6 not available" in out + err:
            raise h.Skip("swaks lacks IPv6 (Perl's IO::Socket::INET6)")
        check(status == 0, "swaks over ::1 exited %d: %s %s" % (status, out[-2000:], err[-2000:]))
        check(len(d.new("alice")) == 1, "not delivered")


def test_an_idle_client_gets_421_4_4_2_after_the_timeout():
    with Smtpd(["--timeout", "2s"]) as d:
        c = d.client(timeout=20)
        c.expect_greeting()
        c.hello()
        started = time.monotonic()
        r = c.reply(timeout=20)  # nothing sent: the server's timeout must come first
        elapsed = time.monotonic() - started
        check_reply(r, 421, "4.4.2", "idle client")
        c.wait_closed(10)
        check(elapsed <= 15.0, "421 came after %.1f s with --timeout 2s" % elapsed)
        # Before the greeting is answered at all, the same.
        c = d.client(timeout=20)
        c.expect_greeting()
        check_reply(c.reply(timeout=20), 421, "4.4.2", "idle before HELO")
        c.wait_closed(10)


def test_a_client_stalled_in_data_gets_421_and_nothing_is_delivered():
    with Smtpd(["--data-timeout", "2s", "--timeout", "30s"]) as d:
        c = d.client(timeout=20)
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<a@client.example>", 250)
        c.expect("RCPT TO:<alice@test.local>", 250)
        c.expect("RCPT TO:<carol@remote.example>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: stalled\r\n\r\nhalf a li")
        started = time.monotonic()
        check_reply(c.reply(timeout=20), 421, "4.4.2", "stalled in DATA")
        elapsed = time.monotonic() - started
        c.wait_closed(10)
        check(elapsed <= 15.0, "421 came after %.1f s with --data-timeout 2s" % elapsed)
        check(d.all_new() == [] and d.all_tmp() == [], "files left: %s %s" % (d.all_new(), d.all_tmp()))
        check(d.queue_ids() == [] and d.queue_tmp() == [], "queue left: %s %s" % (d.queue_ids(), d.queue_tmp()))
        d.wait_log(r"timeout after DATA from \S*\[127\.0\.0\.1\]")


if __name__ == "__main__":
    h.main([
        test_delivery_over_ipv6,
        test_swaks_delivers,
        test_swaks_pipelining_delivers,
        test_swaks_over_ipv6,
        test_an_idle_client_gets_421_4_4_2_after_the_timeout,
        test_a_client_stalled_in_data_gets_421_and_nothing_is_delivered,
    ])
