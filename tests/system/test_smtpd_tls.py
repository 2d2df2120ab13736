#!/usr/bin/env python3
"""smtpd system tests: STARTTLS (RFC 3207; apps/smtpd/connection.hpp, settings.hpp).

  test_smtpd_tls.py SMTPD [CASE...]

Certificates come from tests/system/tls_certs.py (a test CA, a server certificate it
signed for localhost and 127.0.0.1, a self-signed one). Real peers: Python's ssl
(the CA trusted, the name checked), smtplib, openssl s_client, swaks --tls.

- Without tls_cert/tls_key STARTTLS is neither offered nor accepted (502).
- With them: offered before TLS, not after (§4.2); STARTTLS in TLS gets 503; the
  HELO name is forgotten (§4.2); mail lands with "with ESMTPS" (UTF8SMTPS) and
  Postfix's "(using TLSv1.3 with cipher ...)" comment in Received:; the log names the
  protocol and cipher that the client sees.
- Plaintext pipelined behind STARTTLS (CVE-2011-0411) is discarded: one reply (the
  220) before the handshake, no stray reply after it, no RSET or MAIL took effect.
- A client that sends garbage instead of a ClientHello is closed with a "TLS
  handshake failed" line, and the same worker serves the next client; a client
  silent after the 220 is closed without a reply at the command timeout.
- require_tls: 530 5.7.0 to MAIL before STARTTLS for relay clients only.
- Configuration errors exit 78 with the reason; SIGHUP loads new certificate files
  at the same paths for new sessions while an old session finishes; as root with
  --user nobody, a key only root can read loads at the start and refuses a reload.
"""
import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import tempfile
import time

import smtpd_harness as h
import tls_certs
from smtpd_harness import Smtpd, check, check_reply, dot_encode, split_trace

EXIT_CONFIG = 78
BODY = b"Subject: over TLS\r\n\r\nsecret\r\n"
TLS_LINE = (r"TLS connection established from unknown\[127\.0\.0\.1\]: "
            r"(TLSv1(?:\.[0-3])?) with cipher ([A-Za-z0-9_-]+) \((\d+)/(\d+) bits\)$")


class Certs:
    """A scratch directory with the certificates of tls_certs.make_certs (paths as
    attributes: ca, server, server_key, selfsigned, selfsigned_key)."""

    def __init__(self, names=("localhost", "IP:127.0.0.1")):
        self.names = names

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="smtpd-systest-certs-")
        try:
            self.paths = tls_certs.make_certs(self.dir, self.names)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        for key, path in self.paths.items():
            setattr(self, key, path)
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def args(self):
        return ["--tls-cert", self.server, "--tls-key", self.server_key]


def _ehlo_keywords(reply):
    return [t.split(" ")[0].upper() for t in reply.texts[1:]]


def _starttls(c, certs_or_context, hostname="localhost"):
    """STARTTLS (220 2.0.0), then the handshake with the test CA trusted."""
    c.expect("STARTTLS", 220, "2.0.0")
    context = certs_or_context if isinstance(certs_or_context, ssl.SSLContext) \
        else h.tls_client_context(certs_or_context.ca)
    c.starttls(context, hostname)


DISCONNECT = r"disconnect from unknown\[127\.0\.0\.1\](.*)$"


def _disconnects(d):
    """How many sessions from 127.0.0.1 ended so far, once the harness's start probe
    (a connection that said QUIT) has been logged: the log process writes later."""
    return len(d.wait_log(DISCONNECT))


def _disconnect_line(d, before):
    """The counts of the disconnect line of the session that ends after `before`
    sessions had ended (see _disconnects)."""
    return d.wait_log(DISCONNECT, count=before + 1)[before].group(1)


def _deliver_over_tls(d, certs, mailbox="alice", body=BODY):
    c = d.client()
    c.expect_greeting()
    c.hello()
    _starttls(c, certs)
    c.hello()
    check_reply(c.transaction("a@client.example", ["%s@test.local" % mailbox], dot_encode(body)), 250)
    c.expect("QUIT", 221)
    c.wait_closed()
    c.close()


# ---------------------------------------------------------------- offered or not


