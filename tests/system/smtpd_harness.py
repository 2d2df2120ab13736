"""The harness of smtpd's system tests: the real daemon, real peers, bounded waits.

A test script imports this module, writes its cases as functions taking no argument,
and ends with `smtpd_harness.main([case, ...])`. main() reads the smtpd binary from
argv[1] (meson passes it), runs every case (or those named in argv[2:]) with a time
bound each, prints PASS/FAIL/SKIP per case and a closing "N passed, N failed,
N skipped" line, and exits 1 if any case failed.

    with Smtpd(["--max-message-size", "100k"]) as d:     # one daemon, one temp dir
        c = d.client()                                    # raw SMTP over a socket
        c.expect_greeting()
        c.expect("EHLO client.example", 250)
        d.new("alice")                                     # mail/alice/new/* paths

Invariants:
 - Every daemon runs in a temp dir of its own (mail/, queue/, log/smtpd.log, stdout,
   stderr) on a port picked free just before it starts (bound on 127.0.0.1, and on
   ::1 when asked, then closed), in a process group of its own; a start that fails
   because the port was taken meanwhile is retried on another port.
 - Nothing waits by sleeping: the daemon is awaited by retrying connect() (and
   reading its greeting), files and log lines by polling a condition; every wait has
   a bound.
 - On exit the daemon gets SIGTERM and must exit with status 0 within a bound; its
   children (log process, workers) must be gone too. Anything still running then is
   killed by pid (ours only), and the temp dir is removed (SMTPD_KEEP=1 keeps it).
 - Tests talk only to 127.0.0.0/8 and ::1. The dnsmasq fixture answers from its own
   records only: no upstream server, no /etc/hosts, no resolv.conf.

STARTTLS: Client.starttls(tls_client_context(ca)) runs the handshake after the 220
(the name checked), peer_certificate_sha256() and certificate_sha256(pem) compare
certificates, parse_received_tls() checks a Received: field with the TLS comment.

Standard library only; Python 3.9 or newer (Debian's /usr/bin/python3).
"""

import contextlib
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRANSCRIPT_DIR = os.path.join(SOURCE_ROOT, "tests", "transcripts")

SMTPD = None  # the daemon binary, set by main() from argv[1]

START_TIMEOUT = 20.0  # seconds for the daemon to answer its first connection
STOP_TIMEOUT = 20.0  # seconds for SIGTERM to end it (shutdown_grace defaults to 5 s)
REPLY_TIMEOUT = 15.0  # seconds for one SMTP reply
CASE_TIMEOUT = 120  # seconds for one test case, all included


class Skip(Exception):
    """Raised by a case that cannot run here (not root, no tool); printed as SKIP."""


class CaseTimeout(Exception):
    """Raised in a case that ran past its time bound."""


class ConfigRefused(AssertionError):
    """The daemon refused its configuration at the start (exit status 78)."""

    def __init__(self, message, stderr):
        super().__init__(message)
        self.stderr = stderr


class ConnectionClosed(Exception):
    """The peer closed (or reset) the connection before a complete reply."""

    def __init__(self, message, partial=b""):
        super().__init__(message)
        self.partial = partial


def check(condition, message):
    """Fails the case with `message` unless `condition`."""
    if not condition:
        raise AssertionError(message)


def wait_for(predicate, timeout, what, interval=0.02):
    """Polls predicate() until it returns a true value, which is returned; fails
    naming `what` after `timeout` seconds. The interval grows to 0.2 s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def wait_log_lines(read_log, pattern, timeout, count=1, name="log"):
    """Waits until `count` lines of read_log() match the regex; returns the matches.
    On timeout the assertion carries the log's tail."""
    rx = re.compile(pattern)

    def found():
        ms = [m for m in (rx.search(line) for line in read_log().splitlines()) if m]
        return ms if len(ms) >= count else None
    try:
        return wait_for(found, timeout, "%s line /%s/ (x%d)" % (name, pattern, count))
    except AssertionError as e:
        raise AssertionError("%s; log: %s" % (e, read_log()[-4000:]))


def note(text):
    """A line for the test log that is neither a pass nor a failure."""
    print("NOTE: " + text, flush=True)


# ---------------------------------------------------------------- ports and limits


