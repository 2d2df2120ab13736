#!/usr/bin/env python3
"""smtpc system tests: retries, deferrals and bounces (apps/smtpc/retry_policy.hpp,
bounce.hpp) against the recording server.

  test_smtpc_retry.py SMTPD SMTPC [CASE...]

smtpc runs with --retry-min 1s --retry-max 2s --scan-interval 1s so that retries
come within seconds. Senders in test.local are local to smtpc (--local-domain
test.local): their DSNs land in smtpd's Maildirs, where the email package parses
them (multipart/report; report-type=delivery-status, RFC 3464 fields). Senders
elsewhere get their DSN through the queue, with the null reverse path, and a DSN
that fails is never bounced again (RFC 5321 §4.5.5).

Retry intervals are checked twice: in whole seconds ("the attempt's second is at
least the previous failure's second plus the delay", what the queue's next-attempt
can express, doc/queue-format.md), then in real time from the log timestamps (at
least retry_min, then the doubled delay: RFC 5321 §4.5.4.1 "at least"), last. The
measured intervals are printed as a NOTE.
"""
import math

import smtpc_harness as ch
import smtpd_harness as h
from recording_server import RecordingServer
from smtpc_harness import RELAY, Smtpc, check, inject, message, wait_queue_empty
from smtpd_harness import Smtpd

FAST = ["--retry-min", "1s", "--retry-max", "2s", "--scan-interval", "1s"]


def route(srv):
    return ["--route", "remote.test=" + srv.address]


def test_451_twice_then_250_is_delivered_on_the_third_attempt_retry_min_apart():
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        srv.on_rcpt("bob@remote.test", ["451 4.3.0 Try again later"] * 2)
        with Smtpc(d, route(srv) + FAST) as c:
            inject(d, "alice@test.local", ["bob@remote.test"], message("third time lucky"))
            got = srv.wait_messages(1, timeout=30)
            wait_queue_empty(d, c=c)
            c.wait_log(r": to=<bob@remote\.test>, relay=.*status=sent")  # the log process writes it soon
            lines = c.log_lines(r": to=<bob@remote\.test>, relay=")
        check(len(got) == 1 and got[0].rcpts == ["bob@remote.test"], "delivered: %s" % got)
        texts = [l[3] for l in lines]
        check(len(lines) == 3, "expected 3 attempts in the log: %s" % texts)
        for n, (text, status) in enumerate(zip(texts, ("deferred", "deferred", "sent")), 1):
            check("attempts=%d," % n in text and "status=%s (" % status in text, "attempt %d: %r" % (n, text))
        check("(451 4.3.0 Try again later)" in texts[0], "deferral reason: %r" % texts[0])
        check(texts[2].split("status=sent ")[1].startswith("(250 "), "%r" % texts[2])
        # Delays: retry_min * 2^(attempts-1), capped at retry_max: 1 s, then 2 s.
        times = [l[0] for l in lines]
        for n, delay in ((1, 1), (2, 2)):
            check(math.floor(times[n]) >= math.floor(times[n - 1]) + delay,
                  "attempt %d at %.3f, %.3f s after attempt %d: less than %d s (whole seconds)"
                  % (n + 1, times[n], times[n] - times[n - 1], n, delay))
        server = [t for t, _, _, _ in srv.rcpt_log("bob@remote.test")]
        check(len(server) == 3, "RCPTs at the server: %d" % len(server))
        intervals = (times[1] - times[0], times[2] - times[1])
        h.note("retry intervals: log %.3f s and %.3f s, at the server %.3f s and %.3f s (retry_min 1 s, then 2 s)"
               % (intervals + (server[1] - server[0], server[2] - server[1])))
        # Last, the real time between attempts (RFC 5321 §4.5.4.1: "at least"), which
        # whole-second next-attempt times can cut by up to a second.
        check(intervals[0] >= 1.0 and intervals[1] >= 2.0,
              "a retry came before its delay had passed: %.3f s after attempt 1 (retry_min 1 s), %.3f s after "
              "attempt 2 (2 s); log lines: %s" % (intervals[0], intervals[1], ["%.6f %s" % (t, x) for t, x in
                                                                               zip(times, texts)]))