def test_without_certificate_starttls_is_not_offered_and_gets_502():
    with Smtpd() as d:
        c = d.client()
        c.expect_greeting()
        ehlo = c.hello()
        check("STARTTLS" not in _ehlo_keywords(ehlo), "STARTTLS offered without a certificate: %r" % ehlo)
        c.expect("STARTTLS", 502, "5.5.1")
        # Still plaintext, still in sync.
        c.expect("NOOP", 250)
        c.expect("QUIT", 221)
        check(re.search(r"started: .* tls=off$", d.log(), re.M), "the start line does not say tls=off")


def test_starttls_is_offered_and_mail_arrives_over_tls_with_esmtps_and_the_tls_comment():
    with Certs() as certs, Smtpd(certs.args()) as d:
        before = _disconnects(d)
        c = d.client()
        c.expect_greeting()
        ehlo = c.hello()
        check("STARTTLS" in _ehlo_keywords(ehlo), "STARTTLS not offered: %r" % ehlo)
        _starttls(c, certs)
        version, cipher, bits = c.tls_version_and_cipher()
        # RFC 3207 §4.2: the server forgets what the client said; EHLO again, and
        # STARTTLS is not offered any more.
        c.expect("MAIL FROM:<a@client.example>", 503, "5.5.1")
        ehlo = c.hello()
        keywords = _ehlo_keywords(ehlo)
        check("STARTTLS" not in keywords, "STARTTLS offered again in TLS: %r" % ehlo)
        check("PIPELINING" in keywords and "SMTPUTF8" in keywords, "EHLO reply in TLS lacks extensions: %r" % ehlo)
        c.expect("STARTTLS", 503, "5.5.1")
        check_reply(c.transaction("a@client.example", ["alice@test.local"], dot_encode(BODY)), 250)
        # SMTPUTF8 in TLS: UTF8SMTPS (RFC 6531 §3.7.3).
        c.expect("MAIL FROM:<a@client.example> SMTPUTF8", 250)
        c.expect("RCPT TO:<bob@test.local>", 250)
        c.expect("DATA", 354)
        c.send(dot_encode(BODY))
        check_reply(c.reply(), 250)
        c.expect("QUIT", 221)
        c.wait_closed()
        c.close()

        _, received, rest = split_trace(d.only_message("alice"))
        m = h.parse_received_tls(received)
        check(m.group("proto") == "ESMTPS", "protocol %r, expected ESMTPS" % m.group("proto"))
        check((m.group("version"), m.group("cipher"), int(m.group("bits"))) == (version, cipher, bits),
              "Received: says %r; the client sees %s %s %d" % (m.group("tls"), version, cipher, bits))
        check(m.group("helo") == "client.example" and m.group("addr") == "127.0.0.1", "Received: %r" % received)
        check(rest == BODY, "content differs: %r" % rest)
        _, received, _ = split_trace(d.only_message("bob"))
        check(h.parse_received_tls(received).group("proto") == "UTF8SMTPS", "SMTPUTF8 over TLS: %r" % received)

        # The log line says what the client negotiated.
        line = d.wait_log(TLS_LINE)[0]
        check((line.group(1), line.group(2), int(line.group(3))) == (version, cipher, bits),
              "log says %r, client sees %s %s %d" % (line.group(0), version, cipher, bits))
        counts = _disconnect_line(d, before)
        check(" ehlo=2 starttls=1 mail=2 rcpt=2 data=2 quit=1 errors=2 commands=12" == counts,
              "disconnect line counts: %r" % counts)
        check(re.search(r"started: .* tls=starttls$", d.log(), re.M), "the start line does not say tls=starttls")


def test_smtplib_starttls_verifies_the_certificate_and_delivers():
    with Certs() as certs, Smtpd(certs.args()) as d:
        s = d.smtp()
        s.ehlo()
        check(s.has_extn("starttls"), "smtplib sees no STARTTLS")
        code, _ = s.starttls(context=h.tls_client_context(certs.ca))
        check(code == 220, "STARTTLS answered %d" % code)
        s.ehlo()
        check(not s.has_extn("starttls"), "STARTTLS offered in TLS")
        s.sendmail("a@client.example", ["carol@remote.example"], BODY)  # relayed: 127.0.0.1 may
        s.quit()
        ids = h.wait_for(d.queue_ids, 10, "the queued message")
        content = d.content(ids[0])
        _, received, rest = split_trace(content, return_path=False)
        check(h.parse_received_tls(received).group("proto") == "ESMTPS", "queued Received: %r" % received)
        check(rest == BODY, "queued content differs")


