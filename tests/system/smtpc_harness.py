"""The harness of smtpc's system tests: smtpd fills a queue, smtpc empties it towards
a recording server (recording_server.py), smtp-sink or a dnsmasq-routed peer.

A test script imports this module, writes its cases as functions taking no argument,
and ends with `smtpc_harness.main([case, ...])`. main() takes the smtpd binary from
argv[1] and the smtpc binary from argv[2] (meson passes both); argv[3:] may name
cases. The runner is smtpd_harness.main(): PASS/FAIL/SKIP per case, a time bound per
case, exit status 1 if any case failed.

    with Smtpd(RELAY) as d, RecordingServer() as srv:
        inject(d, "alice@test.local", ["bob@remote.test"], content)   # smtplib -> smtpd -> queue
        with Smtpc(d, ["--route", "remote.test=" + srv.address]) as c:
            srv.wait_messages(1)
            wait_queue_empty(d)

Invariants:
 - smtpc shares smtpd's queue root and mail root (bounces to local senders land in
   smtpd's Maildirs); its log, stdout and stderr go to a temp dir of its own.
 - smtpc never asks the machine's resolver: unless a case passes --dns-server, it gets
   a UDP port on 127.0.0.1 where nothing listens. Every route used is static or comes
   from the private dnsmasq of smtpd_harness.
 - Nothing waits by sleeping: smtpc is awaited by polling its log for the scheduler's
   start line, deliveries by the recording server's condition or by polling the queue
   directory; every wait has a bound.
 - On exit smtpc gets SIGTERM and must exit 0 within a bound (unless it was killed on
   purpose); its log process must be gone too. Anything left is killed by pid.

Standard library only (TlsPeer also needs python3-aiosmtpd, imported when one starts);
Python 3.9 or newer (Debian's /usr/bin/python3).
"""

import contextlib
import datetime
import itertools
import logging
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import tempfile
import threading

import smtpd_harness as h
from smtpd_harness import check, wait_for

SMTPC = None  # the daemon binary, set by main() from argv[2]

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0

# smtpd relays for every loopback client; its hostname and local domain are the
# harness's test.local, which smtpc takes as local too (bounces into Maildirs).
RELAY = ["--relay-net", "127.0.0.0/8"]
LOCAL = "test.local"

LOG_LINE = re.compile(r"^(\S+) ([^\s\[]+)\[(\d+)\]: (\w+): (.*)$")


def log_time(stamp):
    """Seconds since the epoch of a log line's timestamp (2026-11-22T09:24:43.503433Z)."""
    when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return when.replace(tzinfo=datetime.timezone.utc).timestamp()


