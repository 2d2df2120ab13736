#!/usr/bin/env python3
"""smtpd system tests: many clients at once.

  test_smtpd_load.py SMTPD [CASE...]

- 100 smtplib sessions from 15 processes at once, each with a unique Message-ID
  and Subject, to five mailboxes and (every tenth) a remote recipient: every
  message is delivered exactly once, byte-exact, nothing is left in tmp/;
- Postfix's smtp-source, 10 sessions in parallel, 200 messages of 1 KB: exactly
  200 files in mail/user/new.
"""
import multiprocessing
import os
import re
import shutil
import smtplib

import smtpd_harness as h
from smtpd_harness import Smtpd, check, split_trace

SESSIONS = 100
PROCESSES = 15


def _message(i):
    return (b"From: <sender%d@client.example>\r\n"
            b"Subject: parallel message %d\r\n"
            b"Message-ID: <parallel-%d@client.example>\r\n"
            b"\r\n" % (i, i, i)) + b"Body of message %d.\r\n" % i * 20


def _recipients(i):
    rcpts = ["user%d@test.local" % (i % 5)]
    if i % 10 == 0:
        rcpts.append("far%d@remote.example" % i)
    return rcpts


def _send_one(args):
    """In a pool process: one session, one message. Returns (i, error or None)."""
    port, i = args
    try:
        s = smtplib.SMTP("127.0.0.1", port, local_hostname="client%d.example" % i, timeout=60)
        try:
            refused = s.sendmail("sender%d@client.example" % i, _recipients(i), _message(i))
            if refused:
                return i, "refused %r" % refused
        finally:
            s.quit()
    except Exception as e:  # reported by the parent, with the message number
        return i, "%s: %s" % (type(e).__name__, e)
    return i, None


def test_100_sessions_from_15_processes_deliver_each_message_exactly_once():
    with Smtpd(["--workers", "2"]) as d:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(PROCESSES) as pool:
            results = pool.map_async(_send_one, [(d.port, i) for i in range(SESSIONS)], chunksize=1)
            outcome = results.get(90)
        errors = [(i, e) for i, e in outcome if e]
        check(not errors, "%d sessions failed, e.g. %s" % (len(errors), errors[:5]))

        seen = {}
        for path in d.all_new():
            _, _, rest = split_trace(h.read_bytes(path))
            m = re.search(rb"^Message-ID: <parallel-(\d+)@client\.example>\r\n", rest, re.M)
            check(m is not None, "a delivered file has no Message-ID: %s" % path)
            i = int(m.group(1))
            check(rest == _message(i), "message %d not byte-exact" % i)
            mailbox = path.split(os.sep)[-3]
            check(mailbox == "user%d" % (i % 5), "message %d in mailbox %s" % (i, mailbox))
            seen[i] = seen.get(i, 0) + 1
        twice = sorted(i for i, n in seen.items() if n > 1)
        missing = sorted(set(range(SESSIONS)) - set(seen))
        check(not twice, "delivered more than once: %s" % twice)
        check(not missing, "never delivered: %s" % missing)
        check(d.all_tmp() == [], "tmp/ files left: %s" % d.all_tmp()[:5])

        ids = d.queue_ids()
        check(len(ids) == SESSIONS // 10, "queued: %d, expected %d" % (len(ids), SESSIONS // 10))
        queued = sorted(int(d.envelope(q)[1][0]["to"][3:].split("@")[0]) for q in ids)
        check(queued == list(range(0, SESSIONS, 10)), "queued recipients: %s" % queued)
        check(d.queue_tmp() == [], "queue tmp/ left: %s" % d.queue_tmp())


def test_smtp_source_200_messages_in_10_sessions_are_200_files():
    tool = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not os.access(tool, os.X_OK):
        raise h.Skip("smtp-source (postfix) is not installed")
    with Smtpd() as d:
        status, out, err = h.run_bounded(
            [tool, "-s", "10", "-m", "200", "-l", "1024", "-f", "a@test.local", "-t", "user@test.local",
             "127.0.0.1:%d" % d.port], 120)
        check(status == 0, "smtp-source exited %d: %s %s" % (status, out[-2000:], err[-2000:]))
        check("fatal" not in err and "error" not in err.lower(), "smtp-source complained: %s" % err[-2000:])
        files = d.new("user")
        check(len(files) == 200, "expected 200 files in user/new, found %d" % len(files))
        check(d.tmp("user") == [], "tmp/ files left: %s" % d.tmp("user")[:5])
        ids = set()
        for path in files:
            rp, _, rest = split_trace(h.read_bytes(path))
            check(rp == b"Return-Path: <a@test.local>\r\n", "Return-Path: %r" % rp)
            check(len(rest) >= 1024, "smtp-source message too short: %d" % len(rest))
            m = re.search(rb"^Message-Id: (<[^>]+>)\r\n", rest, re.M | re.I)
            check(m is not None, "no Message-Id in %r" % rest[:300])
            ids.add(m.group(1))
        check(len(ids) == 200, "%d distinct Message-Ids among 200 files" % len(ids))


if __name__ == "__main__":
    h.main([
        test_100_sessions_from_15_processes_deliver_each_message_exactly_once,
        test_smtp_source_200_messages_in_10_sessions_are_200_files,
    ])
