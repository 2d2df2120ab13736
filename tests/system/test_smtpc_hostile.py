#!/usr/bin/env python3
"""smtpc system tests: hostile and broken servers, and a crash of smtpc itself.

  test_smtpc_hostile.py SMTPD SMTPC [CASE...]

Hostile servers (recording_server.py's hostile(stage, kind)): an over-long reply
line, a multi-line reply that never ends, binary garbage with NULs, a reply with
NULs, a server that never answers (the final dot above all). With --command-timeout
2s smtpc must stay alive, defer the message (still queued, attempts=1, the last error
recorded in the envelope) and keep its memory bounded (VmRSS sampled throughout stays
under 100 MB). A connection dropped in the middle of DATA is a deferral too, and the
retry delivers the message once.

kill -9: smtpc is killed while it delivers 50 messages to a slow server, then
restarted: every message arrives (50 distinct Message-IDs; a message whose 250 came
but was not yet recorded may arrive twice, reported as a NOTE), none is lost, the
queue empties (apps/smtpc/scheduler.hpp: at-least-once).
"""
import signal
import time

import smtpc_harness as ch
import smtpd_harness as h
from recording_server import RecordingServer
from smtpc_harness import RELAY, Smtpc, check, inject, inject_many, message, wait_queue_empty
from smtpd_harness import Smtpd

RSS_LIMIT_KB = 100 * 1024
HOSTILE_ARGS = ["--command-timeout", "2s", "--connect-timeout", "2s", "--retry-min", "1h", "--scan-interval", "1s"]


def route(srv):
    return ["--route", "remote.test=" + srv.address]


def _hostile(stage, kind, expect_in_error=None, at_least=0.0):
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        srv.hostile(stage, kind)
        srv.endless_limit = 512 << 20
        with Smtpc(d, route(srv) + HOSTILE_ARGS) as c:
            inject(d, "alice@test.local", ["bob@remote.test"], message("to a hostile server (%s %s)" % (stage, kind)))
            qid = ch.wait_queued(d, 1)[0]
            started = time.monotonic()
            peak = [0]

            def deferred():
                check(c.running(), "smtpc died: status %s; stderr %s; log %s"
                      % (c.proc.poll(), c.stderr()[-2000:], c.log()[-3000:]))
                peak[0] = max(peak[0], c.rss_kb())
                fields, _ = d.envelope(qid)
                return fields["attempts"] == "1" and fields["last-error"] and fields
            fields = h.wait_for(deferred, 30, "the message to be deferred (%s %s)" % (stage, kind), interval=0.01)
            elapsed = time.monotonic() - started
            check(elapsed >= at_least, "deferred after %.2f s, before the command timeout" % elapsed)
            check(srv.connection_count() >= 1, "smtpc never connected")
            c.wait_log(r": to=<bob@remote\.test>, (relay=\S+, .*)?status=deferred \(4")
            check(c.running(), "smtpc died after the deferral: %s" % c.log()[-3000:])
            peak[0] = max(peak[0], c.rss_kb())
            check(d.queue_ids() == [qid], "queue: %s" % d.queue_ids())
            _, rcpts = d.envelope(qid)
            check(rcpts[0]["state"] == "pending" and rcpts[0]["error"], "recipient: %r" % rcpts[0])
            check(fields["last-error"][:1] == "4", "last error is not temporary: %r" % fields["last-error"])
            if expect_in_error:
                check(expect_in_error in fields["last-error"], "last error %r lacks %r"
                      % (fields["last-error"], expect_in_error))
            check(peak[0] < RSS_LIMIT_KB, "VmRSS reached %d KiB (limit %d)" % (peak[0], RSS_LIMIT_KB))
            h.note("%s %s: last error %r, peak VmRSS %d KiB" % (stage, kind, fields["last-error"][:120], peak[0]))
            check(srv.accepted() == [], "a message was accepted: %s" % srv.accepted())


def test_an_over_long_ehlo_reply_line_defers_the_message():
    _hostile("ehlo", "long_line")


def test_an_over_long_rcpt_reply_line_defers_the_message():
    _hostile("rcpt", "long_line")