def test_550_sends_a_dsn_to_the_local_sender_s_maildir():
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        srv.on_rcpt("bob@remote.test", "550 5.1.1 <bob@remote.test>: No such user")
        srv.on_data("carol@remote.test", "554 5.6.0 Content refused")
        with Smtpc(d, route(srv) + FAST) as c:
            inject(d, "alice@test.local", ["bob@remote.test"], message("to nobody", body="the body"))
            inject(d, "alice@test.local", ["carol@remote.test"], message("refused content"))
            ch.wait_dsn(d, "alice", count=2)
            wait_queue_empty(d, c=c)
            c.wait_log(r": to=<bob@remote\.test>, relay=\S+, delay=[\d.]+, attempts=1, "
                       r"status=bounced \(550 5\.1\.1 ")
            c.wait_log(r": sender non-delivery notification: .*/alice/new/", count=2)
        reports = {}
        for msg in ch.dsns(d, "alice"):
            check(msg["From"].startswith("MAILER-DAEMON@smtpc.test"), "From: %r" % msg["From"])
            check(msg["Auto-Submitted"] == "auto-replied", "Auto-Submitted: %r" % msg["Auto-Submitted"])
            text, rcpts, original = ch.dsn_report(msg)
            check(len(rcpts) == 1, "recipients in the DSN: %r" % rcpts)
            reports[rcpts[0]["Final-Recipient"]] = (text, rcpts[0], original)
        text, r, original = reports["rfc822; bob@remote.test"]
        check(r["Action"] == "failed" and r["Status"] == "5.1.1", "bob: %r" % r)
        check(r["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@remote.test>: No such user", "bob: %r" % r)
        check(b"<bob@remote.test>" in text and b"550 5.1.1" in text, "human part: %r" % text)
        check(original is not None and original.get_content_type() == "text/rfc822-headers",
              "third part: %r" % (original and original.get_content_type()))
        headers = original.get_payload(decode=True) if not original.is_multipart() else b""
        check(b"Subject: to nobody" in headers and b"the body" not in headers, "original headers: %r" % headers)
        text, r, _ = reports["rfc822; carol@remote.test"]
        check(r["Status"] == "5.6.0" and "554 5.6.0 Content refused" in r["Diagnostic-Code"], "carol: %r" % r)
        check(len(srv.accepted()) == 0, "accepted: %s" % srv.accepted())


def test_a_spent_queue_lifetime_bounces_with_a_4_x_x_status_and_removes_the_message():
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        srv.on_rcpt("bob@remote.test", "451 4.3.2 System not accepting network messages")
        with Smtpc(d, route(srv) + ["--retry-min", "1s", "--retry-max", "1s", "--scan-interval", "1s",
                                    "--queue-lifetime", "3s"]) as c:
            inject(d, "alice@test.local", ["bob@remote.test"], message("too late"))
            qid = ch.wait_queued(d, 1)[0]
            arrival = int(d.envelope(qid)[0]["arrival"])
            ch.wait_dsn(d, "alice", timeout=30)
            wait_queue_empty(d, c=c)
            c.wait_log(r": to=<bob@remote\.test>, .*status=bounced")
        msg = ch.dsns(d, "alice")[0]
        _, rcpts, _ = ch.dsn_report(msg)
        check(len(rcpts) == 1 and rcpts[0]["Final-Recipient"] == "rfc822; bob@remote.test", "DSN: %r" % rcpts)
        check(rcpts[0]["Action"] == "failed" and rcpts[0]["Status"].startswith("4."), "expired DSN: %r" % rcpts[0])
        check(rcpts[0]["Status"] == "4.3.2" and "451 4.3.2" in rcpts[0]["Diagnostic-Code"],
              "the last error is kept: %r" % rcpts[0])
        attempts = srv.rcpt_log("bob@remote.test")
        check(len(attempts) >= 2, "only %d attempts before expiry" % len(attempts))
        bounced = c.log_lines(r"status=bounced")[0][0]
        check(bounced >= arrival + 3, "bounced at %.3f, arrival %d: lifetime not spent" % (bounced, arrival))


def test_a_null_sender_message_that_fails_permanently_gets_no_dsn_at_all():
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        srv.on_rcpt("bob@remote.test", "550 5.1.1 No such user")
        with Smtpc(d, route(srv) + FAST) as c:
            inject(d, "", ["bob@remote.test"], message("a bounce that bounces"))
            c.wait_log(r": to=<bob@remote\.test>, .*status=bounced \(550 5\.1\.1")
            c.wait_log(r": removed")
            wait_queue_empty(d, c=c)
        check(d.all_new() == [], "a DSN was stored for a null sender: %s" % d.all_new())
        check("non-delivery notification" not in c.log(), "a DSN was made: %s" % c.log())
        check([m.sender for m in srv.messages()] == [] and len(srv.rcpt_log()) == 1,
              "the server saw more: %s %s" % (srv.messages(), srv.rcpt_log()))


def test_a_dsn_to_a_remote_sender_goes_out_with_the_null_sender_and_is_never_bounced_again():
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        srv.on_rcpt("bob@remote.test", "550 5.1.1 No such user")
        srv.on_rcpt("zed@remote.test", "550 5.1.1 The sender is gone too")
        with Smtpc(d, route(srv) + FAST) as c:
            inject(d, "zed@remote.test", ["bob@remote.test"], message("from a remote sender"))
            c.wait_log(r": to=<zed@remote\.test>, .*status=bounced \(550 5\.1\.1 The sender is gone too")
            c.wait_log(r": removed", count=2)
            wait_queue_empty(d, c=c)
        rcpts = srv.rcpt_log()
        check([r[2] for r in rcpts] == ["bob@remote.test", "zed@remote.test"], "RCPTs: %s" % rcpts)
        conn = srv.connections()
        mails = [cmd for x in conn for cmd in x.commands if cmd.upper().startswith(b"MAIL")]
        check(len(mails) == 2 and mails[0].startswith(b"MAIL FROM:<zed@remote.test>")
              and mails[1].startswith(b"MAIL FROM:<>"), "MAIL commands: %r" % mails)
        check(c.log().count("non-delivery notification") == 1, "DSNs made: %s" % c.log())
        check(d.all_new() == [], "something went to a Maildir: %s" % d.all_new())


def test_a_partly_failed_message_bounces_only_the_failed_recipient_and_never_resends_the_delivered():
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        srv.on_rcpt("bad@remote.test", "550 5.1.1 No such user")
        srv.on_rcpt("later@remote.test", ["451 4.2.0 Mailbox busy"])  # then 250
        with Smtpc(d, route(srv) + FAST) as c:
            inject(d, "alice@test.local", ["ok@remote.test", "bad@remote.test", "later@remote.test"],
                   message("partly"))
            ch.wait_dsn(d, "alice")
            srv.wait(lambda s: sum(len(m.rcpts) for m in s.accepted()) >= 2, 30, "ok and later delivered")
            wait_queue_empty(d, c=c)
            c.wait_log(r": removed")
        delivered = [r for m in srv.accepted() for r in m.rcpts]
        check(sorted(delivered) == ["later@remote.test", "ok@remote.test"],
              "delivered recipients (each once): %s" % delivered)
        tried = [r[2] for r in srv.rcpt_log()]
        check(tried.count("ok@remote.test") == 1 and tried.count("bad@remote.test") == 1
              and tried.count("later@remote.test") == 2, "RCPTs at the server: %s" % tried)
        dsn_files = d.new("alice")
        check(len(dsn_files) == 1, "DSNs: %s" % dsn_files)
        _, rcpts, _ = ch.dsn_report(ch.dsns(d, "alice")[0])
        check([r["Final-Recipient"] for r in rcpts] == ["rfc822; bad@remote.test"], "DSN lists %r" % rcpts)
        check(rcpts[0]["Status"] == "5.1.1", "%r" % rcpts)


if __name__ == "__main__":
    ch.main([
        test_451_twice_then_250_is_delivered_on_the_third_attempt_retry_min_apart,
        test_550_sends_a_dsn_to_the_local_sender_s_maildir,
        test_a_spent_queue_lifetime_bounces_with_a_4_x_x_status_and_removes_the_message,
        test_a_null_sender_message_that_fails_permanently_gets_no_dsn_at_all,
        test_a_dsn_to_a_remote_sender_goes_out_with_the_null_sender_and_is_never_bounced_again,
        test_a_partly_failed_message_bounces_only_the_failed_recipient_and_never_resends_the_delivered,
    ])