class Smtpc:
    """One smtpc under test, on the queue and mail root of Smtpd `d`. A context
    manager: starts on enter (and waits for the scheduler to run), stops on exit.

    args: extra command-line arguments after the harness's own (--queue-root,
    --mail-root, --log-file, --hostname smtpc.test, --local-domain test.local,
    --dns-server <a dead port>); an extra --hostname, --local-domain or --dns-server
    replaces the harness's default. wrapper: argv prefix (valgrind)."""

    def __init__(self, d, args=(), wrapper=(), binary=None, start_timeout=START_TIMEOUT,
                 stop_timeout=STOP_TIMEOUT, env=None):
        self.d = d
        self.args = list(args)
        self.wrapper = list(wrapper)
        self.binary = binary or SMTPC
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.env = env
        self.dir = tempfile.mkdtemp(prefix="smtpc-systest-")
        self.log_path = os.path.join(self.dir, "smtpc.log")
        self.stdout_path = os.path.join(self.dir, "stdout")
        self.stderr_path = os.path.join(self.dir, "stderr")
        self.dead_dns = "127.0.0.1:%d" % h.free_port(udp_too=True)
        self.proc = None
        self.status = None
        self.killed = False
        self.children = {}  # pid -> starttime, to check none outlives smtpc
        self._saved = None  # (log, stdout, stderr) once the temp dir is gone

    def argv(self, extra=()):
        args = self.args + list(extra)
        argv = self.wrapper + [self.binary, "--queue-root", self.d.queue, "--mail-root", self.d.mail,
                               "--log-file", self.log_path]
        if "--hostname" not in args:
            argv += ["--hostname", "smtpc.test"]
        if "--local-domain" not in args:
            argv += ["--local-domain", LOCAL]
        if "--dns-server" not in args:
            argv += ["--dns-server", self.dead_dns]
        return argv + args

    # -- lifecycle ----------------------------------------------------------------

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self._cleanup()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.stop()
        except AssertionError as e:
            if exc_type is None:
                self._cleanup()
                raise
            print("also at the stop of smtpc: %s" % e, flush=True)
        finally:
            self._cleanup()
        return False

    def start(self, extra=()):
        """Starts smtpc (again, after a kill) and waits until its scheduler runs."""
        check(self.proc is None or self.proc.poll() is not None, "smtpc already runs")
        self.killed = False
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(self.argv(extra), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         cwd=self.dir, start_new_session=True, env=self.env)
        starts = len(re.findall(r"scheduler started", self.log()))

        def started():
            if self.proc.poll() is not None:
                raise AssertionError("smtpc exited with %s at the start; stderr: %s; log: %s"
                                     % (self.proc.returncode, self.stderr()[-2000:], self.log()[-2000:]))
            self.remember_children()
            return len(re.findall(r"scheduler started", self.log())) > starts
        wait_for(started, self.start_timeout, "smtpc's scheduler to start")
        return self

    def run(self, extra=(), timeout=60.0):
        """Runs smtpc to its end (--once, --list, --check-config...): (status, stdout,
        stderr), bounded."""
        return h.run_bounded(self.argv(extra), timeout, cwd=self.dir, env=self.env)

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None and h.alive(self.proc.pid)

    def remember_children(self):
        if self.proc is None:
            return
        for pid in h.children_of(self.proc.pid):
            st = h._stat(pid)
            if st:
                self.children[pid] = st[2]

    def kill(self):
        """SIGKILL to smtpc and its process group (a crash)."""
        self.remember_children()
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for p, t in self.children.items():
            if h.alive(p, t):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)

    def stop(self, expect_status=0):
        """SIGTERM, a bounded wait, then: exit status as expected, no child left."""
        if self.proc is None or self.killed:
            return self.status
        problems = []
        if self.proc.poll() is None:
            self.remember_children()
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                problems.append("smtpc did not exit within %.0f s of SIGTERM" % self.stop_timeout)
                self.kill()
        self.status = self.proc.returncode
        if self.status != expect_status and not problems:
            problems.append("smtpc exited with status %s, expected %s" % (self.status, expect_status))
        problems += h.leftover_children(self.children, "smtpc")
        if problems:
            raise AssertionError("; ".join(problems) + "; stderr: %s; log tail: %s"
                                 % (self.stderr()[-2000:], self.log()[-3000:]))
        return self.status

    def wait_exit(self, timeout):
        """Waits (bounded) for smtpc to exit by itself (--once); returns its status."""
        try:
            self.status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("smtpc did not exit within %.0f s; log: %s" % (timeout, self.log()[-3000:]))
        return self.status

    def _cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        # The log stays readable after the exit (cases check it last).
        self._saved = (self.log(), self.stdout(), self.stderr())
        if os.environ.get("SMTPD_KEEP"):
            print("kept %s" % self.dir, flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- output and log -----------------------------------------------------------

    def log(self):
        return self._saved[0] if self._saved else h._read_text(self.log_path)

    def stdout(self):
        return self._saved[1] if self._saved else h._read_text(self.stdout_path)

    def stderr(self):
        return self._saved[2] if self._saved else h._read_text(self.stderr_path)

    def log_lines(self, pattern=None):
        """(time, pid, level, text) per log line, those whose text matches `pattern`
        (regex, search) when given."""
        rx = re.compile(pattern) if pattern else None
        out = []
        for line in self.log().splitlines():
            m = LOG_LINE.match(line)
            if not m:
                continue
            if rx is None or rx.search(m.group(5)):
                out.append((log_time(m.group(1)), int(m.group(3)), m.group(4), m.group(5)))
        return out

    def wait_log(self, pattern, timeout=20.0, count=1):
        """Waits until `count` log lines match the regex; returns the matches."""
        return h.wait_log_lines(self.log, pattern, timeout, count, "smtpc log")

    def rss_kb(self):
        """smtpc's resident set size (VmRSS) in KiB."""
        return int(h.proc_status(self.proc.pid)["VmRSS"].split()[0])


# ---------------------------------------------------------------- a TLS peer: aiosmtpd


class TlsPeer:
    """aiosmtpd (python3-aiosmtpd) on 127.0.0.1 and a free port, offering STARTTLS
    when `cert` (PEM) and `key` are given. A context manager; a case is skipped
    without aiosmtpd.

    Records per transaction a dict: sender, rcpts, tls (the TLS version, None in
    plaintext), cipher, data; counts STARTTLS commands and connections."""

    def __init__(self, cert=None, key=None):
        self.cert = cert
        self.key = key
        self.lock = threading.Lock()
        self.records = []      # dicts: sender, rcpts, tls (version or None), cipher, data
        self.starttls = 0      # STARTTLS commands received
        self.connections = 0
        self.controller = None
        self.port = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def __enter__(self):
        try:
            from aiosmtpd.controller import Controller
            from aiosmtpd.smtp import SMTP
        except ImportError:
            raise h.Skip("python3-aiosmtpd is not installed")
        # aiosmtpd logs every failed handshake with a traceback: expected in the
        # cases that fail them on purpose, noise in the output.
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)

        peer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                tls = session.ssl.get("ssl_object") if session.ssl else None
                with peer.lock:
                    peer.records.append({
                        "sender": envelope.mail_from, "rcpts": list(envelope.rcpt_tos),
                        "tls": tls.version() if tls else None, "cipher": tls.cipher()[0] if tls else None,
                        "data": envelope.original_content,
                    })
                return "250 2.0.0 Ok"

        class CountingSMTP(SMTP):
            def connection_made(self, transport):
                if self.transport is None:  # not the second call, after STARTTLS
                    with peer.lock:
                        peer.connections += 1
                super().connection_made(transport)

            async def smtp_STARTTLS(self, arg):
                with peer.lock:
                    peer.starttls += 1
                await super().smtp_STARTTLS(arg)

        class PeerController(Controller):
            def factory(self):
                return CountingSMTP(self.handler, **self.SMTP_kwargs)

        context = None
        if self.cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.cert, self.key)
        last = None
        for _ in range(5):  # a port taken between free_port() and bind() is retried
            self.port = h.free_port()
            # server_hostname: aiosmtpd would otherwise ask the resolver (getfqdn).
            self.controller = PeerController(Handler(), hostname="127.0.0.1", port=self.port,
                                             tls_context=context, server_hostname="peer.tls.test",
                                             ready_timeout=10.0)
            try:
                self.controller.start()
                # Its readiness probe counted as a connection.
                with self.lock:
                    self.connections = 0
                return self
            except (OSError, RuntimeError) as e:
                last = e
                with contextlib.suppress(Exception):
                    self.controller.stop()
        raise AssertionError("aiosmtpd did not start: %s" % last)

    def __exit__(self, *exc):
        if self.controller is not None:
            with contextlib.suppress(Exception):
                self.controller.stop()
        return False

    def messages(self):
        with self.lock:
            return list(self.records)

    def wait_messages(self, count, timeout=30.0):
        return h.wait_for(lambda: len(self.messages()) >= count and self.messages(), timeout,
                          "%d messages at aiosmtpd" % count)