def test_an_endless_multiline_ehlo_reply_defers_the_message():
    _hostile("ehlo", "endless")


def test_an_endless_multiline_greeting_defers_the_message():
    _hostile("greeting", "endless")


def test_garbage_with_nul_for_a_reply_to_mail_defers_the_message():
    _hostile("mail", "garbage")


def test_a_reply_line_with_nul_bytes_defers_the_message():
    _hostile("data", "nul")


def test_a_server_that_never_answers_the_final_dot_defers_the_message_after_the_command_timeout():
    _hostile("dot", "stall", "4.4.2", at_least=1.9)


def test_a_silent_greeting_defers_the_message_after_the_command_timeout():
    _hostile("greeting", "stall", "4.4.2", at_least=1.9)


def test_a_connection_dropped_in_data_is_retried_and_delivered_once():
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        srv.on_data("bob@remote.test", ["drop"])  # then accepted
        with Smtpc(d, route(srv) + ["--retry-min", "1s", "--retry-max", "1s", "--scan-interval", "1s"]) as c:
            inject(d, "alice@test.local", ["bob@remote.test"], message("dropped once"))
            got = srv.wait_messages(1, timeout=30)
            wait_queue_empty(d, c=c)
            c.wait_log(r"to=<bob@remote\.test>, relay=.*status=sent")
            lines = [l[3] for l in c.log_lines(r"to=<bob@remote\.test>, relay=")]
        check(srv.connection_count() == 2, "connections: %d" % srv.connection_count())
        check(len(got) == 1 and len(srv.messages()) == 1, "messages at the server: %s" % srv.messages())
        check(len(lines) == 2 and "status=deferred (4" in lines[0] and "attempts=2" in lines[1]
              and "status=sent" in lines[1], "log: %s" % lines)


def test_kill_9_during_delivery_loses_no_message():
    count = 50
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        srv.dot_delay = 0.05
        sent = [message("crash %d" % i, body="message %d of the crash test" % i) for i in range(count)]
        inject_many(d, [("alice@test.local", ["bob@remote.test"], m) for m in sent])
        check(len(d.queue_ids()) == count, "queued: %d" % len(d.queue_ids()))
        c = Smtpc(d, route(srv) + ["--scan-interval", "1s", "--retry-min", "1s", "--idle-timeout", "5s"])
        with c:
            srv.wait_messages(10, timeout=30)
            c.kill()
            check(c.proc.returncode == -signal.SIGKILL, "smtpc was not killed: %s" % c.proc.returncode)
            before = len(srv.accepted())
            left = len(d.queue_ids())
            check(0 < left < count, "queue after the kill: %d of %d (delivered %d)" % (left, count, before))
            c.start()
            # A kill amid a batch removal leaves contents of messages already removed.
            wait_queue_empty(d, timeout=60, c=c, orphans=count - left)
        ids = [m.header("Message-ID") for m in srv.accepted()]
        unique = set(ids)
        check(len(unique) == count, "%d distinct Message-IDs arrived of %d" % (len(unique), count))
        check({ch.strip_received(m.data)[1] for m in srv.accepted()} == set(sent), "contents differ")
        dups = len(ids) - len(unique)
        h.note("killed after %d accepted with %d still queued; %d duplicate(s) after the restart: %s"
               % (before, left, dups, sorted({i for i in ids if ids.count(i) > 1})))


if __name__ == "__main__":
    ch.main([
        test_an_over_long_ehlo_reply_line_defers_the_message,
        test_an_over_long_rcpt_reply_line_defers_the_message,
        test_an_endless_multiline_ehlo_reply_defers_the_message,
        test_an_endless_multiline_greeting_defers_the_message,
        test_garbage_with_nul_for_a_reply_to_mail_defers_the_message,
        test_a_reply_line_with_nul_bytes_defers_the_message,
        test_a_server_that_never_answers_the_final_dot_defers_the_message_after_the_command_timeout,
        test_a_silent_greeting_defers_the_message_after_the_command_timeout,
        test_a_connection_dropped_in_data_is_retried_and_delivered_once,
        test_kill_9_during_delivery_loses_no_message,
    ])