def test_a_client_trusting_another_ca_fails_the_handshake_and_the_worker_logs_it():
    with Certs() as certs, Smtpd(certs.args() + ["--workers", "1"]) as d:
        other = h.tls_client_context(certs.selfsigned)  # not the CA that signed the server's
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.expect("STARTTLS", 220)
        try:
            c.starttls(other)
            raise AssertionError("the handshake succeeded against an untrusted CA")
        except ssl.SSLCertVerificationError:
            pass
        c.close()
        d.wait_log(r"TLS handshake failed from unknown\[127\.0\.0\.1\]: \S")
        _deliver_over_tls(d, certs)
        check(len(d.new("alice")) == 1, "no delivery after a failed handshake")


# ---------------------------------------------------------------- real peers


def test_openssl_s_client_starttls_delivers_a_message():
    with Certs() as certs, Smtpd(certs.args()) as d:
        script = (b"EHLO client.example\n"
                  b"MAIL FROM:<a@client.example>\n"
                  b"RCPT TO:<alice@test.local>\n"
                  b"DATA\n"
                  b"Subject: via s_client\n"
                  b"\n"
                  b"hello from openssl\n"
                  b".\n"
                  b"QUIT\n")
        status, out, err = h.run_bounded(
            ["openssl", "s_client", "-starttls", "smtp", "-connect", "127.0.0.1:%d" % d.port,
             "-CAfile", certs.ca, "-verify_return_error", "-verify_hostname", "localhost",
             "-crlf", "-quiet"], 30, input_bytes=script)
        check(status == 0, "s_client exited %d; stdout %r stderr %r" % (status, out[-2000:], err[-2000:]))
        check(re.search(r"^250 2\.0\.0 Ok: queued as \S+", out, re.M), "no 250 queued in %r" % out)
        check(re.search(r"^221 ", out, re.M), "no 221 in %r" % out)
        _, received, rest = split_trace(d.only_message("alice"))
        check(h.parse_received_tls(received).group("proto") == "ESMTPS", "Received: %r" % received)
        check(rest == b"Subject: via s_client\r\n\r\nhello from openssl\r\n", "content: %r" % rest)
        d.wait_log(TLS_LINE)


def test_swaks_tls_delivers_a_message():
    if shutil.which("swaks") is None:
        raise h.Skip("swaks is not installed")
    _, support, support_err = h.run_bounded(["swaks", "--support"], 30)
    if "TLS not available" in support + support_err:
        raise h.Skip("swaks has no TLS here: Net::SSLeay (Debian libnet-ssleay-perl) is not installed")
    with Certs() as certs, Smtpd(certs.args()) as d:
        status, out, err = h.run_bounded(
            ["swaks", "--server", "127.0.0.1", "--port", str(d.port), "--tls", "--tls-verify",
             "--tls-ca-path", certs.ca, "--ehlo", "client.example",
             "--from", "a@client.example", "--to", "alice@test.local", "--header", "Subject: via swaks",
             "--body", "hello from swaks"], 60)
        check(status == 0, "swaks exited %d: %s %s" % (status, out[-3000:], err[-2000:]))
        # The 220 in plaintext ("<-"), the rest in TLS ("<~").
        check(re.search(r"^<-  220 2\.0\.0 Ready to start TLS$", out, re.M) and
              re.search(r"^=== TLS started with cipher TLSv1\.[23]", out, re.M) and
              re.search(r"^<~  250 2\.0\.0 Ok: queued as ", out, re.M),
              "swaks did not deliver over TLS: %s" % out[-3000:])
        _, received, rest = split_trace(d.only_message("alice"))
        check(h.parse_received_tls(received).group("proto") == "ESMTPS", "Received: %r" % received)
        check(b"hello from swaks" in rest, "content: %r" % rest)