def free_port(ipv6=False, udp_too=False):
    """A TCP port free on 127.0.0.1 (and on ::1 with ipv6, and for UDP with udp_too)
    right now: bound with port 0, then closed. The caller binds it soon after."""
    for _ in range(100):
        held = []
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if ipv6:
                s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                held.append(s6)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s6.bind(("::1", port))
            if udp_too:
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(u)
                u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            for h in held:
                h.close()
    raise AssertionError("no free port found")


def raise_nofile(wanted):
    """Raises this process's RLIMIT_NOFILE soft limit to `wanted` (up to the hard
    limit, or beyond it when root may). Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard == resource.RLIM_INFINITY or hard >= wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    else:
        try:  # only root may raise the hard limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------- processes


def _stat(pid):
    """(state, ppid, starttime) of pid from /proc/<pid>/stat, or None if gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def children_of(pid):
    """The live (non-zombie) children of pid, sorted."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = _stat(int(name))
        if st and st[1] == pid and st[0] != "Z":
            out.append(int(name))
    return sorted(out)


def alive(pid, starttime=None):
    """True if pid runs (not a zombie) and, when given, started at starttime."""
    st = _stat(pid)
    if st is None or st[0] == "Z":
        return False
    return starttime is None or st[2] == starttime


def leftover_children(children, program):
    """Children (pid -> start time) of `program` still running 5 s after it exited:
    one problem each, and each is SIGKILLed so no test leaves processes behind."""
    deadline = time.monotonic() + 5.0
    while True:
        left = [p for p, t in children.items() if alive(p, t)]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    for p in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    return ["child pid %d of %s still runs after it exited" % (p, program) for p in left]



def proc_status(pid):
    """/proc/<pid>/status as a dict of field -> text."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def socket_inode_of_peer(server_port, client_port):
    """The inode of the server side of the TCP connection 127.0.0.1:client_port ->
    port server_port (or its ::1 twin), from /proc/net/tcp{,6}; None if not found."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, remote, inode = parts[1], parts[2], parts[9]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                return int(inode)
    return None


def pids_holding_socket(inode, candidates):
    """The pids among candidates with a descriptor on socket:[inode]."""
    target = "socket:[%d]" % inode
    out = []
    for pid in candidates:
        fd_dir = "/proc/%d/fd" % pid
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(os.path.join(fd_dir, fd)) == target:
                    out.append(pid)
                    break
            except OSError:
                continue
    return out


def run_bounded(argv, timeout, cwd=None, env=None, input_bytes=None):
    """Runs argv to its end (bounded; on timeout its process group is killed) and
    returns (status, stdout text, stderr text). status is negative for a signal."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(input_bytes, timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError("%s did not end within %.0f s; stdout %r stderr %r"
                             % (" ".join(argv), timeout, out[-2000:], err[-2000:]))
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


# ---------------------------------------------------------------- SMTP replies


REPLY_LINE = re.compile(rb"^(\d{3})([ -]?)(.*)$", re.S)
ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


class Reply:
    """One SMTP reply: its code, its lines' texts (without "250-"), the raw lines."""

    def __init__(self, code, texts, raw):
        self.code = code
        self.texts = texts
        self.raw = raw

    @property
    def status(self):
        """The enhanced status code of the first line ("5.5.1"), or None."""
        m = ENHANCED.match(self.texts[0]) if self.texts else None
        return "%s.%s.%s" % m.groups() if m else None

    @property
    def text(self):
        return "\n".join(self.texts)

    def __repr__(self):
        return repr(b"\r\n".join(self.raw).decode("utf-8", "replace"))


def check_reply(reply, code, status=None, what=""):
    """Fails unless reply has `code` (an int, or a tuple of acceptable ints) and, when
    given, the enhanced status `status`."""
    codes = code if isinstance(code, tuple) else (code,)
    check(reply.code in codes and (status is None or reply.status == status),
          "%sexpected %s%s, got %r" % (what + ": " if what else "", "/".join(map(str, codes)),
                                       " " + status if status else "", reply))
    return reply


# ---------------------------------------------------------------- raw client


