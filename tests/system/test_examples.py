#!/usr/bin/env python3
"""The example programs against real peers, over TCP on 127.0.0.1.

  test_examples.py SINK_BLOCKING POLL_SERVER SEND_ONE

- smtplib sends one message to two recipients to sink_blocking, which must print
  the envelope and the content byte for byte;
- 20 smtplib clients at once (threads) send to poll_server: every message arrives
  exactly once, byte-exact, and the recipient the server's lookup does not know is
  refused with 550;
- send_one delivers to sink_blocking (exit 0), reports a refused recipient at
  poll_server (exit 1) and exits 2 when nothing listens.
Servers start on port 0 and print "listening on PORT"; the test then waits for
them by retrying connect(), never by sleeping. Every wait is bounded, and every
process is killed and reaped whatever happens. Python 3 standard library only.
"""
import re
import smtplib
import socket
import subprocess
import sys
import threading
import time

TIMEOUT = 30.0  # seconds for any one step; the whole test takes about one


class Server:
    """An example server running, its stdout collected by a thread."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        self.output = b""
        self.changed = threading.Condition()  # notified on new output and at EOF
        self.eof = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.port = self._wait_for_port()
        self._wait_for_connect()

    def _read(self):
        while True:
            chunk = self.proc.stdout.read1(65536)
            with self.changed:
                self.output += chunk
                self.eof = not chunk
                self.changed.notify_all()
            if not chunk:
                return

    def _wait_for_port(self):
        with self.changed:
            self.changed.wait_for(lambda: b"\n" in self.output or self.eof, TIMEOUT)
            m = re.match(rb"listening on (\d+)\n", self.output)
            if not m:
                raise AssertionError("no 'listening on PORT' from the server: %r" % self.output[:200])
            return int(m.group(1))

    def _wait_for_connect(self):
        # The port is printed after listen(), so the first try normally succeeds.
        # The probe is one connection the server counts (it gets a greeting and EOF).
        deadline = time.monotonic() + TIMEOUT
        for _ in range(1000):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    break
        raise AssertionError("cannot connect to port %d" % self.port)

    def finish(self):
        """Waits for the server to exit on its own; returns its messages."""
        try:
            code = self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError("server did not exit after its last connection")
        self.reader.join(TIMEOUT)
        assert code == 0, "server exit status %d" % code
        return parse_messages(self.output)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        self.reader.join(TIMEOUT)  # EOF now that the process is gone
        self.proc.stdout.close()


def parse_messages(output):
    """[(from, [to...], content)] from 'message from=<..> to=<..> size=N\\n' + N octets."""
    head, sep, rest = output.partition(b"\n")
    assert head.startswith(b"listening on ") and sep, "no listening line: %r" % output[:100]
    messages = []
    while rest:
        line, sep, rest = rest.partition(b"\n")
        m = re.fullmatch(rb"message from=<([^>]*)>((?: to=<[^>]*>)*) size=(\d+)", line)
        assert sep and m, "bad message line %r" % line
        size = int(m.group(3))
        assert len(rest) >= size, "message cut short"
        to = re.findall(rb"to=<([^>]*)>", m.group(2))
        messages.append((m.group(1).decode(), [t.decode() for t in to], rest[:size]))
        rest = rest[size:]
    return messages


def free_port():
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body(n):
    """A message of CRLF lines, with a header, an empty line and dot lines."""
    return ("Subject: test %d\r\n\r\nline one of %d\r\n.\r\n..two dots\r\n.leading dot\r\n"
            "\r\nlast line\r\n" % (n, n)).encode()


def test_smtplib_to_sink_and_send_one(sink_binary, send_one):
    # Connections: the readiness probe, smtplib, send_one.
    server = Server([sink_binary, "0", "3"])
    try:
        content = body(1)
        with smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.example", timeout=TIMEOUT) as s:
            refused = s.sendmail("alice@example.org", ["bob@example.net", "carol@example.net"], content)
            assert refused == {}, refused
        sent = body(2)
        run = subprocess.run([send_one, "127.0.0.1", str(server.port), "dave@example.org", "erin@example.net"],
                             input=sent, capture_output=True, timeout=TIMEOUT)
        assert run.returncode == 0, (run.returncode, run.stdout, run.stderr)
        assert re.fullmatch(rb"to=<erin@example\.net> delivered: 250 .*\n", run.stdout), run.stdout
        messages = server.finish()
        assert messages == [
            ("alice@example.org", ["bob@example.net", "carol@example.net"], content),
            ("dave@example.org", ["erin@example.net"], sent),
        ], messages
    finally:
        server.kill()
    print("ok: smtplib and send_one to sink_blocking, byte-exact")


def test_concurrent_clients_to_poll_server(poll_binary, send_one):
    clients = 20
    # Connections: the probe, the smtplib clients, send_one.
    server = Server([poll_binary, "0", str(clients + 2), "20"])
    try:
        results = [None] * clients
        start = threading.Barrier(clients, timeout=TIMEOUT)

        def send(i):
            try:
                start.wait()  # all connected at once: the server juggles them
                with smtplib.SMTP("127.0.0.1", server.port, local_hostname="c%d.example" % i,
                                  timeout=TIMEOUT) as s:
                    results[i] = s.sendmail("s%d@example.org" % i, ["r%d@example.net" % i, "unknown%d@example.net" % i],
                                            body(100 + i))
            except Exception as e:  # reported below, with the client's number
                results[i] = e

        threads = [threading.Thread(target=send, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads), "a client hung"
        for i, r in enumerate(results):
            # smtplib returns the refused recipients; the lookup knows no "unknown*".
            assert isinstance(r, dict), "client %d: %r" % (i, r)
            assert list(r) == ["unknown%d@example.net" % i] and r["unknown%d@example.net" % i][0] == 550, (i, r)

        run = subprocess.run([send_one, "127.0.0.1", str(server.port), "x@example.org", "y@example.net",
                              "unknown@example.net"], input=body(99), capture_output=True, timeout=TIMEOUT)
        assert run.returncode == 1, (run.returncode, run.stdout, run.stderr)
        lines = sorted(run.stdout.splitlines())  # results come as they are known, in any order
        assert len(lines) == 2, run.stdout
        assert re.fullmatch(rb"to=<unknown@example\.net> permanent: 550 5\.1\.1 .*", lines[0]), run.stdout
        assert re.fullmatch(rb"to=<y@example\.net> delivered: 250 .*", lines[1]), run.stdout

        messages = server.finish()
        expected = [("s%d@example.org" % i, ["r%d@example.net" % i], body(100 + i)) for i in range(clients)]
        expected.append(("x@example.org", ["y@example.net"], body(99)))
        assert sorted(messages) == sorted(expected), messages  # each exactly once, in any order
    finally:
        server.kill()
    print("ok: %d concurrent smtplib clients and send_one to poll_server" % clients)


def test_send_one_without_server(send_one):
    run = subprocess.run([send_one, "127.0.0.1", str(free_port()), "a@example.org", "b@example.net"],
                         input=body(0), capture_output=True, timeout=TIMEOUT)
    assert run.returncode == 2, (run.returncode, run.stdout, run.stderr)
    assert run.stdout == b"", run.stdout
    print("ok: send_one exits 2 when nothing listens")


def main(argv):
    if len(argv) != 4:
        print("usage: test_examples.py SINK_BLOCKING POLL_SERVER SEND_ONE", file=sys.stderr)
        return 2
    sink_binary, poll_binary, send_one = argv[1:]
    test_smtplib_to_sink_and_send_one(sink_binary, send_one)
    test_concurrent_clients_to_poll_server(poll_binary, send_one)
    test_send_one_without_server(send_one)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