# ---------------------------------------------------------------- injection (CVE-2011-0411)


def test_rset_pipelined_behind_starttls_is_discarded():
    with Certs() as certs, Smtpd(certs.args()) as d:
        before = _disconnects(d)
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.send(b"STARTTLS\r\nRSET\r\n")  # one send(): both in one segment
        check_reply(c.reply(), 220, "2.0.0", "STARTTLS")
        # Exactly one reply before the handshake: nothing else is buffered, and any
        # plaintext after the 220 would break the handshake below.
        c.starttls(h.tls_client_context(certs.ca))
        ehlo = c.command("EHLO client.example")
        check(ehlo.code == 250 and len(ehlo.texts) > 1 and ehlo.texts[0].startswith("test.local"),
              "the first reply in TLS is not the EHLO reply (a stray RSET reply?): %r" % ehlo)
        c.expect("QUIT", 221)
        c.wait_closed()
        counts = _disconnect_line(d, before)
        check(counts == " ehlo=2 starttls=1 quit=1 commands=4", "disconnect line counts: %r" % counts)
        check("rset=" not in counts, "the injected RSET was counted: %r" % counts)


def test_mail_pipelined_behind_starttls_starts_no_transaction():
    with Certs() as certs, Smtpd(certs.args()) as d:
        before = _disconnects(d)
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.send(b"STARTTLS\r\nMAIL FROM:<a@b>\r\n")
        check_reply(c.reply(), 220, "2.0.0", "STARTTLS")
        c.starttls(h.tls_client_context(certs.ca))
        ehlo = c.command("EHLO client.example")
        check(ehlo.code == 250 and len(ehlo.texts) > 1, "the first reply in TLS: %r" % ehlo)
        # No MAIL took effect: RCPT is out of order.
        c.expect("RCPT TO:<alice@test.local>", 503, "5.5.1")
        c.expect("QUIT", 221)
        c.wait_closed()
        counts = _disconnect_line(d, before)
        check("mail=" not in counts, "the injected MAIL was counted: %r" % counts)
        check(counts == " ehlo=2 starttls=1 quit=1 errors=1 commands=5", "disconnect line counts: %r" % counts)
        check(d.all_new() == [] and d.queue_ids() == [], "something was delivered")


