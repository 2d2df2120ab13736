#!/usr/bin/env python3
"""smtpc system tests: delivery end to end, one session per host, real peers, the modes.

  test_smtpc_delivery.py SMTPD SMTPC [CASE...]

swaks -> smtpd (--relay-net 127.0.0.0/8) -> queue -> smtpc (--route
remote.test=127.0.0.1:PORT) -> the recording server (recording_server.py), or
Postfix's smtp-sink. What arrives must be what swaks sent, byte for byte, below
smtpd's Received: header; the queue must be empty afterwards. Many messages for one
host, of one domain or of several routed there, travel in one connection
(apps/smtpc/job.hpp: one socket per host). --list, --once and --check-config
(exit 78 naming file:line: key) are checked as a user sees them.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile

import smtpc_harness as ch
import smtpd_harness as h
from recording_server import RecordingServer
from smtpc_harness import RELAY, Smtpc, check, inject, inject_many, message, strip_received, wait_queue_empty
from smtpd_harness import Smtpd


def first_difference(got, want):
    """Where two byte strings part, for a failure message."""
    i = next((n for n, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return "at offset %d (of %d got, %d wanted): got %r, wanted %r" % (
        i, len(got), len(want), got[max(0, i - 40):i + 40], want[max(0, i - 40):i + 40])


def route(srv, *domains):
    out = []
    for d in domains or ("remote.test",):
        out += ["--route", "%s=%s" % (d, srv.address)]
    return out


# What swaks is told to send: a leading dot (dot-stuffed twice on the way), a line of
# 998 octets, a header that looks like a trace field further down, blank lines, a
# final line without text. swaks sends the --data file as it is, then CRLF.CRLF: so
# the file has no line end after its last line, and what swaks sends has one.
SWAKS_DATA = (b"From: Alice <alice@test.local>\r\n"
                 b"To: Bob <bob@remote.test>\r\n"
                 b"Subject: end to end\r\n"
                 b"Message-ID: <e2e.1@test.local>\r\n"
                 b"X-Trace: Received: from nowhere\r\n"
                 b"\r\n"
                 b".a line that starts with a dot\r\n"
                 b"..and one with two\r\n"
                 b".\r\n"
                 b"\r\n" + b"x" * 998 + b"\r\n"
                 b"tab\tand trailing space \r\n"
                 b"last line")
SWAKS_CONTENT = SWAKS_DATA + b"\r\n"


def test_a_swaks_message_arrives_byte_exact_below_our_received_header_and_the_queue_empties():
    if shutil.which("swaks") is None:
        raise h.Skip("swaks is not installed")
    with Smtpd(RELAY) as d, RecordingServer() as srv, Smtpc(d, route(srv)) as c:
        with tempfile.NamedTemporaryFile(prefix="smtpc-systest-", suffix=".eml") as f:
            f.write(SWAKS_DATA)
            f.flush()
            status, out, err = h.run_bounded(
                ["swaks", "--server", "127.0.0.1", "--port", str(d.port), "--helo", "client.example",
                 "--from", "alice@test.local", "--to", "bob@remote.test", "--data", "@" + f.name], 30)
        check(status == 0, "swaks exited %d: %s %s" % (status, out[-2000:], err[-2000:]))
        m = srv.wait_messages(1, timeout=20)[0]
        check(m.sender == "alice@test.local" and m.rcpts == ["bob@remote.test"], "envelope at the server: %r" % m)
        received, rest = strip_received(m.data)
        check(rest == SWAKS_CONTENT, "content differs from what swaks sent: %s" % first_difference(rest, SWAKS_CONTENT))
        check(received.count(b"Received: ") == 1, "expected smtpd's one Received: header, got %r" % received)
        rec = h.parse_received(received)
        check(rec.group("helo") == "client.example" and rec.group("addr") == "127.0.0.1"
              and rec.group("by") == "test.local", "Received: %r" % received)
        check(m.data == received + SWAKS_CONTENT, "not trace + content")
        wait_queue_empty(d, c=c)
        # The client side of that session, as Postfix logs it, and smtpc's EHLO name.
        c.wait_log(r": to=<bob@remote\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, delay=[\d.]+, attempts=1, "
                   r"status=sent \(250 " % srv.port)
        c.wait_log(r": removed")
        check(srv.connections()[0].helo == "smtpc.test", "EHLO name %r" % srv.connections()[0].helo)
        check(srv.connection_count() == 1, "%d connections" % srv.connection_count())


def test_200_messages_to_one_domain_travel_in_one_connection():
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        sent = [message("bulk %d" % i, body="message %d" % i) for i in range(200)]
        inject_many(d, [("alice@test.local", ["bob@remote.test"], m) for m in sent])
        check(len(d.queue_ids()) == 200, "queued: %d" % len(d.queue_ids()))
        with Smtpc(d, route(srv) + ["--idle-timeout", "10s"]) as c:
            got = srv.wait_messages(200, timeout=60)
            wait_queue_empty(d, c=c)
        check(len(got) == 200, "%d messages arrived" % len(got))
        check(srv.connection_count() == 1, "%d connections for 200 messages to one host: %s"
              % (srv.connection_count(), [(x.number, x.opened) for x in srv.connections()]))
        ids = [x.header("Message-ID") for x in got]
        check(len(set(ids)) == 200, "%d distinct Message-IDs of 200" % len(set(ids)))
        check({strip_received(x.data)[1] for x in got} == set(sent), "contents differ from what was sent")
        check(len(srv.rcpt_log()) == 200, "%d RCPTs for 200 messages" % len(srv.rcpt_log()))


def test_five_domains_routed_to_one_host_share_one_connection():
    domains = ["d%d.test" % i for i in range(1, 6)]
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        batch = [("alice@test.local", ["u%d@%s" % (n, dom)], message("to %s %d" % (dom, n)))
                 for dom in domains for n in range(4)]
        # And one message for a recipient in every domain.
        batch.append(("alice@test.local", ["all@%s" % dom for dom in domains], message("to all five")))
        inject_many(d, batch)
        with Smtpc(d, route(srv, *domains) + ["--idle-timeout", "10s"]) as c:
            srv.wait(lambda s: sum(len(m.rcpts) for m in s.accepted()) >= 25, 30, "25 recipients delivered")
            wait_queue_empty(d, c=c)
        check(srv.connection_count() == 1, "%d connections for 5 domains on one host" % srv.connection_count())
        got = sorted(r for m in srv.accepted() for r in m.rcpts)
        want = sorted(r for _, rs, _ in batch for r in rs)
        check(got == want, "recipients delivered: %s" % got)


def test_postfix_smtp_sink_accepts_a_whole_batch():
    sink = "/usr/sbin/smtp-sink"
    if not os.access(sink, os.X_OK):
        raise h.Skip("no %s" % sink)
    count = 40
    with Smtpd(RELAY) as d:
        inject_many(d, [("alice@test.local", ["r%d@remote.test" % i], message("to the sink %d" % i))
                        for i in range(count)])
        out_path = os.path.join(d.dir, "sink.out")
        for _ in range(3):
            port = h.free_port()
            argv = [sink, "-c"] + (["-u", "nobody"] if h.is_root() else []) + ["127.0.0.1:%d" % port, "100"]
            with open(out_path, "wb") as out:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                        start_new_session=True)

            def listening():
                if proc.poll() is not None:
                    return "exited"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return "up"
                except OSError:
                    return None
            if h.wait_for(listening, 10, "smtp-sink to listen") == "up":
                break
        try:
            check(proc.poll() is None, "smtp-sink did not start: %s" % h._read_text(out_path))
            with Smtpc(d, ["--route", "remote.test=127.0.0.1:%d" % port]) as c:
                wait_queue_empty(d, timeout=60, c=c)

                def counted():
                    # "sess=N quit=N mesg=N", rewritten in place with CR.
                    counters = re.findall(r"mesg=(\d+)", h._read_text(out_path))
                    return counters and int(counters[-1]) >= count
                h.wait_for(counted, 10, "smtp-sink to count %d messages" % count)
            check(not re.search(r"status=(deferred|bounced)", c.log()), "a message was not accepted: %s" % c.log())
            last = re.findall(r"sess=(\d+) quit=(\d+) mesg=(\d+)", h._read_text(out_path))[-1]
            check(int(last[2]) == count, "smtp-sink counted %s messages, %d sent" % (last[2], count))
            # sess counts sessions as they open; one of them was our readiness probe.
            check(int(last[0]) - 1 == 1, "smtp-sink saw %d sessions of smtpc for one host" % (int(last[0]) - 1))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)


def test_list_shows_the_queue_and_once_delivers_what_is_due_then_exits_0():
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        inject(d, "alice@test.local", ["bob@remote.test"], message("listed"))
        inject(d, "carol@test.local", ["dave@remote.test"], message("deferred"))
        ids = d.queue_ids()
        check(len(ids) == 2, "queue: %s" % ids)
        c = Smtpc(d, route(srv))
        try:
            status, out, err = c.run(["--list"], timeout=20)
            check(status == 0, "--list exited %d: %s" % (status, err))
            for qid, sender, rcpt in ((ids[0], "alice@test.local", "bob@remote.test"),
                                      (ids[1], "carol@test.local", "dave@remote.test")):
                check(re.search(r"(?m)^%s [0-9a-f]{12} \d+ \S+ <%s> next=due attempts=0$" % (qid, re.escape(sender)),
                                out), "--list lacks %s from <%s>: %r" % (qid, sender, out))
                check(re.search(r"(?m)^\s+<%s> pending$" % re.escape(rcpt), out),
                      "--list lacks recipient <%s>: %r" % (rcpt, out))
            # --once: one attempt at what is due, then exit 0; the 451 stays queued.
            srv.on_rcpt("dave@remote.test", "451 4.3.0 Not now")
            status, out, err = c.run(["--once", "--retry-min", "1h"], timeout=60)
            check(status == 0, "--once exited %d: %s %s" % (status, err[-2000:], c.log()[-2000:]))
            got = srv.accepted()
            check(len(got) == 1 and got[0].rcpts == ["bob@remote.test"], "delivered: %s" % got)
            check(d.queue_ids() == [ids[1]], "queue after --once: %s" % d.queue_ids())
            fields, rcpts = d.envelope(ids[1])
            check(fields["attempts"] == "1" and fields["last-error"].startswith("451 4.3.0 Not now"),
                  "envelope after the deferral: %r" % fields)
            check(rcpts[0]["state"] == "pending" and rcpts[0]["error"].startswith("451"), "rcpt: %r" % rcpts)
            # Nothing is due now: a second --once delivers nothing and exits 0 at once.
            status, out, err = c.run(["--once", "--retry-min", "1h"], timeout=30)
            check(status == 0 and len(srv.accepted()) == 1 and d.queue_ids() == [ids[1]],
                  "second --once: status %d, %d delivered, queue %s" % (status, len(srv.accepted()), d.queue_ids()))
            status, out, err = c.run(["--list"], timeout=20)
            check(status == 0 and re.search(r"<carol@test\.local> next=\+\S+ attempts=1 error=451 4\.3\.0 Not now",
                                            out), "--list after the deferral: %r" % out)
            check(ids[0] not in out, "--list shows the delivered message: %r" % out)
        finally:
            c._cleanup()


def test_check_config_accepts_a_valid_file_and_refuses_bad_ones_with_78_naming_file_line_key():
    with Smtpd(RELAY) as d:
        c = Smtpc(d)
        try:
            cfg = os.path.join(c.dir, "smtpc.cfg")

            def checked(text):
                with open(cfg, "w") as f:
                    f.write(text)
                return h.run_bounded([ch.SMTPC, "--config", cfg, "--check-config"], 20)
            status, out, err = checked('threads = 3;\nroute = ["remote.test=127.0.0.1:2525"];\n'
                                       'retry_min = "30s";\nidle_timeout = 5;\nlocal_domain = ["test.local"];\n')
            check(status == 0 and "configuration valid" in out, "valid config: %d %r %r" % (status, out, err))
            bad = [
                ('threads = 3;\nbogus_key = 1;\n', r"smtpc\.cfg:2: bogus_key"),
                ('# comment\n\nthreads = 0;\n', r"smtpc\.cfg:3: threads"),
                ('retry_min = "5 fortnights";\n', r"smtpc\.cfg:1: retry_min"),
                ('queue_lifetime = -1;\n', r"smtpc\.cfg:1: queue_lifetime"),
                ('port = 70000;\n', r"smtpc\.cfg:1: port"),
                ('threads = 2;\nroute = "remote.test=127.0.0.1";\nsmarthost = 5;\n',
                 r"smtpc\.cfg:2: route: .*\n.*smtpc\.cfg:3: smarthost: "),  # every error, not just the first
                ('threads = 2;\nroute = ["nonsense"];\n', r"smtpc\.cfg:2: route: .*nonsense"),
                ('route = ["remote.test=127.0.0.1:99999"];\n', r"smtpc\.cfg:1: route: "),
                ('dns_server = "not-an-ip";\n', r"smtpc\.cfg:1: dns_server: "),
                ('threads = 2;\nretry_max = = 5;\n', r"smtpc\.cfg:2"),  # a syntax error: still file:line
            ]
            for text, want in bad:
                status, out, err = checked(text)
                check(status == 78, "config %r: exit %d, expected 78; %r" % (text, status, err))
                check(re.search(want, err), "config %r: stderr %r does not match /%s/" % (text, err, want))
            # A bad option on the command line is 78 too.
            status, out, err = h.run_bounded([ch.SMTPC, "--config", "/nonexistent/smtpc.cfg", "--check-config"], 20)
            check(status == 78 and "/nonexistent/smtpc.cfg" in err, "missing config file: %d %r" % (status, err))
            status, out, err = h.run_bounded([ch.SMTPC, "--retry-min", "0", "--check-config"], 20)
            check(status == 78 and "retry" in err, "--retry-min 0: %d %r" % (status, err))
        finally:
            c._cleanup()


if __name__ == "__main__":
    ch.main([
        test_a_swaks_message_arrives_byte_exact_below_our_received_header_and_the_queue_empties,
        test_200_messages_to_one_domain_travel_in_one_connection,
        test_five_domains_routed_to_one_host_share_one_connection,
        test_postfix_smtp_sink_accepts_a_whole_batch,
        test_list_shows_the_queue_and_once_delivers_what_is_due_then_exits_0,
        test_check_config_accepts_a_valid_file_and_refuses_bad_ones_with_78_naming_file_line_key,
    ])