# ---------------------------------------------------------------- the queue, via smtpd


def inject(d, sender, rcpts, content, smtp=None, mail_options=(), rcpt_options=()):
    """Sends one message through smtpd (smtplib; a new session unless `smtp` is given)
    and checks that every recipient was accepted. content: bytes with CRLF lines."""
    own = smtp is None
    s = smtp or d.smtp()
    try:
        refused = s.sendmail(sender, rcpts, content, mail_options=list(mail_options),
                             rcpt_options=list(rcpt_options))
        check(not refused, "smtpd refused %r" % refused)
    finally:
        if own:
            s.quit()


def inject_many(d, messages, per_session=100):
    """Sends (sender, rcpts, content) tuples through smtpd, `per_session` per session."""
    s = None
    try:
        for i, (sender, rcpts, content) in enumerate(messages):
            if i % per_session == 0:
                if s is not None:
                    s.quit()
                s = d.smtp()
            inject(d, sender, rcpts, content, smtp=s)
    finally:
        if s is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                s.quit()


def message(subject, body="hello", message_id=None, extra=""):
    """A small RFC 5322 message (bytes, CRLF lines) with a unique Message-ID."""
    mid = message_id or "<%s.%d.%d@test.local>" % (re.sub(r"\W", "", subject)[:40], os.getpid(), next(_counter))
    return ("From: alice@test.local\r\nTo: someone@remote.test\r\nSubject: %s\r\nMessage-ID: %s\r\n%s\r\n%s\r\n"
            % (subject, mid, extra, body)).encode("utf-8")


