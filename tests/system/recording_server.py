"""A recording SMTP server for smtpc's system tests: a peer that remembers everything
and misbehaves on request.

    with RecordingServer() as srv:                     # 127.0.0.1, a free port
        srv.on_rcpt("bob@remote.test", ["451 4.3.0 Try later"] * 2)   # then 250
        srv.on_rcpt("eve@remote.test", "550 5.1.1 No such user")       # always
        srv.on_data("dan@remote.test", "drop")         # close in the middle of DATA
        srv.on_data("sam@remote.test", "stall")        # never answer the final dot
        srv.hostile("mail", "garbage")                 # the reply to MAIL is garbage
        ...
        srv.wait_messages(3, timeout=20)
        srv.connection_count(), srv.messages()         # what arrived

What it records (under a lock, read through the methods):
 - every connection (Connection: peer address, EHLO/HELO name, its transactions,
   the commands in order, when it opened and closed);
 - every transaction that reached the final dot (Message: MAIL FROM path, the
   accepted RCPT paths, the content bytes without dot-stuffing and without the final
   dot, the reply given, the connection's number), and every RCPT with its time and
   reply (for retry intervals).

Misbehaviour, all bounded and all ended by stop():
 - on_rcpt(addr, reply or [replies]): the RCPT replies for that recipient, used one
   per RCPT in order; when a list runs out the recipient gets 250 again. A single
   string applies forever.
 - on_data(addr, action or [actions]): at the end of DATA of a transaction with that
   recipient accepted; an action is a reply line for the final dot ("451 ..."),
   "drop" (close after the first bytes of content, before the final dot), or "stall"
   (read on, never answer the dot, until the client closes or the server stops).
 - hostile(stage, kind): from now on every connection misbehaves at `stage`
   (greeting, ehlo, mail, rcpt, data, dot): "long_line" (one reply line of 1 MiB),
   "endless" (a multi-line reply that never ends, 250-... until the client closes,
   bounded by `endless_limit` bytes), "garbage" (binary bytes with NULs and no CRLF
   structure, then silence), "nul" (a reply line with NUL bytes in it), "stall"
   (never answer). hostile(None) ends it.
 - dot_delay: seconds to wait before answering each final dot (a slow server).
 - starttls: None (not offered), or what STARTTLS gets (it is offered in EHLO then):
   "refuse" (454 4.7.0), "close" (220, then close once the client's TLS hello has
   come), "garbage" (220, then bytes that are no TLS record once the hello has come,
   then silence until the client closes), "inject" (220 and a plaintext "250"
   reply in the same write, before any hello: the CVE-2011-0411 shape, then silence),
   "stall" (220, then silence: a handshake that never ends).
   No TLS is ever done; Connection.starttls counts the STARTTLS commands, and a
   command after a 220 to STARTTLS would still be recorded in Connection.commands.

Replies to the final dot are 250 unless told otherwise; EHLO offers PIPELINING,
8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, SIZE and DSN (`extensions` changes that).
One thread per connection; Python 3 standard library only; 127.0.0.0/8 only.
"""

import socket
import threading
import time

HOSTILE_STAGES = ("greeting", "ehlo", "mail", "rcpt", "data", "dot")
HOSTILE_KINDS = ("long_line", "endless", "garbage", "nul", "stall")
STARTTLS_ACTIONS = ("refuse", "close", "garbage", "inject", "stall")
MAX_LINE = 1 << 20  # a client line longer than this ends the connection (we are a test peer)


class Message:
    """One transaction that reached the final dot."""

    def __init__(self, conn, sender, rcpts, data, reply, mail_params):
        self.conn = conn  # the connection's number, from 1
        self.sender = sender  # the MAIL FROM path without brackets ("" for <>)
        self.rcpts = list(rcpts)  # accepted RCPT paths without brackets
        self.data = data  # content bytes, dot-stuffing removed, without the final dot
        self.reply = reply  # the reply line given to the final dot
        self.mail_params = mail_params  # the MAIL FROM parameters as sent
        self.time = time.time()

    @property
    def accepted(self):
        return self.reply.startswith("2")

    def header(self, name):
        """The first value of header field `name` (unfolded, stripped), or None."""
        head = self.data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        lines = head.split("\r\n")
        prefix = name.lower() + ":"
        for i, line in enumerate(lines):
            if line.lower().startswith(prefix):
                value = line[len(prefix):]
                for more in lines[i + 1:]:
                    if not more[:1] in (" ", "\t"):
                        break
                    value += more
                return value.strip()
        return None

    def __repr__(self):
        return "<Message conn=%d from=<%s> to=%s %d bytes %r>" % (self.conn, self.sender, self.rcpts,
                                                                 len(self.data), self.reply)