class Client:
    """A raw-socket SMTP client: sends exactly the bytes it is given, reads complete
    (multi-line) replies with a timeout, and tells a close from a silence."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=REPLY_TIMEOUT):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        try:
            if source is not None:
                self.sock.bind((source, 0))
            self.sock.settimeout(timeout)
            self.sock.connect((host, port))
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def abort(self):
        """Closes with a RST (SO_LINGER 0): a client that vanishes mid-session."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.close()

    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        """Sends bytes (or text as UTF-8) as they are."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, deadline):
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("no complete reply within %.1f s; got %r" % (self.timeout, self.buf[:500]))
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        except socket.timeout:
            raise socket.timeout("no complete reply within the time bound; got %r" % self.buf[:500])
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def line(self, timeout=None):
        """One reply line without its CRLF. Raises ConnectionClosed at EOF."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while b"\r\n" not in self.buf:
            if not self._fill(deadline):
                raise ConnectionClosed("connection closed; pending bytes %r" % self.buf[:500], self.buf)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self, timeout=None):
        """One complete reply (all its lines)."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        raw, texts, code = [], [], None
        while True:
            line = self.line(max(0.0, deadline - time.monotonic()))
            raw.append(line)
            m = REPLY_LINE.match(line)
            check(m is not None, "malformed reply line %r" % line)
            if code is None:
                code = int(m.group(1))
            check(int(m.group(1)) == code, "reply code changed within a reply: %r" % raw)
            texts.append(m.group(3).decode("utf-8", "replace"))
            if m.group(2) != b"-":
                return Reply(code, texts, raw)

    def expect_greeting(self, code=220, status=None):
        return check_reply(self.reply(), code, status, "greeting")

    def command(self, line, timeout=None):
        """Sends line + CRLF (line as text or bytes) and returns the reply."""
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + b"\r\n")
        return self.reply(timeout)

    def expect(self, line, code, status=None, timeout=None):
        """Sends a command and checks its reply's code and enhanced status."""
        shown = line if isinstance(line, str) else line.decode("latin-1")
        return check_reply(self.command(line, timeout), code, status, shown[:80])

    def hello(self, name="client.example"):
        return self.expect("EHLO " + name, 250)

    def transaction(self, sender, recipients, data):
        """MAIL, RCPT per recipient, DATA, the already encoded data (ending in
        CRLF.CRLF): returns the reply to the final dot. Every RCPT must be 250."""
        self.expect("MAIL FROM:<%s>" % sender, 250)
        for r in recipients:
            self.expect("RCPT TO:<%s>" % r, 250)
        self.expect("DATA", 354)
        self.send(data)
        return self.reply()

    def wait_closed(self, timeout=None):
        """Reads until the peer closes; returns the bytes read meanwhile. Fails if the
        connection stays open past the bound."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while self._fill(deadline):
            pass
        data, self.buf = self.buf, b""
        return data

    def still_open(self, quiet=0.3):
        """True if nothing but silence comes within `quiet` seconds (no EOF, no bytes)."""
        if self.eof or self.buf:
            return False
        self.sock.settimeout(quiet)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return True
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk
        return False

    @classmethod
    def over(cls, sock, timeout=REPLY_TIMEOUT):
        """A Client on a socket already connected (set up as the test needs: a small
        SO_RCVBUF, say); the Client owns it from now on."""
        c = cls.__new__(cls)
        c.sock, c.timeout, c.buf, c.eof = sock, timeout, b"", False
        sock.settimeout(timeout)
        return c

    # -- STARTTLS (RFC 3207) --------------------------------------------------------------

    def starttls(self, context, server_hostname="localhost"):
        """The TLS handshake, after the 220 to STARTTLS was read: the certificate and
        its name are checked as `context` says (tls_client_context). From then on
        every byte goes through TLS. Fails if any byte came after the 220: the
        server must say nothing more in plaintext. Raises ssl.SSLError when the
        handshake fails."""
        check(self.buf == b"", "bytes after the 220 to STARTTLS: %r" % self.buf)
        self.sock.settimeout(self.timeout)
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    def peer_certificate_sha256(self):
        """The SHA-256 of the server's certificate (DER), in TLS."""
        import hashlib
        return hashlib.sha256(self.sock.getpeercert(binary_form=True)).hexdigest()

    def tls_version_and_cipher(self):
        """("TLSv1.3", "TLS_AES_256_GCM_SHA384", 256): what this TLS session uses."""
        name, _, bits = self.sock.cipher()
        return self.sock.version(), name, bits


