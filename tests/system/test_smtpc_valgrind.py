#!/usr/bin/env python3
"""smtpc under valgrind memcheck: no error and no leak, in smtpc and its log process.

  test_smtpc_valgrind.py SMTPD SMTPC [CASE...]

Suite 'memory'. smtpc runs under
  valgrind --trace-children=yes --leak-check=full
           --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99
           --log-file=<dir>/vg.%p
(smtpd, which only fills the queue, runs natively). Each vg.<pid> file must report
"ERROR SUMMARY: 0 errors" and no definitely, indirectly or possibly lost bytes.

 - --once: a few messages delivered to the recording server, one recipient refused
   with 550 (the DSN path: make_dsn, the sender's Maildir), one deferred with 451;
   smtpc must exit 0.
 - the daemon: deliveries, then SIGTERM while a session waits for a server that never
   answers the final dot (the graceful stop with a transaction in flight); exit 0.
 - --once with STARTTLS: messages delivered over TLS to aiosmtpd (the handshake, reads
   and writes through OpenSSL, close_notify), one domain whose verify level fails
   the handshake (a self-signed certificate), one whose STARTTLS gets garbage: the
   TLS error paths free what they took too.
"""
import glob
import os
import re
import shutil
import tempfile

import smtpc_harness as ch
import smtpd_harness as h
from recording_server import RecordingServer
from smtpc_harness import RELAY, Smtpc, TlsPeer, check, inject_many, message
from smtpd_harness import Smtpd
from tls_certs import make_certs

LOST = re.compile(r"(definitely|indirectly|possibly) lost: ([\d,]+) bytes")


def valgrind(vg_dir):
    return ["valgrind", "--trace-children=yes", "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect,possible",
            "--show-leak-kinds=definite,indirect,possible", "--error-exitcode=99",
            "--log-file=%s/vg.%%p" % vg_dir]


def check_reports(vg_dir, at_least=2):
    reports = sorted(glob.glob(os.path.join(vg_dir, "vg.*")))
    check(len(reports) >= at_least, "expected valgrind reports of smtpc and its log process, found %s" % reports)
    problems = []
    for path in reports:
        text = h._read_text(path)
        if "ERROR SUMMARY: 0 errors" not in text:
            problems.append("%s: %s" % (os.path.basename(path), text[-4000:]))
            continue
        for kind, amount in LOST.findall(text):
            if amount.replace(",", "") != "0":
                problems.append("%s: %s lost: %s bytes\n%s" % (os.path.basename(path), kind, amount, text[-4000:]))
    check(not problems, "valgrind found problems:\n" + "\n".join(problems))
    return reports


def _vg_dir():
    if shutil.which("valgrind") is None:
        raise h.Skip("valgrind is not installed")
    return tempfile.mkdtemp(prefix="smtpc-systest-vg-")


def test_once_with_deliveries_a_dsn_and_a_deferral_has_no_memory_error_or_leak():
    vg_dir = _vg_dir()
    try:
        with Smtpd(RELAY) as d, RecordingServer() as srv:
            srv.on_rcpt("bad@remote.test", "550 5.1.1 No such user")
            srv.on_rcpt("later@remote.test", "451 4.3.0 Try later")
            batch = [("alice@test.local", ["bob%d@remote.test" % i], message("valgrind %d" % i)) for i in range(3)]
            batch.append(("alice@test.local", ["ok@remote.test", "bad@remote.test"], message("valgrind dsn")))
            batch.append(("alice@test.local", ["later@remote.test"], message("valgrind deferred")))
            inject_many(d, batch)
            c = Smtpc(d, ["--route", "remote.test=" + srv.address, "--retry-min", "1h"], wrapper=valgrind(vg_dir))
            try:
                status, out, err = c.run(["--once"], timeout=300)
                check(status == 0, "smtpc --once under valgrind exited %d: %s; log %s"
                      % (status, err[-3000:], c.log()[-3000:]))
            finally:
                c._cleanup()
            delivered = sorted(r for m in srv.accepted() for r in m.rcpts)
            check(delivered == ["bob0@remote.test", "bob1@remote.test", "bob2@remote.test", "ok@remote.test"],
                  "delivered: %s" % delivered)
            check(len(d.new("alice")) == 1, "DSN: %s" % d.new("alice"))
            check(len(d.queue_ids()) == 1, "queue after --once: %s" % d.queue_ids())
        check_reports(vg_dir)
    finally:
        shutil.rmtree(vg_dir, ignore_errors=True)


