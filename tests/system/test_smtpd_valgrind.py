#!/usr/bin/env python3
"""smtpd under valgrind memcheck: no error and no leak in any of its processes.

  test_smtpd_valgrind.py SMTPD [CASE...]

Suite 'memory' (make test_memory). smtpd runs with --workers 1 under
  valgrind --trace-children=yes --leak-check=full
           --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99
           --log-file=<dir>/vg.%p
so the master, the log process and the worker (forked, hence traced) each write a
vg.<pid> file. A few sessions run (a local delivery, a relayed message into the
queue, a session aborted in DATA, a transaction dropped with RSET, a refused
relay, a protocol error; with STARTTLS: a message delivered over TLS, a handshake
that fails on garbage, a session idle in TLS that gets the shutdown's 421 over TLS),
then SIGTERM. The master must exit 0 and every vg.*
file must report "ERROR SUMMARY: 0 errors" and no definitely, indirectly or
possibly lost bytes.
"""
import glob
import os
import re
import shutil
import signal
import tempfile

import smtpd_harness as h
import tls_certs
from smtpd_harness import Smtpd, check, check_reply, dot_encode

LOST = re.compile(r"(definitely|indirectly|possibly) lost: ([\d,]+) bytes")


def test_no_memory_error_or_leak_in_any_process():
    if shutil.which("valgrind") is None:
        raise h.Skip("valgrind is not installed")
    vg_dir = tempfile.mkdtemp(prefix="smtpd-systest-vg-")
    try:
        wrapper = ["valgrind", "--trace-children=yes", "--leak-check=full",
                   "--errors-for-leak-kinds=definite,indirect,possible",
                   "--show-leak-kinds=definite,indirect,possible", "--error-exitcode=99",
                   "--log-file=%s/vg.%%p" % vg_dir]
        certs = tls_certs.make_certs(os.path.join(vg_dir, "certs"))
        tls_args = ["--tls-cert", certs["server"], "--tls-key", certs["server_key"]]
        with Smtpd(["--workers", "1", "--shutdown-grace", "1s", "--relay-net", "127.0.0.1/32"] + tls_args,
                   wrapper=wrapper, start_timeout=120, stop_timeout=120) as d:
            body = b"Subject: under valgrind\r\n\r\nhello\r\n"
            # A local delivery and a relayed message (queue) in one transaction.
            s = d.smtp(timeout=60)
            s.sendmail("a@client.example", ["alice@test.local", "carol@remote.example"], body)
            s.quit()
            check(len(d.new("alice")) == 1 and len(d.queue_ids()) == 1, "not delivered under valgrind")
            # RSET, a refused relay from outside the relay networks, protocol errors.
            c = d.client(source="127.0.0.2", timeout=60)
            c.expect_greeting()
            c.hello()
            c.expect("MAIL FROM:<a@client.example>", 250)
            c.expect("RCPT TO:<carol@remote.example>", 554, "5.7.1")
            c.expect("RCPT TO:<bob@test.local>", 250)
            c.expect("RSET", 250)
            c.expect("XYZZY", 500)
            c.expect("NOOP " + "x" * 1000, 500)
            c.expect("VRFY bob", 252)
            check_reply(c.transaction("b@client.example", ["bob@test.local"], dot_encode(body)), 250)
            c.expect("QUIT", 221)
            c.close()
            # A session aborted in the middle of DATA.
            c = d.client(timeout=60)
            c.expect_greeting()
            c.hello()
            c.expect("MAIL FROM:<a@client.example>", 250)
            c.expect("RCPT TO:<dave@test.local>", 250)
            c.expect("RCPT TO:<erin@remote.example>", 250)
            c.expect("DATA", 354)
            c.send(b"Subject: aborted\r\n\r\n" + b"partial\r\n" * 1000)
            c.abort()
            # STARTTLS: a message delivered over TLS.
            context = h.tls_client_context(certs["ca"])
            c = d.client(timeout=60)
            c.expect_greeting()
            c.hello()
            c.expect("STARTTLS", 220, "2.0.0")
            c.starttls(context)
            c.hello()
            check_reply(c.transaction("t@client.example", ["tina@test.local"], dot_encode(body)), 250)
            c.expect("QUIT", 221)
            c.close()
            check(len(d.new("tina")) == 1, "not delivered over TLS under valgrind")
            # A handshake that fails: garbage in place of the ClientHello.
            c = d.client(timeout=60)
            c.expect_greeting()
            c.hello()
            c.expect("STARTTLS", 220)
            c.send(b"this is no ClientHello\r\n" * 4)
            check(c.wait_closed(60) == b"", "bytes after a failed handshake")
            c.close()
            d.wait_log(r"TLS handshake failed from ", timeout=60)
            # Idle sessions left open for the shutdown's 421: plaintext, and in TLS.
            idle = d.client(timeout=60)
            idle.expect_greeting()
            idle.hello()
            idle_tls = d.client(timeout=60)
            idle_tls.expect_greeting()
            idle_tls.hello()
            idle_tls.expect("STARTTLS", 220)
            idle_tls.starttls(context)
            idle_tls.hello()
            h.wait_for(lambda: d.tmp("dave") == [], 60, "the aborted transaction's cleanup")
            d.signal(signal.SIGTERM)
            check_reply(idle.reply(timeout=60), 421, "4.3.2", "idle session at shutdown")
            check_reply(idle_tls.reply(timeout=60), 421, "4.3.2", "idle TLS session at shutdown")
            idle.close()
            idle_tls.close()
            check(d.wait_exit(120) == 0, "smtpd under valgrind exited with %s" % d.proc.returncode)
        reports = sorted(glob.glob(os.path.join(vg_dir, "vg.*")))
        check(len(reports) >= 3, "expected vg files of master, log process and worker: %s" % reports)
        problems = []
        for path in reports:
            text = open(path, errors="replace").read()
            m = re.search(r"ERROR SUMMARY: (\d+) errors", text)
            if not m:
                problems.append("%s: no ERROR SUMMARY (killed?)" % os.path.basename(path))
            elif m.group(1) != "0":
                problems.append("%s: %s errors" % (os.path.basename(path), m.group(1)))
            for kind, amount in LOST.findall(text):
                if amount.replace(",", "") != "0":
                    problems.append("%s: %s lost: %s bytes" % (os.path.basename(path), kind, amount))
            if problems and problems[-1].startswith(os.path.basename(path)):
                print("---- %s\n%s" % (path, text[-6000:]))
        check(not problems, "valgrind: %s" % "; ".join(problems))
    finally:
        if not os.environ.get("SMTPD_KEEP"):
            shutil.rmtree(vg_dir, ignore_errors=True)


if __name__ == "__main__":
    h.main([test_no_memory_error_or_leak_in_any_process], case_timeout=600)