_counter = itertools.count(1)


def wait_queue_empty(d, timeout=30.0, c=None, orphans=0):
    """Waits until the queue has no envelope and no content file left. `orphans`:
    how many content files without an envelope may stay. A kill -9 during a removal
    leaves the contents of the messages whose envelopes are already gone (envelopes
    go first, so no envelope ever lacks its content), and recover() at start spares
    content younger than its grace, which a concurrent smtpd may be committing."""
    def empty():
        return not d.queue_ids() and len(os.listdir(os.path.join(d.queue, "content"))) <= orphans
    try:
        wait_for(empty, timeout, "the queue to empty")
    except AssertionError as e:
        raise AssertionError("%s; queue: %s; smtpc log: %s" % (e, d.queue_ids()[:5], c.log()[-3000:] if c else ""))


def wait_queued(d, count, timeout=20.0):
    return wait_for(lambda: len(d.queue_ids()) >= count and d.queue_ids(), timeout, "%d queued messages" % count)


def strip_received(data):
    """(our Received: headers, the rest) of a delivered message: the leading
    Received: fields (with folded lines) are split off."""
    head = b""
    while data.startswith(b"Received: "):
        end = data.index(b"\r\n") + 2
        while data[end:end + 1] in (b"\t", b" "):
            end = data.index(b"\r\n", end) + 2
        head, data = head + data[:end], data[end:]
    return head, data


def dsns(d, mailbox):
    """The messages in mail/<mailbox>/new, parsed with the email package."""
    import email
    import email.policy
    out = []
    for path in d.new(mailbox):
        with open(path, "rb") as f:
            out.append(email.message_from_binary_file(f, policy=email.policy.compat32))
    return out


def dsn_report(msg):
    """(the text part, [per-recipient field dicts], the third part or None) of a DSN,
    after checking its structure: multipart/report; report-type=delivery-status."""
    check(msg.get_content_type() == "multipart/report", "DSN is %s" % msg.get_content_type())
    check(msg.get_param("report-type") == "delivery-status", "report-type %r" % msg.get_param("report-type"))
    parts = msg.get_payload()
    check(len(parts) in (2, 3), "DSN has %d parts" % len(parts))
    check(parts[0].get_content_type() == "text/plain", "first part %s" % parts[0].get_content_type())
    check(parts[1].get_content_type() == "message/delivery-status", "second part %s" % parts[1].get_content_type())
    # The email package parses message/delivery-status as a list of header blocks:
    # the per-message fields, then one block per recipient.
    blocks = parts[1].get_payload()
    check(len(blocks) >= 2, "delivery-status has %d blocks" % len(blocks))
    check(blocks[0].get("Reporting-MTA") is not None, "no Reporting-MTA: %s" % blocks[0])
    recipients = [dict((k, v.strip()) for k, v in b.items()) for b in blocks[1:]]
    return parts[0].get_payload(decode=True), recipients, parts[2] if len(parts) == 3 else None


def wait_dsn(d, mailbox, count=1, timeout=30.0):
    return wait_for(lambda: len(d.new(mailbox)) >= count and d.new(mailbox), timeout,
                    "%d DSN(s) in %s/new" % (count, mailbox))


# ---------------------------------------------------------------- runner


def main(cases, case_timeout=h.CASE_TIMEOUT):
    """Runs the cases: argv[1] smtpd, argv[2] smtpc, argv[3:] case names."""
    global SMTPC
    if len(sys.argv) < 3:
        print("usage: %s SMTPD SMTPC [CASE...]" % sys.argv[0])
        sys.exit(2)
    SMTPC = os.path.abspath(sys.argv[2])
    if not os.access(SMTPC, os.X_OK):
        print("FAIL: %s is not an executable" % SMTPC)
        sys.exit(1)
    del sys.argv[2]
    h.main(cases, case_timeout)