def test_the_daemon_stopped_with_a_transaction_in_flight_has_no_memory_error_or_leak():
    vg_dir = _vg_dir()
    try:
        with Smtpd(RELAY) as d, RecordingServer() as srv, RecordingServer() as stall:
            stall.hostile("dot", "stall")
            args = ["--route", "remote.test=" + srv.address, "--route", "stall.test=" + stall.address,
                    "--command-timeout", "3s", "--retry-min", "1h"]
            with Smtpc(d, args, wrapper=valgrind(vg_dir), start_timeout=120, stop_timeout=120) as c:
                inject_many(d, [("alice@test.local", ["r%d@remote.test" % i], message("daemon %d" % i))
                                for i in range(3)] + [("alice@test.local", ["s@stall.test"], message("stalled"))])
                srv.wait_messages(3, timeout=120)
                stall.wait(lambda s: s.stalls() >= 1, 120, "the session to wait for the reply to its final dot")
                c.stop()  # SIGTERM while the transaction waits; must exit 0
            check(len(d.queue_ids()) == 1, "queue: %s" % d.queue_ids())
        check_reports(vg_dir)
    finally:
        shutil.rmtree(vg_dir, ignore_errors=True)


def test_once_over_starttls_with_failed_handshakes_has_no_memory_error_or_leak():
    vg_dir = _vg_dir()
    cert_dir = tempfile.mkdtemp(prefix="smtpc-systest-certs-")
    try:
        p = make_certs(cert_dir, ["localhost", "IP:127.0.0.1"])
        with Smtpd(RELAY) as d, TlsPeer(p["server"], p["server_key"]) as peer, \
                TlsPeer(p["selfsigned"], p["selfsigned_key"]) as selfsigned, RecordingServer() as garbage:
            garbage.starttls = "garbage"
            batch = [("alice@test.local", ["tls%d@remote.test" % i], message("valgrind tls %d" % i)) for i in range(3)]
            batch.append(("alice@test.local", ["v@verify.test"], message("valgrind verify")))
            batch.append(("alice@test.local", ["g@garbage.test"], message("valgrind garbage")))
            inject_many(d, batch)
            c = Smtpc(d, ["--route", "remote.test=" + peer.address, "--route", "verify.test=" + selfsigned.address,
                          "--route", "garbage.test=" + garbage.address, "--tls-policy", "verify.test=verify",
                          "--tls-ca-file", p["ca"], "--retry-min", "1h"], wrapper=valgrind(vg_dir))
            try:
                status, out, err = c.run(["--once"], timeout=300)
                check(status == 0, "smtpc --once under valgrind exited %d: %s; log %s"
                      % (status, err[-3000:], c.log()[-3000:]))
            finally:
                c._cleanup()
            got = peer.messages()
            check(sorted(r for m in got for r in m["rcpts"]) == ["tls0@remote.test", "tls1@remote.test",
                                                                  "tls2@remote.test"], "delivered: %s" % got)
            check(all(m["tls"] for m in got), "not over TLS: %s" % got)
            check("Verified TLS connection established to 127.0.0.1[127.0.0.1]:%d" % peer.port in c.log(),
                  "log: %s" % c.log()[-3000:])
            check(c.log().count("TLS handshake with") == 2, "log: %s" % c.log()[-3000:])
            check(not selfsigned.messages() and not garbage.messages(), "delivered despite TLS failures")
            check(len(d.queue_ids()) == 2, "queue after --once: %s" % d.queue_ids())
        check_reports(vg_dir)
    finally:
        shutil.rmtree(vg_dir, ignore_errors=True)
        shutil.rmtree(cert_dir, ignore_errors=True)


if __name__ == "__main__":
    ch.main([
        test_once_with_deliveries_a_dsn_and_a_deferral_has_no_memory_error_or_leak,
        test_the_daemon_stopped_with_a_transaction_in_flight_has_no_memory_error_or_leak,
        test_once_over_starttls_with_failed_handshakes_has_no_memory_error_or_leak,
    ], case_timeout=400)