def _server_rx_queue(server_port, client_port):
    """Bytes received on the server's side of the connection 127.0.0.1:client_port ->
    server_port that the server has not read yet (/proc/net/tcp), or None."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            local, remote = parts[1], parts[2]
            if int(local.rsplit(":", 1)[1], 16) == server_port and int(remote.rsplit(":", 1)[1], 16) == client_port:
                return int(parts[4].split(":")[1], 16)
    return None


def test_pipelined_commands_beyond_every_buffer_are_all_answered_in_tls():
    # The client sends far more than the server's buffers hold and reads nothing
    # until the server has stopped reading: the session's input buffer fills while
    # its output waits, and reads get less room than a TLS record holds (OpenSSL
    # keeps the rest, decrypted, where select() cannot see it). Then the client reads
    # every reply: back-pressure through TLS in both directions must lose nothing
    # and stall nowhere. (Whether the very last record is the one split is up to the
    # timing; tests/smtpd/test_connection.cpp splits one on purpose.)
    import threading
    with Certs() as certs, Smtpd(certs.args() + ["--timeout", "30"]) as d:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # A small receive buffer (no autotuning): the replies back up at once.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
            raw.settimeout(30)
            raw.connect(("127.0.0.1", d.port))
            c = h.Client.over(raw, timeout=30)  # for the plaintext part
            c.expect_greeting()
            c.hello()
            c.expect("STARTTLS", 220)
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = h.tls_client_context(certs.ca).wrap_bio(incoming, outgoing, server_hostname="localhost")
            while True:  # the handshake over the raw socket
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    raw.sendall(outgoing.read())
                    chunk = raw.recv(65536)
                    check(chunk, "closed during the handshake")
                    incoming.write(chunk)
            raw.sendall(outgoing.read())
            count = 100000
            tls.write(b"EHLO client.example\r\n" * count + b"QUIT\r\n")
            blob = outgoing.read()  # every record, encrypted before anything is read
            sent = [0]

            def send_all():
                with contextlib.suppress(OSError):
                    for i in range(0, len(blob), 4096):
                        raw.sendall(blob[i:i + 4096])
                        sent[0] = i + 4096

            sender = threading.Thread(target=send_all, daemon=True)
            sender.start()
            # The server stops reading once its output is blocked and the session's
            # input buffer is full: bytes wait in its socket's receive queue, unread.
            client_port = raw.getsockname()[1]
            last = [None, time.monotonic()]

            def stalled():
                rx = _server_rx_queue(d.port, client_port)
                if rx != last[0]:
                    last[0], last[1] = rx, time.monotonic()
                return rx and time.monotonic() - last[1] > 0.5
            h.wait_for(stalled, 30, "the server to stop reading")
            # Now read everything: count EHLO replies, then the 221 and the end.
            text = bytearray()
            deadline = time.monotonic() + 60
            while True:
                if time.monotonic() >= deadline:
                    raise AssertionError("replies still missing after 60 s: %d EHLO replies"
                                         % text.count(b"250-test.local"))
                try:
                    chunk = raw.recv(65536)
                except socket.timeout:
                    raise AssertionError("the server went silent: %d EHLO replies of %d, log %s"
                                         % (text.count(b"250-test.local"), count, d.log()[-1500:]))
                if chunk:
                    incoming.write(chunk)
                else:
                    incoming.write_eof()
                try:
                    while True:
                        plain = tls.read(65536)
                        if not plain:  # close_notify
                            break
                        text += plain
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    pass
                if not chunk:
                    break
            sender.join(30)
            check(text.count(b"250-test.local") == count, "EHLO replies: %d of %d"
                  % (text.count(b"250-test.local"), count))
            check(text.endswith(b"221 2.0.0 Bye\r\n") or re.search(rb"221 [^\r]*\r\n$", text),
                  "the last reply is not the 221: %r" % text[-200:])
            check(sent[0] >= len(blob), "the sender did not finish: %d of %d" % (sent[0], len(blob)))
        finally:
            raw.close()


# ---------------------------------------------------------------- failed and silent handshakes


def test_garbage_instead_of_a_client_hello_closes_and_the_worker_serves_on():
    with Certs() as certs, Smtpd(certs.args() + ["--workers", "1"]) as d:
        workers = d.worker_pids()
        check(len(workers) == 1, "workers: %s" % workers)
        before = _disconnects(d)
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.expect("STARTTLS", 220)
        c.send(b"EHLO this is not a TLS ClientHello\r\n" * 4)
        data = c.wait_closed(10)
        check(data == b"", "a reply after a failed handshake: %r" % data)
        c.close()
        d.wait_log(r"TLS handshake failed from unknown\[127\.0\.0\.1\]: \S")
        counts = _disconnect_line(d, before)
        check(counts == " ehlo=1 starttls=1 commands=2", "disconnect line counts: %r" % counts)
        # The same worker, alive, serves a new session, in TLS too.
        _deliver_over_tls(d, certs)
        check(d.worker_pids() == workers, "the worker changed: %s -> %s" % (workers, d.worker_pids()))
        check(len(d.new("alice")) == 1, "no delivery after the failed handshake")
        check("died" not in d.log(), "a process died: %s" % d.log()[-2000:])


def test_a_client_silent_after_220_is_closed_at_the_command_timeout_without_a_reply():
    with Certs() as certs, Smtpd(certs.args() + ["--timeout", "2"]) as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.expect("STARTTLS", 220)
        started = time.monotonic()
        data = c.wait_closed(15)
        waited = time.monotonic() - started
        check(data == b"", "bytes sent in place of a handshake: %r" % data)
        check(1.5 <= waited <= 10, "closed after %.1f s, expected about 2 s" % waited)
        c.close()
        d.wait_log(r"timeout after STARTTLS from unknown\[127\.0\.0\.1\]$")


def test_a_handshake_that_stops_halfway_is_bounded_by_the_command_timeout():
    # A ClientHello, then silence: the server answers it and waits for the rest.
    with Certs() as certs, Smtpd(certs.args() + ["--timeout", "2"]) as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.expect("STARTTLS", 220)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = h.tls_client_context(certs.ca).wrap_bio(incoming, outgoing, server_hostname="localhost")
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        c.send(outgoing.read())
        started = time.monotonic()
        data = c.wait_closed(15)
        waited = time.monotonic() - started
        check(data.startswith(b"\x16\x03"), "no ServerHello: %r" % data[:20])
        check(1.5 <= waited <= 10, "closed after %.1f s, expected about 2 s" % waited)
        c.close()
        d.wait_log(r"timeout after STARTTLS from unknown\[127\.0\.0\.1\]$")


# ---------------------------------------------------------------- require_tls


def test_require_tls_applies_to_relay_clients_only():
    with Certs() as certs, Smtpd(certs.args() + ["--require-tls", "--relay-net", "127.0.0.1/32"]) as d:
        # A relay client: 530 5.7.0 before STARTTLS (RFC 3207 §4), 250 after.
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<a@client.example>", 530, "5.7.0")
        _starttls(c, certs)
        c.hello()
        check_reply(c.transaction("a@client.example", ["carol@remote.example", "alice@test.local"],
                                  dot_encode(BODY)), 250)
        c.expect("QUIT", 221)
        c.close()
        check(len(d.new("alice")) == 1 and len(d.queue_ids()) == 1, "relay client's message not stored")
        # Not a relay client: local delivery needs no TLS (§4: "MUST NOT require ...
        # in order to deliver mail locally"); relaying is refused as always.
        c = d.client(source="127.0.0.2")
        c.expect_greeting()
        check("STARTTLS" in _ehlo_keywords(c.hello()), "STARTTLS not offered to a non-relay client")
        c.expect("MAIL FROM:<b@client.example>", 250)
        c.expect("RCPT TO:<carol@remote.example>", 554, "5.7.1")
        c.expect("RCPT TO:<bob@test.local>", 250)
        c.expect("DATA", 354)
        c.send(dot_encode(BODY))
        check_reply(c.reply(), 250)
        c.expect("QUIT", 221)
        c.close()
        _, received, _ = split_trace(d.only_message("bob"))
        check(h.parse_received(received).group("proto") == "ESMTP", "plaintext Received: %r" % received)
        check(re.search(r"started: .* tls=required$", d.log(), re.M), "the start line does not say tls=required")


# ---------------------------------------------------------------- configuration


def _check_config(*args):
    with tempfile.NamedTemporaryFile("w", suffix=".cfg") as empty:
        return h.run_bounded([h.SMTPD, "--check-config", "-c", empty.name] + list(args), 20)


def test_tls_configuration_errors_exit_78_with_the_reason():
    with Certs() as certs:
        other = tls_certs.make_certs(os.path.join(certs.dir, "other"))
        missing = os.path.join(certs.dir, "missing.pem")
        cases = [
            (["--tls-cert", certs.server], r"tls_cert: set without tls_key"),
            (["--tls-key", certs.server_key], r"tls_key: set without tls_cert"),
            (["--tls-cert", missing, "--tls-key", certs.server_key],
             re.escape(missing) + r".*No such file or directory"),
            (["--tls-cert", certs.server, "--tls-key", missing], re.escape(missing) + r".*No such file"),
            (["--tls-cert", certs.server, "--tls-key", other["server_key"]], r"does not match"),
            (["--tls-cert", certs.server, "--tls-key", certs.selfsigned_key], r"does not match"),
            (["--tls-cert", certs.server_key, "--tls-key", certs.server_key], r"tls_cert"),
            (["--require-tls"], r"require_tls: needs tls_cert and tls_key"),
        ]
        for args, reason in cases:
            status, out, err = _check_config(*args)
            check(status == EXIT_CONFIG, "%s: exit %d, expected 78; stderr %r" % (args, status, err))
            check(re.search(reason, err), "%s: stderr does not say /%s/: %r" % (args, reason, err))
        for args in (certs.args(), certs.args() + ["--require-tls"], ["--no-require-tls"]):
            status, out, err = _check_config(*args)
            check(status == 0, "%s: exit %d; stderr %r" % (args, status, err))
        # A daemon started with a bad key refuses to start the same way.
        try:
            with Smtpd(["--tls-cert", certs.server, "--tls-key", certs.selfsigned_key]):
                raise AssertionError("smtpd started with a key that does not match")
        except h.ConfigRefused as e:
            check("does not match" in e.stderr, "stderr: %r" % e.stderr)


def test_the_example_config_with_tls_settings_uncommented_is_valid():
    example = os.path.join(h.SOURCE_ROOT, "apps", "smtpd", "smtpd.cfg.example")
    with open(example) as f:
        text = f.read()
    for key in ("tls_cert", "tls_key", "require_tls"):
        check(re.search(r"^# %s = " % key, text, re.M), "%s is not in the example (commented out)" % key)
    with Certs() as certs:
        # The example's own lines, uncommented, with paths that exist here.
        lines = []
        for line in text.splitlines():
            m = re.match(r"^# (tls_cert|tls_key|require_tls) = ", line)
            if m:
                value = {"tls_cert": '"%s"' % certs.server, "tls_key": '"%s"' % certs.server_key,
                         "require_tls": "true"}[m.group(1)]
                line = "%s = %s;" % (m.group(1), value)
            elif re.match(r"^\s*(mail_root|queue_root|log_file|user) = ", line):
                continue  # paths and a user of the target system
            lines.append(line)
        cfg = os.path.join(certs.dir, "smtpd.cfg")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        status, out, err = h.run_bounded([h.SMTPD, "--check-config", "-c", cfg], 20)
        check(status == 0, "the example with TLS on: exit %d; stderr %r" % (status, err))


# ---------------------------------------------------------------- reload


def _install(src_certs, live_dir):
    """Copies a server certificate and key to the live paths, each by rename, so
    the daemon never reads a half-written file."""
    for src, name in ((src_certs.server, "server.pem"), (src_certs.server_key, "server.key")):
        tmp = os.path.join(live_dir, name + ".new")
        shutil.copyfile(src, tmp)
        os.replace(tmp, os.path.join(live_dir, name))


def _fingerprint_of_new_session(d, context):
    c = d.client()
    c.expect_greeting()
    c.hello()
    _starttls(c, context)
    fingerprint = c.peer_certificate_sha256()
    c.hello()
    c.expect("QUIT", 221)
    c.close()
    return fingerprint


def _reload_and_wait(d, old_workers):
    """SIGHUP; waits for a new worker and for every old one to stop accepting."""
    marks = len(re.findall(r"worker \d+: draining", d.log()))
    d.signal(signal.SIGHUP)
    h.wait_for(lambda: [p for p in d.worker_pids() if p not in old_workers], 15, "a new worker after SIGHUP")
    d.wait_log(r"worker \d+: draining", count=marks + len(old_workers))


def test_sighup_loads_new_certificate_files_for_new_sessions_while_an_old_one_finishes():
    with Certs() as a, Certs() as b:
        live = os.path.join(a.dir, "live")
        os.mkdir(live)
        _install(a, live)
        args = ["--tls-cert", os.path.join(live, "server.pem"), "--tls-key", os.path.join(live, "server.key"),
                "--workers", "1"]
        with Smtpd(args) as d:
            both = h.tls_client_context(a.ca, b.ca)
            # The old session: in TLS with certificate A, in the middle of a transaction.
            old = d.client()
            old.expect_greeting()
            old.hello()
            _starttls(old, both)
            check(old.peer_certificate_sha256() == h.certificate_sha256(a.server), "not certificate A at first")
            old.hello()
            old.expect("MAIL FROM:<a@client.example>", 250)
            old.expect("RCPT TO:<alice@test.local>", 250)

            _install(b, live)
            _reload_and_wait(d, d.worker_pids())
            fingerprint = _fingerprint_of_new_session(d, both)
            check(fingerprint == h.certificate_sha256(b.server), "a new session after SIGHUP still gets A")
            # Trusting only B's CA is enough now.
            _fingerprint_of_new_session(d, h.tls_client_context(b.ca))

            # The old session finishes on its old worker, still in TLS.
            old.expect("DATA", 354)
            old.send(dot_encode(BODY))
            check_reply(old.reply(), 250, what="the old session after SIGHUP")
            old.expect("QUIT", 221)
            old.close()
            _, received, rest = split_trace(d.only_message("alice"))
            check(h.parse_received_tls(received).group("proto") == "ESMTPS" and rest == BODY,
                  "the old session's message: %r" % received)

            # A key that does not match the certificate refuses the reload: B stays.
            shutil.copyfile(a.server_key, os.path.join(live, "server.key"))
            d.signal(signal.SIGHUP)
            d.wait_log(r"reload refused: tls_key .*does not match")
            check(_fingerprint_of_new_session(d, both) == h.certificate_sha256(b.server),
                  "a refused reload changed the certificate")


def test_as_root_a_key_only_root_reads_loads_at_start_and_refuses_a_reload_as_the_user():
    if not h.is_root():
        raise h.Skip("not root")
    try:
        uid = pwd.getpwnam("nobody").pw_uid
        gid = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        raise h.Skip("no user nobody or group nogroup here")
    with Certs() as a, Certs() as b:
        live = os.path.join(a.dir, "live")
        os.mkdir(live)
        os.chmod(a.dir, 0o755)
        os.chmod(live, 0o755)
        _install(a, live)
        key = os.path.join(live, "server.key")
        os.chmod(key, 0o600)  # root's alone

        def prepare(d):
            os.chmod(d.dir, 0o755)
            for path in (d.mail, d.queue, d.log_dir):
                os.chown(path, uid, gid)

        args = ["--tls-cert", os.path.join(live, "server.pem"), "--tls-key", key, "--workers", "1",
                "--user", "nobody", "--group", "nogroup"]
        with Smtpd(args, prepare=prepare) as d:
            both = h.tls_client_context(a.ca, b.ca)
            # Loaded by the master before it dropped privileges.
            check(_fingerprint_of_new_session(d, both) == h.certificate_sha256(a.server), "not certificate A")
            _install(b, live)
            os.chmod(key, 0o600)
            d.signal(signal.SIGHUP)
            d.wait_log(r"reload refused: tls_key .*Permission denied")
            check(_fingerprint_of_new_session(d, both) == h.certificate_sha256(a.server),
                  "a refused reload changed the certificate")
            # Readable by the user: the reload takes it.
            os.chown(key, uid, gid)
            _reload_and_wait(d, d.worker_pids())
            check(_fingerprint_of_new_session(d, both) == h.certificate_sha256(b.server),
                  "certificate B not used after a reload with a readable key")
            _deliver_over_tls(d, b)
            check(len(d.new("alice")) == 1, "no delivery as nobody over TLS")


if __name__ == "__main__":
    h.main([
        test_without_certificate_starttls_is_not_offered_and_gets_502,
        test_starttls_is_offered_and_mail_arrives_over_tls_with_esmtps_and_the_tls_comment,
        test_smtplib_starttls_verifies_the_certificate_and_delivers,
        test_a_client_trusting_another_ca_fails_the_handshake_and_the_worker_logs_it,
        test_openssl_s_client_starttls_delivers_a_message,
        test_swaks_tls_delivers_a_message,
        test_rset_pipelined_behind_starttls_is_discarded,
        test_mail_pipelined_behind_starttls_starts_no_transaction,
        test_pipelined_commands_beyond_every_buffer_are_all_answered_in_tls,
        test_garbage_instead_of_a_client_hello_closes_and_the_worker_serves_on,
        test_a_client_silent_after_220_is_closed_at_the_command_timeout_without_a_reply,
        test_a_handshake_that_stops_halfway_is_bounded_by_the_command_timeout,
        test_require_tls_applies_to_relay_clients_only,
        test_tls_configuration_errors_exit_78_with_the_reason,
        test_the_example_config_with_tls_settings_uncommented_is_valid,
        test_sighup_loads_new_certificate_files_for_new_sessions_while_an_old_one_finishes,
        test_as_root_a_key_only_root_reads_loads_at_start_and_refuses_a_reload_as_the_user,
    ])