def tls_client_context(*ca_files):
    """An ssl.SSLContext for a client that trusts only the given CA files (PEM) and
    checks the server's name (PROTOCOL_TLS_CLIENT: CERT_REQUIRED, check_hostname)."""
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ca in ca_files:
        context.load_verify_locations(ca)
    return context


def certificate_sha256(pem_path):
    """The SHA-256 of the first certificate of a PEM file (DER), to compare with
    Client.peer_certificate_sha256()."""
    import hashlib
    import ssl
    with open(pem_path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def dot_encode(content):
    """The DATA form of content made of CRLF lines: dot-stuffed, with the final dot."""
    if content and not content.endswith(b"\r\n"):
        content += b"\r\n"
    stuffed = re.sub(rb"(?m)^\.", b"..", content)
    return stuffed + b".\r\n"


# ---------------------------------------------------------------- messages on disk


def split_trace(raw, return_path=True):
    """Splits a delivered message into (return_path_line, received_header, rest):
    the Return-Path line (when expected), the Received: field with its folded
    continuation lines (CRLF included), and the message as the client sent it."""
    rp = b""
    if return_path:
        check(raw.startswith(b"Return-Path: <"), "message does not start with Return-Path: %r" % raw[:200])
        end = raw.index(b"\r\n") + 2
        rp, raw = raw[:end], raw[end:]
    check(raw.startswith(b"Received: "), "no Received: header where expected: %r" % raw[:200])
    end = raw.index(b"\r\n") + 2
    while raw[end:end + 1] in (b"\t", b" "):
        end = raw.index(b"\r\n", end) + 2
    return rp, raw[:end], raw[end:]


RECEIVED = re.compile(
    r"^Received: from (?P<helo>\S+) \((?:(?P<rdns>[^\s\[\]()]+) )?\[(?P<addr>[^\]]+)\]\)"
    r" by (?P<by>\S+) \(libsmtp\) with (?P<proto>SMTP|ESMTP|UTF8SMTP) id (?P<id>[0-9A-Za-z]+)"
    r"(?: for <(?P<for>[^>]*)>)?; (?P<date>(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4})$")


def parse_received(header):
    """Checks the form of a Received: field (CRLF line ends, folded lines of at most
    78 characters starting with a tab or space) and returns the regex match of its
    unfolded text (groups helo, rdns, addr, by, proto, id, for, date)."""
    check(header.endswith(b"\r\n"), "Received: does not end in CRLF: %r" % header)
    lines = header[:-2].split(b"\r\n")
    for i, line in enumerate(lines):
        check(b"\r" not in line and b"\n" not in line, "bare CR/LF in Received: %r" % header)
        check(len(line) <= 78 or b" " not in line.strip(), "Received: line over 78 characters: %r" % line)
        if i:
            check(line[:1] in (b"\t", b" "), "Received: continuation without WSP: %r" % header)
    text = " ".join(l.strip().decode("utf-8") for l in lines)
    m = RECEIVED.match(text)
    check(m is not None, "Received: header not of the expected form: %r" % text)
    import email.utils
    when = email.utils.parsedate_to_datetime(m.group("date")).timestamp()
    check(abs(when - time.time()) < 600, "Received: date is not now: %r" % m.group("date"))
    return m


RECEIVED_TLS = re.compile(
    r"^Received: from (?P<helo>\S+) \((?:(?P<rdns>[^\s\[\]()]+) )?\[(?P<addr>[^\]]+)\]\)"
    r" \(using (?P<tls>(?P<version>TLSv1(?:\.[0-3])?) with cipher (?P<cipher>[A-Za-z0-9_-]+)"
    r" \((?P<bits>\d+)/(?P<algbits>\d+) bits\))\)"
    r" by (?P<by>\S+) \(libsmtp\) with (?P<proto>ESMTPS|UTF8SMTPS) id (?P<id>[0-9A-Za-z]+)"
    r"(?: for <(?P<for>[^>]*)>)?; (?P<date>(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4})$")


def parse_received_tls(header):
    """As parse_received, for a message received over TLS: Postfix's comment
    "(using TLSv1.3 with cipher ... (256/256 bits))" on a line of its own between the
    From and By clauses, protocol ESMTPS or UTF8SMTPS. Returns the regex match
    (groups of parse_received, and tls, version, cipher, bits, algbits)."""
    check(header.endswith(b"\r\n"), "Received: does not end in CRLF: %r" % header)
    lines = header[:-2].split(b"\r\n")
    for i, line in enumerate(lines):
        check(b"\r" not in line and b"\n" not in line, "bare CR/LF in Received: %r" % header)
        check(len(line) <= 78 or b" " not in line.strip(), "Received: line over 78 characters: %r" % line)
        if i:
            check(line[:1] in (b"\t", b" "), "Received: continuation without WSP: %r" % header)
    check(any(l.strip().startswith(b"(using ") for l in lines[1:]),
          "the TLS comment is not on a line of its own: %r" % header)
    text = " ".join(l.strip().decode("utf-8") for l in lines)
    m = RECEIVED_TLS.match(text)
    check(m is not None, "Received: header not of the expected TLS form: %r" % text)
    return m


def xtext_decode(value):
    """RFC 3461 xtext: +XX escapes to bytes, as the queue's envelope writes them."""
    return re.sub(r"\+([0-9A-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def parse_envelope(text):
    """A queue envelope (doc/queue-format.md) as (fields dict, list of rcpt dicts)."""
    lines = text.split("\n")
    check(lines[0] == "queue-envelope 1", "envelope version line: %r" % lines[0])
    check(text.endswith("end\n"), "envelope does not end with 'end': %r" % text[-50:])
    fields, rcpts = {}, []
    for line in lines[1:]:
        if line in ("end", ""):
            continue
        key, _, value = line.partition(" ")
        if key == "rcpt":
            r = {}
            for part in value.split(" "):
                k, _, v = part.partition("=")
                r[k] = xtext_decode(v)
            rcpts.append(r)
        else:
            fields[key] = xtext_decode(value)
    return fields, rcpts


# ---------------------------------------------------------------- the daemon


LOG_LINE = re.compile(r"^(\S+) ([^\s\[]+)\[(\d+)\]: (\w+): (.*)$")


class Smtpd:
    """One smtpd under test. A context manager: starts on enter, stops on exit.

    args: extra command-line arguments, after the harness's own (--port, --bind,
    --mail-root, --queue-root, --log-file, --no-rdns, --hostname test.local,
    --local-domain test.local); an extra --hostname, --local-domain, --rdns or
    --bind replaces the harness's default for it.
    ipv6: also bind ::1.  identity=False: no --hostname and --local-domain (a config
    file sets them).  prepare(d): called after the dirs exist, before the start.
    wrapper: argv prefix (valgrind).  probe_greeting: wait for a 220 greeting, not
    only a connection.  expect_status: the exit status required at the stop."""

    def __init__(self, args=(), ipv6=False, prepare=None, wrapper=(), probe_greeting=True,
                 start_timeout=START_TIMEOUT, stop_timeout=STOP_TIMEOUT, expect_status=0, binary=None,
                 identity=True):
        self.args = list(args)
        self.identity = identity
        self.ipv6 = ipv6
        self.prepare = prepare
        self.wrapper = list(wrapper)
        self.probe_greeting = probe_greeting
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.expect_status = expect_status
        self.binary = binary or SMTPD
        self.dir = tempfile.mkdtemp(prefix="smtpd-systest-")
        self.mail = os.path.join(self.dir, "mail")
        self.queue = os.path.join(self.dir, "queue")
        self.log_dir = os.path.join(self.dir, "log")
        self.log_path = os.path.join(self.log_dir, "smtpd.log")
        self.stdout_path = os.path.join(self.dir, "stdout")
        self.stderr_path = os.path.join(self.dir, "stderr")
        for d in (self.mail, self.queue, self.log_dir):
            os.mkdir(d)
        self.proc = None
        self.port = None
        self.status = None
        self.cleanups = []
        self.seen_children = {}  # pid -> starttime, for the check that none outlives us

    # -- lifecycle ------------------------------------------------------------------

    def argv(self):
        extra = self.args
        argv = self.wrapper + [self.binary, "--port", str(self.port)]
        if "--bind" not in extra:
            argv += ["--bind", "127.0.0.1"] + (["--bind", "::1"] if self.ipv6 else [])
        argv += ["--mail-root", self.mail, "--queue-root", self.queue, "--log-file", self.log_path]
        if "--rdns" not in extra and "--no-rdns" not in extra:
            argv.append("--no-rdns")
        if "--hostname" not in extra and self.identity:
            argv += ["--hostname", "test.local"]
        if "--local-domain" not in extra and self.identity:
            argv += ["--local-domain", "test.local"]
        return argv + extra

    def __enter__(self):
        if self.proc is not None:  # already started by an earlier __enter__()
            return self
        try:
            self.start()
        except BaseException:
            self._cleanup(quiet=True)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self.stop()
        except AssertionError as e:
            if exc_type is None:
                self._cleanup(quiet=True)
                raise
            print("also at the stop: %s" % e, flush=True)
        except BaseException:
            self._cleanup(quiet=True)
            raise
        self._cleanup(quiet=exc_type is None)
        return False

    def on_cleanup(self, fn):
        """fn() runs after the daemon stopped, before the temp dir is removed."""
        self.cleanups.append(fn)

    def start(self):
        if self.prepare:
            self.prepare(self)
        for attempt in range(3):
            self.port = free_port(self.ipv6)
            out = open(self.stdout_path, "ab")
            err = open(self.stderr_path, "ab")
            try:
                self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                             cwd=self.dir, start_new_session=True)
            finally:
                out.close()
                err.close()
            if self._wait_ready():
                self.remember_children()
                return
            # It exited: a port taken between free_port() and bind() is retried.
            if "in use" not in self.stderr() and "in use" not in self.log():
                break
        if self.proc.returncode == 78:
            raise ConfigRefused("smtpd refused its configuration: %s" % self.stderr()[-2000:], self.stderr())
        raise AssertionError("smtpd did not start: %s exited with %s; stderr: %s; log: %s"
                             % (" ".join(self.argv()), self.proc.returncode, self.stderr()[-3000:],
                                self.log()[-3000:]))

    def _wait_ready(self):
        """Retries connect() (and reads the greeting) until the daemon answers; False
        if it exited first. Fails past start_timeout."""
        deadline = time.monotonic() + self.start_timeout
        delay = 0.005
        while True:
            if self.proc.poll() is not None:
                return False
            try:
                host = "127.0.0.1"
                with socket.create_connection((host, self.port), timeout=max(0.1, deadline - time.monotonic())) as s:
                    if not self.probe_greeting:
                        return True
                    s.settimeout(max(0.1, deadline - time.monotonic()))
                    data = b""
                    while b"\r\n" not in data:
                        chunk = s.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                    if re.match(rb"^\d{3}[ -]", data):
                        with contextlib.suppress(OSError):
                            s.sendall(b"QUIT\r\n")
                        return True
            except (ConnectionRefusedError, ConnectionResetError, socket.timeout):
                pass
            if time.monotonic() >= deadline:
                self.kill()
                raise AssertionError("smtpd did not answer on port %d within %.0f s; stderr: %s; log: %s"
                                     % (self.port, self.start_timeout, self.stderr()[-3000:], self.log()[-3000:]))
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        self.remember_children()
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout):
        """Waits (bounded) for the master to exit; returns its status (negative:
        killed by that signal) or None if it still runs."""
        try:
            self.status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.status

    def remember_children(self):
        for pid in children_of(self.proc.pid):
            st = _stat(pid)
            if st:
                self.seen_children[pid] = st[2]

    def stop(self):
        """SIGTERM, a bounded wait, then the checks: exit status as expected, no child
        left running. Kills whatever remains, by pid, before failing."""
        if self.proc is None:
            return
        problems = []
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            if self.wait_exit(self.stop_timeout) is None:
                problems.append("smtpd did not exit within %.0f s of SIGTERM" % self.stop_timeout)
                self.kill()
        self.status = self.proc.returncode
        if self.status != self.expect_status and not problems:
            problems.append("smtpd exited with status %s, expected %s" % (self.status, self.expect_status))
        # The log process and the workers must end with the master.
        problems += leftover_children(self.seen_children, "smtpd")
        if problems:
            raise AssertionError("; ".join(problems) + "; stderr: %s; log tail: %s"
                                 % (self.stderr()[-2000:], self.log()[-3000:]))

    def kill(self):
        """SIGKILL to the master and everything in its process group (ours)."""
        self.remember_children()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for p, t in self.seen_children.items():
            if alive(p, t):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)

    def _cleanup(self, quiet):
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # cleanup must go on
                print("cleanup failed: %s" % e, flush=True)
        self.cleanups = []
        if os.environ.get("SMTPD_KEEP"):
            print("kept %s" % self.dir, flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- output and log -----------------------------------------------------------------

    def stderr(self):
        return _read_text(self.stderr_path)

    def stdout(self):
        return _read_text(self.stdout_path)

    def log(self):
        return _read_text(self.log_path)

    def log_lines(self):
        """The log as (program, pid, level, text) tuples; unparsable lines as
        ("", 0, "", line)."""
        out = []
        for line in self.log().splitlines():
            m = LOG_LINE.match(line)
            out.append((m.group(2), int(m.group(3)), m.group(4), m.group(5)) if m else ("", 0, "", line))
        return out

    def wait_log(self, pattern, timeout=10.0, count=1):
        """Waits until `count` log lines match the regex; returns the matches."""
        return wait_log_lines(self.log, pattern, timeout, count)

    def log_process_pid(self):
        """The pid of the log process: the pid in its own "log process started" line."""
        last = None
        for prog, pid, level, text in self.log_lines():
            if text.startswith("log process started") or text.startswith("log process restarted"):
                last = pid
        return last

    def worker_pids(self):
        """The master's children less the log process: the workers."""
        log_pid = self.log_process_pid()
        pids = [p for p in children_of(self.proc.pid) if p != log_pid]
        self.remember_children()
        return pids

    def serving_pid(self, client):
        """The worker holding the server side of `client`'s connection."""
        inode = wait_for(lambda: socket_inode_of_peer(self.port, client.local_port()), 5.0,
                         "the connection in /proc/net/tcp")
        pids = wait_for(lambda: pids_holding_socket(inode, self.worker_pids()), 5.0,
                        "the worker holding socket inode %d" % inode)
        check(len(pids) == 1, "more than one worker holds the connection: %s" % pids)
        return pids[0]

    # -- mailboxes and queue --------------------------------------------------------

    def _files(self, *parts):
        path = os.path.join(*parts)
        if not os.path.isdir(path):
            return []
        return sorted(os.path.join(path, n) for n in os.listdir(path))

    def new(self, mailbox):
        return self._files(self.mail, mailbox, "new")

    def tmp(self, mailbox):
        return self._files(self.mail, mailbox, "tmp")

    def mailboxes(self):
        return sorted(os.listdir(self.mail)) if os.path.isdir(self.mail) else []

    def all_new(self):
        return [p for m in self.mailboxes() for p in self.new(m)]

    def all_tmp(self):
        return [p for m in self.mailboxes() for p in self.tmp(m)]

    def only_message(self, mailbox):
        """The one message in mailbox/new (fails if there is not exactly one)."""
        files = self.new(mailbox)
        check(len(files) == 1, "expected one message in %s/new, found %d: %s" % (mailbox, len(files), files))
        return read_bytes(files[0])

    def queue_ids(self):
        return [os.path.basename(p) for p in self._files(self.queue, "envelope")]

    def envelope(self, qid):
        return parse_envelope(_read_text(os.path.join(self.queue, "envelope", qid)))

    def content(self, qid):
        return read_bytes(os.path.join(self.queue, "content", qid))

    def queue_tmp(self):
        return self._files(self.queue, "tmp")

    # -- clients ----------------------------------------------------------------------

    def client(self, host="127.0.0.1", source=None, timeout=REPLY_TIMEOUT):
        return Client(self.port, host, source, timeout)

    def smtp(self, host="127.0.0.1", source=None, helo="client.example", timeout=30):
        """An smtplib.SMTP connected to the daemon (the caller quits it)."""
        import smtplib
        return smtplib.SMTP(host, self.port, local_hostname=helo, timeout=timeout,
                            source_address=(source, 0) if source else None)


def _read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def tree(root):
    """Every path under root (relative), for "nothing appeared outside" checks."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), root))
    return out


# ---------------------------------------------------------------- dnsmasq


class Dnsmasq:
    """A dnsmasq answering only from its own records on 127.0.0.1:port (UDP and
    TCP): --no-resolv, --no-hosts, no --server, /etc/dnsmasq.conf not read, and
    --address=/#/ so every other name is NXDOMAIN at once, never forwarded.

    records: extra options, e.g. ["--host-record=client.test,127.0.0.1",
    "--ptr-record=3.0.0.127.in-addr.arpa,fake.test"]."""

    BINARY = "/usr/sbin/dnsmasq"

    def __init__(self, records):
        self.records = list(records)
        self.proc = None
        self.port = None
        self.dir = tempfile.mkdtemp(prefix="smtpd-systest-dns-")
        self.log_path = os.path.join(self.dir, "dnsmasq.log")

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def __enter__(self):
        if not os.access(self.BINARY, os.X_OK):
            shutil.rmtree(self.dir, ignore_errors=True)
            raise Skip("no %s" % self.BINARY)
        try:
            for _ in range(3):
                self.port = free_port(udp_too=True)
                argv = [self.BINARY, "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
                        "--keep-in-foreground", "--port=%d" % self.port, "--listen-address=127.0.0.1",
                        "--bind-interfaces", "--pid-file=", "--log-facility=-", "--log-queries",
                        "--address=/#/"] + self.records
                if os.geteuid() == 0:
                    argv.append("--user=root")
                with open(self.log_path, "ab") as log:
                    self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                                 start_new_session=True)
                if self._wait_ready():
                    return self
            raise AssertionError("dnsmasq did not start: %s" % _read_text(self.log_path)[-2000:])
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def _wait_ready(self):
        deadline = time.monotonic() + 10.0
        delay = 0.005
        while self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return True
            except OSError:
                pass
            if time.monotonic() >= deadline:
                raise AssertionError("dnsmasq did not listen within 10 s: %s" % _read_text(self.log_path)[-2000:])
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return False

    def log(self):
        return _read_text(self.log_path)

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
        return False


class SilentDns:
    """A UDP and TCP "name server" on 127.0.0.1 that never answers: lookups through it
    time out, which makes the daemon's connect verdict wait (for pregreet tests)."""

    def __enter__(self):
        for _ in range(20):
            port = free_port(udp_too=True)
            try:
                self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.udp.bind(("127.0.0.1", port))
                self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.tcp.bind(("127.0.0.1", port))
                self.tcp.listen(16)
                self.port = port
                return self
            except OSError:
                self.__exit__()
        raise AssertionError("no port for the silent name server")

    @property
    def server(self):
        return "127.0.0.1:%d" % self.port

    def __exit__(self, *exc):
        for s in (getattr(self, "udp", None), getattr(self, "tcp", None)):
            if s is not None:
                s.close()
        return False


# ---------------------------------------------------------------- runner


def is_root():
    return os.geteuid() == 0


def _on_alarm(signum, frame):
    raise CaseTimeout("the case ran past its time bound")


def main(cases, case_timeout=CASE_TIMEOUT):
    """Runs the cases with smtpd from argv[1]; argv[2:] may name cases to run."""
    global SMTPD
    if len(sys.argv) < 2:
        print("usage: %s SMTPD [CASE...]" % sys.argv[0])
        sys.exit(2)
    SMTPD = os.path.abspath(sys.argv[1])
    if not os.access(SMTPD, os.X_OK):
        print("FAIL: %s is not an executable" % SMTPD)
        sys.exit(1)
    wanted = set(sys.argv[2:])
    signal.signal(signal.SIGALRM, _on_alarm)
    passed = failed = skipped = 0
    for case in cases:
        name = case.__name__
        if wanted and name not in wanted:
            continue
        started = time.monotonic()
        signal.alarm(case_timeout)
        try:
            case()
        except Skip as e:
            signal.alarm(0)
            skipped += 1
            print("SKIP %s: %s" % (name, e), flush=True)
            continue
        except BaseException as e:  # a failure of one case must not stop the others
            signal.alarm(0)
            if isinstance(e, KeyboardInterrupt):
                raise
            failed += 1
            print("FAIL %s (%.1f s): %s" % (name, time.monotonic() - started, e), flush=True)
            traceback.print_exc(file=sys.stdout)
            sys.stdout.flush()
            continue
        signal.alarm(0)
        passed += 1
        print("PASS %s (%.1f s)" % (name, time.monotonic() - started), flush=True)
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped), flush=True)
    sys.exit(1 if failed else 0)