class Connection:
    def __init__(self, number, peer):
        self.number = number
        self.peer = peer
        self.helo = None
        self.commands = []  # command lines as received (bytes, without CRLF)
        self.starttls = 0  # STARTTLS commands received
        self.opened = time.time()
        self.closed = None


class RecordingServer:
    def __init__(self, host="127.0.0.1", port=0, hostname="rec.test", extensions=None):
        self.host = host
        self.hostname = hostname
        self.extensions = list(extensions) if extensions is not None else [
            "PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE 0", "DSN"]
        self.dot_delay = 0.0
        self.starttls = None  # see the module comment: None or one of STARTTLS_ACTIONS
        self.endless_limit = 1 << 30  # bytes of an endless reply before the server gives up
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._rcpt_rules = {}
        self._data_rules = {}
        self._hostile = None
        self._connections = []
        self._messages = []
        self._rcpt_log = []  # (time, conn, address, reply)
        self._stalls = 0  # sessions that went silent on purpose (stall, or after garbage)
        self._threads = []
        self._socks = set()
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.sock.listen(128)
        except BaseException:
            self.sock.close()
            raise
        self.port = self.sock.getsockname()[1]
        self._acceptor = None

    # -- lifecycle ----------------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        self._acceptor = threading.Thread(target=self._accept_loop, name="rec-accept", daemon=True)
        self._acceptor.start()
        return self

    def stop(self):
        """Ends every connection and the acceptor; waits (bounded) for the threads."""
        self._stop.set()
        try:
            # Wake accept(): shutdown() makes it return with an error on Linux.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in [self._acceptor] + list(self._threads):
            if t is not None:
                t.join(10)

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    # -- configuration ------------------------------------------------------------

    def on_rcpt(self, address, replies):
        with self._lock:
            self._rcpt_rules[address.lower()] = replies if isinstance(replies, str) else list(replies)

    def on_data(self, address, actions):
        with self._lock:
            self._data_rules[address.lower()] = actions if isinstance(actions, str) else list(actions)

    def hostile(self, stage, kind=None):
        if stage is not None:
            assert stage in HOSTILE_STAGES and kind in HOSTILE_KINDS, (stage, kind)
        with self._lock:
            self._hostile = (stage, kind) if stage is not None else None

    # -- what was recorded --------------------------------------------------------

    def connection_count(self):
        with self._lock:
            return len(self._connections)

    def connections(self):
        with self._lock:
            return list(self._connections)

    def open_connections(self):
        with self._lock:
            return [c for c in self._connections if c.closed is None]

    def messages(self):
        """Every transaction that reached the final dot, accepted or not."""
        with self._lock:
            return list(self._messages)

    def accepted(self):
        """The messages answered 2xx at the final dot."""
        return [m for m in self.messages() if m.accepted]

    def rcpt_log(self, address=None):
        """(time, connection number, address, reply) per RCPT, in order."""
        with self._lock:
            return [r for r in self._rcpt_log if address is None or r[2].lower() == address.lower()]

    def stalls(self):
        """How many sessions have gone silent on purpose so far."""
        with self._lock:
            return self._stalls

    def wait(self, predicate, timeout, what):
        """Waits until predicate(self) is true (re-checked on every recorded event and
        every 0.1 s); returns its value; fails naming `what` past `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate(self)
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out after %.1f s waiting for %s; %d connections, messages: %s"
                                     % (timeout, what, self.connection_count(), self.messages()[-5:]))
            with self._changed:
                self._changed.wait(min(left, 0.1))

    def wait_messages(self, count, timeout=30.0):
        """Waits for `count` accepted messages; returns them."""
        return self.wait(lambda s: len(s.accepted()) >= count and s.accepted(), timeout,
                         "%d accepted messages" % count)

    def wait_connections(self, count, timeout=30.0):
        return self.wait(lambda s: s.connection_count() >= count, timeout, "%d connections" % count)

    # -- the server ---------------------------------------------------------------

    def _notify(self):
        with self._changed:
            self._changed.notify_all()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            if self._stop.is_set():
                conn.close()
                return
            with self._lock:
                record = Connection(len(self._connections) + 1, peer)
                self._connections.append(record)
                self._socks.add(conn)
                hostile = self._hostile
            self._notify()
            t = threading.Thread(target=self._serve, args=(conn, record, hostile),
                                 name="rec-conn-%d" % record.number, daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, sock, record, hostile):
        session = _Session(self, sock, record, hostile)
        try:
            session.run()
        except (OSError, _Closed):
            pass
        finally:
            with self._lock:
                record.closed = time.time()
                self._socks.discard(sock)
            try:
                sock.close()
            except OSError:
                pass
            self._notify()

    def _take_rule(self, rules, address):
        """The next rule for `address` (under the lock), or None."""
        rule = rules.get(address.lower())
        if rule is None:
            return None
        if isinstance(rule, str):
            return rule
        if not rule:
            return None
        return rule.pop(0)


class _Closed(Exception):
    pass


def _path(arg, keyword):
    """The path in "FROM:<a@b> PARAMS" (keyword FROM or TO), without brackets, and the
    parameters; None if malformed."""
    if not arg.upper().startswith(keyword + ":"):
        return None
    rest = arg[len(keyword) + 1:].lstrip()
    if not rest.startswith("<") or ">" not in rest:
        return None
    end = rest.index(">")
    return rest[1:end], rest[end + 1:].strip()


class _Session:
    def __init__(self, server, sock, record, hostile):
        self.server = server
        self.sock = sock
        self.record = record
        self.hostile = hostile
        self.buf = b""
        # Replies go out one write each; without NODELAY, Nagle holds the second of
        # a pipelined group for the client's delayed ACK (40 ms per message).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(0.2)

    # -- I/O

    def recv_some(self):
        while True:
            if self.server._stop.is_set():
                raise _Closed()
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                raise _Closed()
            if not chunk:
                raise _Closed()
            self.buf += chunk
            return

    def line(self):
        while b"\r\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                raise _Closed()
            self.recv_some()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.settimeout(None)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.settimeout(0.2)

    def reply(self, text):
        self.send(text + "\r\n")

    def stall(self):
        """Reads on, answers nothing, until the client closes or the server stops."""
        with self.server._lock:
            self.server._stalls += 1
        self.server._notify()
        while True:
            self.buf = b""
            self.recv_some()

    def misbehave(self, stage, normal):
        """At `stage`, either the normal reply or the configured misbehaviour."""
        if self.hostile is None or self.hostile[0] != stage:
            self.reply(normal)
            return
        kind = self.hostile[1]
        code = normal[:3]
        if kind == "stall":
            self.stall()
        elif kind == "long_line":
            self.send(code + " " + "x" * (1 << 20) + "\r\n")
            self.stall()
        elif kind == "endless":
            chunk = ((code + "-" + "endless reply line " * 3 + "\r\n") * 512).encode("ascii")
            sent = 0
            self.sock.settimeout(1.0)
            while sent < self.server.endless_limit and not self.server._stop.is_set():
                try:
                    self.sock.sendall(chunk)
                except socket.timeout:
                    continue  # the client does not read: wait on, bounded by stop()
                sent += len(chunk)
            raise _Closed()
        elif kind == "garbage":
            self.send(bytes(range(256)) * 16 + b"\x00\x00\xff\xfe garbage \x00")
            self.stall()
        elif kind == "nul":
            self.send(code.encode("ascii") + b" ok\x00\x00 with NUL\x00\r\n")
            self.stall()

    # -- the dialogue

    def run(self):
        srv = self.server
        self.misbehave("greeting", "220 %s ESMTP recording server" % srv.hostname)
        sender = None
        mail_params = ""
        rcpts = []
        while True:
            raw = self.line()
            with srv._lock:
                self.record.commands.append(raw)
            text = raw.decode("utf-8", "replace")
            verb = text.split(" ", 1)[0].upper()
            arg = text[len(verb):].lstrip() if " " in text else ""
            if verb in ("EHLO", "HELO"):
                self.record.helo = arg
                sender, rcpts = None, []
                if verb == "EHLO":
                    lines = [srv.hostname] + srv.extensions + (["STARTTLS"] if srv.starttls else [])
                    normal = "\r\n".join("250%s%s" % ("-" if i < len(lines) - 1 else " ", l)
                                         for i, l in enumerate(lines))
                else:
                    normal = "250 " + srv.hostname
                self.misbehave("ehlo", normal)
            elif verb == "MAIL":
                parsed = _path(arg, "FROM")
                if parsed is None:
                    self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
                    continue
                sender, mail_params = parsed
                rcpts = []
                self.misbehave("mail", "250 2.1.0 Ok")
            elif verb == "RCPT":
                parsed = _path(arg, "TO")
                if parsed is None or sender is None:
                    self.reply("503 5.5.1 Need MAIL first" if sender is None else "501 5.5.4 Syntax")
                    continue
                addr = parsed[0]
                with srv._lock:
                    answer = srv._take_rule(srv._rcpt_rules, addr) or "250 2.1.5 Ok"
                    srv._rcpt_log.append((time.time(), self.record.number, addr, answer))
                srv._notify()
                if answer.startswith("2"):
                    rcpts.append(addr)
                if self.hostile and self.hostile[0] == "rcpt":
                    self.misbehave("rcpt", answer)
                else:
                    self.reply(answer)
            elif verb == "DATA":
                if sender is None or not rcpts:
                    self.reply("503 5.5.1 No valid recipients" if sender is not None else "503 5.5.1 Need MAIL")
                    continue
                self.misbehave("data", "354 End data with <CR><LF>.<CR><LF>")
                self.data(sender, rcpts, mail_params)
                sender, rcpts = None, []
            elif verb == "RSET":
                sender, rcpts = None, []
                self.reply("250 2.0.0 Ok")
            elif verb == "STARTTLS" and srv.starttls:
                self.starttls(srv.starttls)
            elif verb == "NOOP":
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                raise _Closed()
            else:
                self.reply("502 5.5.2 Command not implemented")

    def starttls(self, action):
        """STARTTLS without TLS: one of STARTTLS_ACTIONS (none of them goes on)."""
        assert action in STARTTLS_ACTIONS, action
        with self.server._lock:
            self.record.starttls += 1
        self.server._notify()
        if action == "refuse":
            self.reply("454 4.7.0 TLS not available due to temporary reason")
            return
        if action == "inject":
            self.send("220 2.0.0 Ready to start TLS\r\n250 2.0.0 injected in plaintext\r\n")
            self.stall()
        self.reply("220 2.0.0 Ready to start TLS")
        if action == "stall":
            self.stall()
        # The client's hello: a TLS record begins with content type 22 (handshake).
        while not self.buf:
            self.recv_some()
        if action == "close":
            raise _Closed()
        self.buf = b""
        self.send(b"220 this is no TLS record\r\n" + bytes(range(256)))
        self.stall()

    def data(self, sender, rcpts, mail_params):
        srv = self.server
        with srv._lock:
            actions = [a for a in (srv._take_rule(srv._data_rules, r) for r in rcpts) if a]
        action = None
        for a in actions:  # drop and stall win over a reply; the first reply wins
            if a in ("drop", "stall"):
                action = a
                break
            action = action or a
        if action == "drop":
            # Wait for the first content bytes, then vanish before the final dot.
            if not self.buf:
                self.recv_some()
            raise _Closed()
        lines = []
        while True:
            line = self.line()
            if line == b".":
                break
            if line.startswith(b"."):
                line = line[1:]
            lines.append(line)
        content = b"".join(l + b"\r\n" for l in lines)
        if action == "stall":
            self.stall()
        if self.hostile and self.hostile[0] == "dot":
            self.misbehave("dot", "250 2.0.0 Ok")
        answer = action or "250 2.0.0 Ok: queued as rec%d" % (len(srv._messages) + 1)
        if srv.dot_delay > 0:
            srv._stop.wait(srv.dot_delay)  # a slow server, cut short by stop()
        with srv._lock:
            srv._messages.append(Message(self.record.number, sender, rcpts, content, answer, mail_params))
        srv._notify()
        self.reply(answer)


if __name__ == "__main__":  # a manual peer: python3 recording_server.py [PORT]
    import sys
    with RecordingServer(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0) as s:
        print("listening on %s" % s.address, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
