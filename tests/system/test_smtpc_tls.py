#!/usr/bin/env python3
"""smtpc's STARTTLS (RFC 3207) against real peers: the levels none, may, encrypt and
verify, tls_policy per domain, hostile STARTTLS answers, and smtpd to smtpd over TLS.

  test_smtpc_tls.py SMTPD SMTPC [CASE...]

Peers:
 - aiosmtpd (python3-aiosmtpd) on 127.0.0.1, offering STARTTLS when given a
   certificate (TlsPeer below): its handler records each envelope, whether the
   session was in TLS and the TLS version; its STARTTLS commands are counted;
 - recording_server.RecordingServer with `starttls` set: STARTTLS answered 454, or 220
   followed by a close, by bytes that are no TLS, or by an injected plaintext reply;
 - a second smtpd started with --tls-cert/--tls-key, as the destination end to end.
Certificates come from tls_certs.make_certs: a test CA, a server certificate it signed
for mx.tls.test (and 127.0.0.1), and a self-signed one. Names resolve through the
harness's private dnsmasq (mx.tls.test, other.tls.test -> 127.0.0.1), never through
the machine's resolver.

What smtpc must do (the settings tls_level, tls_policy, tls_ca_file):
 - may (the default): STARTTLS when offered, the certificate not required to verify
   ("Untrusted TLS connection established to ..."; "Verified" when it does); plaintext
   when STARTTLS is not offered or is refused (on the same connection);
 - none: no STARTTLS even when offered;
 - encrypt: TLS or nothing: no STARTTLS offered (or refused) defers with 4.7.4;
 - verify: as encrypt, and the chain must verify against tls_ca_file (or the system's
   store) and the certificate carry the route host's name, else the handshake fails
   (4.7.5, the reason in the log);
 - a handshake that fails is a temporary failure (4.7.5), never a retry in plaintext;
 - tls_policy's level for a domain wins over tls_level, and jobs of different levels
   to one host do not share a session.
"""
import os
import re
import shutil
import tempfile
import time

import smtpc_harness as ch
import smtpd_harness as h
from recording_server import RecordingServer
from smtpc_harness import RELAY, Smtpc, TlsPeer, check, inject, message, wait_queue_empty
from smtpd_harness import Dnsmasq, Smtpd
from tls_certs import make_certs

DNS_RECORDS = ["--host-record=mx.tls.test,127.0.0.1", "--host-record=other.tls.test,127.0.0.1"]
ESTABLISHED = re.compile(r"(Verified|Untrusted) TLS connection established to (\S+): (TLSv[\d.]+) "
                         r"with cipher (\S+) \((\d+)/(\d+) bits\)")

_certs = None


def certs():
    """The test certificates (made once per run, in a temp dir removed at exit)."""
    global _certs
    if _certs is None:
        directory = tempfile.mkdtemp(prefix="smtpc-systest-certs-")
        import atexit
        atexit.register(shutil.rmtree, directory, True)
        _certs = make_certs(directory, ["mx.tls.test", "IP:127.0.0.1"])
    return _certs


# ---------------------------------------------------------------- helpers


def run_once(d, args, timeout=60):
    """smtpc --once: one attempt at everything due; returns the Smtpc (log kept)."""
    c = Smtpc(d, args)
    try:
        status, out, err = c.run(["--once"], timeout=timeout)
        check(status == 0, "smtpc --once exited %d: %s; log: %s" % (status, err[-2000:], c.log()[-3000:]))
    finally:
        c._cleanup()
    return c


def established(c):
    return [m for m in (ESTABLISHED.search(l) for l in c.log().splitlines()) if m]


def check_deferred(d, c, code, count=1):
    """One attempt deferred every recipient with `code` (4.7.4, 4.7.5) in the log,
    and the messages stay queued."""
    lines = [l for l in c.log().splitlines() if "status=deferred" in l]
    check(len(lines) == count, "expected %d deferred recipient(s), log: %s" % (count, c.log()[-3000:]))
    for l in lines:
        check(code in l, "deferred without %s: %s" % (code, l))
    check("status=sent" not in c.log(), "something was sent: %s" % c.log()[-3000:])
    check(len(d.queue_ids()) == count, "queue: %s" % d.queue_ids())


def tls_args(dns, *extra):
    return ["--dns-server", dns.server, "--dns-timeout", "5s", "--retry-min", "1h"] + list(extra)


# ---------------------------------------------------------------- may


def test_may_is_the_default_and_delivers_over_tls_that_is_untrusted_without_the_ca():
    p = certs()
    with Smtpd(RELAY) as d, TlsPeer(p["server"], p["server_key"]) as peer:
        inject(d, "alice@test.local", ["bob@remote.test"], message("may untrusted"))
        c = run_once(d, ["--route", "remote.test=" + peer.address])
        got = peer.wait_messages(1)
        check(got[0]["rcpts"] == ["bob@remote.test"], "delivered: %s" % got)
        check(got[0]["tls"] in ("TLSv1.2", "TLSv1.3"), "the peer saw no TLS: %s" % got[0])
        lines = established(c)
        check(len(lines) == 1, "expected one TLS line: %s" % c.log()[-3000:])
        kind, relay, version, cipher, bits, bits2 = lines[0].groups()
        check(kind == "Untrusted", "the certificate verified without a CA: %s" % lines[0].group(0))
        check(relay == "127.0.0.1[127.0.0.1]:%d" % peer.port, "relay: %s" % relay)
        check(version == got[0]["tls"] and cipher == got[0]["cipher"],
              "logged %s %s, the peer saw %s %s" % (version, cipher, got[0]["tls"], got[0]["cipher"]))
        check(int(bits) >= 128 and bits == bits2, "bits: %s/%s" % (bits, bits2))
        check(re.search(r"to=<bob@remote.test>, relay=127.0.0.1\[127.0.0.1\]:%d, .*status=sent" % peer.port,
                        c.log()), "no sent line: %s" % c.log()[-3000:])
        check(not d.queue_ids(), "queue: %s" % d.queue_ids())


def test_may_with_the_ca_file_and_the_right_name_is_verified():
    p = certs()
    with Dnsmasq(DNS_RECORDS) as dns, Smtpd(RELAY) as d, TlsPeer(p["server"], p["server_key"]) as peer:
        inject(d, "alice@test.local", ["bob@remote.test"], message("may verified"))
        c = run_once(d, tls_args(dns, "--route", "remote.test=mx.tls.test:%d" % peer.port,
                                 "--tls-ca-file", p["ca"]))
        got = peer.wait_messages(1)
        check(got[0]["tls"] is not None, "the peer saw no TLS: %s" % got[0])
        lines = established(c)
        check(len(lines) == 1 and lines[0].group(1) == "Verified",
              "expected Verified: %s" % c.log()[-3000:])
        check(lines[0].group(2) == "mx.tls.test[127.0.0.1]:%d" % peer.port, "relay: %s" % lines[0].group(2))


def test_may_against_a_server_without_starttls_delivers_in_plaintext():
    with Smtpd(RELAY) as d, TlsPeer() as peer:
        inject(d, "alice@test.local", ["bob@remote.test"], message("may plaintext"))
        c = run_once(d, ["--route", "remote.test=" + peer.address])
        got = peer.wait_messages(1)
        check(got[0]["tls"] is None, "TLS without a certificate? %s" % got[0])
        check(peer.starttls == 0, "STARTTLS sent though not offered: %d" % peer.starttls)
        check(not established(c) and "TLS handshake" not in c.log(), "TLS in the log: %s" % c.log()[-3000:])
        check(not d.queue_ids(), "queue: %s" % d.queue_ids())


def test_may_with_starttls_refused_goes_on_in_plaintext_on_the_same_connection():
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        srv.starttls = "refuse"
        inject(d, "alice@test.local", ["bob@remote.test"], message("may refused"))
        run_once(d, ["--route", "remote.test=" + srv.address])
        srv.wait_messages(1)
        conns = srv.connections()
        check(len(conns) == 1, "connections: %d" % len(conns))
        verbs = [c.split(b" ")[0].upper() for c in conns[0].commands]
        check(verbs[:3] == [b"EHLO", b"STARTTLS", b"MAIL"], "commands: %s" % conns[0].commands)
        check(not d.queue_ids(), "queue: %s" % d.queue_ids())


def test_none_never_sends_starttls_even_when_offered():
    p = certs()
    with Smtpd(RELAY) as d, TlsPeer(p["server"], p["server_key"]) as peer:
        inject(d, "alice@test.local", ["bob@remote.test"], message("none"))
        c = run_once(d, ["--route", "remote.test=" + peer.address, "--tls-level", "none"])
        got = peer.wait_messages(1)
        check(got[0]["tls"] is None, "delivered over TLS at level none: %s" % got[0])
        check(peer.starttls == 0, "STARTTLS sent at level none: %d" % peer.starttls)
        check(not established(c), "TLS in the log: %s" % c.log()[-3000:])


# ---------------------------------------------------------------- encrypt and verify


def test_encrypt_against_a_server_without_starttls_defers_with_4_7_4_and_keeps_the_message():
    with Smtpd(RELAY) as d, TlsPeer() as peer:
        inject(d, "alice@test.local", ["bob@remote.test"], message("encrypt plaintext"))
        c = run_once(d, ["--route", "remote.test=" + peer.address, "--tls-level", "encrypt",
                         "--retry-min", "1h"])
        check(not peer.messages(), "delivered without TLS: %s" % peer.messages())
        check(peer.connections == 1, "connections: %d" % peer.connections)
        check_deferred(d, c, "4.7.4")
        check("STARTTLS was not offered" in c.log(), "reason: %s" % c.log()[-3000:])
        fields, rcpts = d.envelope(d.queue_ids()[0])
        check(len(rcpts) == 1 and "4.7.4" in str(rcpts[0]), "the envelope does not say why: %s" % rcpts)


def test_encrypt_with_starttls_refused_defers_with_4_7_4():
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        srv.starttls = "refuse"
        inject(d, "alice@test.local", ["bob@remote.test"], message("encrypt refused"))
        c = run_once(d, ["--route", "remote.test=" + srv.address, "--tls-level", "encrypt", "--retry-min", "1h"])
        check(not srv.messages(), "delivered: %s" % srv.messages())
        check(all(b"MAIL" not in cmd.upper() for conn in srv.connections() for cmd in conn.commands),
              "MAIL sent: %s" % [conn.commands for conn in srv.connections()])
        check_deferred(d, c, "4.7.4")


def test_encrypt_accepts_an_untrusted_certificate():
    p = certs()
    with Smtpd(RELAY) as d, TlsPeer(p["selfsigned"], p["selfsigned_key"]) as peer:
        inject(d, "alice@test.local", ["bob@remote.test"], message("encrypt selfsigned"))
        c = run_once(d, ["--route", "remote.test=" + peer.address, "--tls-level", "encrypt"])
        got = peer.wait_messages(1)
        check(got[0]["tls"] is not None, "no TLS: %s" % got[0])
        lines = established(c)
        check(len(lines) == 1 and lines[0].group(1) == "Untrusted", "log: %s" % c.log()[-3000:])


def test_verify_against_a_self_signed_certificate_without_the_ca_defers_and_says_why():
    p = certs()
    with Dnsmasq(DNS_RECORDS) as dns, Smtpd(RELAY) as d, \
            TlsPeer(p["selfsigned"], p["selfsigned_key"]) as peer:
        inject(d, "alice@test.local", ["bob@remote.test"], message("verify selfsigned"))
        c = run_once(d, tls_args(dns, "--route", "remote.test=mx.tls.test:%d" % peer.port,
                                 "--tls-level", "verify"))
        check(not peer.messages(), "delivered: %s" % peer.messages())
        check_deferred(d, c, "4.7.5")
        failed = [l for l in c.log().splitlines()
                  if "TLS handshake with mx.tls.test[127.0.0.1]:%d failed:" % peer.port in l]
        check(len(failed) == 1, "no handshake failure line: %s" % c.log()[-3000:])
        check("self-signed certificate" in failed[0] or "self signed certificate" in failed[0],
              "the reason is not given: %s" % failed[0])
        check(not established(c), "TLS established: %s" % c.log()[-3000:])


def test_verify_with_the_ca_file_and_the_right_name_delivers_verified():
    p = certs()
    with Dnsmasq(DNS_RECORDS) as dns, Smtpd(RELAY) as d, TlsPeer(p["server"], p["server_key"]) as peer:
        inject(d, "alice@test.local", ["bob@remote.test"], message("verify ok"))
        c = run_once(d, tls_args(dns, "--route", "remote.test=mx.tls.test:%d" % peer.port,
                                 "--tls-level", "verify", "--tls-ca-file", p["ca"]))
        got = peer.wait_messages(1)
        check(got[0]["tls"] is not None, "no TLS: %s" % got[0])
        lines = established(c)
        check(len(lines) == 1 and lines[0].group(1) == "Verified", "log: %s" % c.log()[-3000:])
        check(not d.queue_ids(), "queue: %s" % d.queue_ids())


def test_verify_with_the_right_ca_but_a_name_the_certificate_lacks_defers():
    p = certs()
    with Dnsmasq(DNS_RECORDS) as dns, Smtpd(RELAY) as d, TlsPeer(p["server"], p["server_key"]) as peer:
        inject(d, "alice@test.local", ["bob@remote.test"], message("verify wrong name"))
        c = run_once(d, tls_args(dns, "--route", "remote.test=other.tls.test:%d" % peer.port,
                                 "--tls-level", "verify", "--tls-ca-file", p["ca"]))
        check(not peer.messages(), "delivered: %s" % peer.messages())
        check_deferred(d, c, "4.7.5")
        failed = [l for l in c.log().splitlines() if "TLS handshake with other.tls.test[127.0.0.1]" in l]
        check(len(failed) == 1 and "hostname mismatch" in failed[0], "log: %s" % c.log()[-3000:])


def test_a_bad_ca_file_is_a_configuration_error():
    with Smtpd(RELAY) as d:
        c = Smtpc(d)
        try:
            status, out, err = c.run(["--tls-ca-file", "/nonexistent/ca.pem", "--check-config"])
            check(status == 78 and "tls_ca_file" in err, "status %d, stderr %r" % (status, err))
            not_pem = os.path.join(c.dir, "not.pem")
            with open(not_pem, "w") as f:
                f.write("this is no certificate\n")
            status, out, err = c.run(["--tls-ca-file", not_pem, "--check-config"])
            check(status == 78 and "tls_ca_file" in err, "status %d, stderr %r" % (status, err))
            status, out, err = c.run(["--tls-policy", "remote.test=secure", "--check-config"])
            check(status == 78 and "tls-policy" in err, "status %d, stderr %r" % (status, err))
            status, out, err = c.run(["--tls-level", "dane", "--check-config"])
            check(status == 78 and "tls-level" in err, "status %d, stderr %r" % (status, err))
            status, out, err = c.run(["--tls-ca-file", certs()["ca"], "--tls-policy", "Remote.Test=verify",
                                      "--tls-level", "none", "--check-config"])
            check(status == 0, "status %d, stderr %r" % (status, err))
        finally:
            c._cleanup()


# ---------------------------------------------------------------- tls_policy


def test_tls_policy_overrides_tls_level_per_domain_and_levels_never_share_a_session():
    p = certs()
    with Smtpd(RELAY) as d, TlsPeer(p["server"], p["server_key"]) as peer:
        # One message to both domains, both routed to the one peer: two jobs, two levels.
        inject(d, "alice@test.local", ["plain@plain.test", "secure@secure.test"], message("policy"))
        run_once(d, ["--route", "plain.test=" + peer.address, "--route", "secure.test=" + peer.address,
                     "--tls-level", "none", "--tls-policy", "Secure.Test=encrypt"])
        got = peer.wait_messages(2)
        by_rcpt = {m["rcpts"][0]: m for m in got}
        check(sorted(by_rcpt) == ["plain@plain.test", "secure@secure.test"], "delivered: %s" % got)
        check(by_rcpt["secure@secure.test"]["tls"] is not None, "secure.test without TLS: %s" % got)
        check(by_rcpt["plain@plain.test"]["tls"] is None, "plain.test over TLS: %s" % got)
        check(peer.connections == 2, "expected two sessions, got %d" % peer.connections)
        check(peer.starttls == 1, "STARTTLS count: %d" % peer.starttls)
        check(not d.queue_ids(), "queue: %s" % d.queue_ids())


def test_tls_policy_can_lower_the_level_for_one_domain():
    with Smtpd(RELAY) as d, TlsPeer() as peer:
        inject(d, "alice@test.local", ["a@legacy.test"], message("policy lower"))
        inject(d, "alice@test.local", ["b@strict.test"], message("policy strict"))
        c = run_once(d, ["--route", "legacy.test=" + peer.address, "--route", "strict.test=" + peer.address,
                         "--tls-level", "encrypt", "--tls-policy", "legacy.test=may", "--retry-min", "1h"])
        got = peer.wait_messages(1)
        check([m["rcpts"] for m in got] == [["a@legacy.test"]], "delivered: %s" % got)
        check(re.search(r"to=<b@strict.test>.*status=deferred.*4\.7\.4", c.log()), "log: %s" % c.log()[-3000:])
        check(len(d.queue_ids()) == 1, "queue: %s" % d.queue_ids())


# ---------------------------------------------------------------- hostile STARTTLS


def hostile_starttls_case(action, code):
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        srv.starttls = action
        inject(d, "alice@test.local", ["bob@remote.test"], message("starttls " + action))
        c = run_once(d, ["--route", "remote.test=" + srv.address, "--retry-min", "1h"])  # may
        check(not srv.messages(), "delivered: %s" % srv.messages())
        conns = srv.connections()
        check(len(conns) == 1, "smtpc came back (in plaintext?): %d connections" % len(conns))
        check(conns[0].starttls == 1, "STARTTLS count: %d" % conns[0].starttls)
        check(all(b"MAIL" not in cmd.upper() for cmd in conns[0].commands), "commands: %s" % conns[0].commands)
        check_deferred(d, c, code)
        return c


def test_may_with_garbage_after_the_220_to_starttls_defers_with_4_7_5_never_plaintext():
    c = hostile_starttls_case("garbage", "4.7.5")
    check("TLS handshake with 127.0.0.1[127.0.0.1]" in c.log(), "log: %s" % c.log()[-3000:])


def test_may_with_the_server_closing_after_the_220_to_starttls_defers_with_4_7_5():
    hostile_starttls_case("close", "4.7.5")


def test_may_with_plaintext_injected_after_the_220_to_starttls_defers_and_starts_no_tls():
    c = hostile_starttls_case("inject", "4.")
    check("TLS handshake" not in c.log() and not established(c), "a handshake ran: %s" % c.log()[-3000:])
    check("data after the 220 reply to STARTTLS" in c.log(), "log: %s" % c.log()[-3000:])


def test_a_server_silent_during_the_handshake_times_out_as_a_tls_failure():
    # 220 to STARTTLS, then nothing: the handshake is bounded by command_timeout.
    with Smtpd(RELAY) as d, RecordingServer() as srv:
        srv.starttls = "stall"
        inject(d, "alice@test.local", ["bob@remote.test"], message("starttls silent"))
        started = time.monotonic()
        c = run_once(d, ["--route", "remote.test=" + srv.address, "--retry-min", "1h", "--command-timeout", "2s"])
        took = time.monotonic() - started
        check(took < 20, "the handshake was not bounded: %.1f s" % took)
        check_deferred(d, c, "4.7.5")
        check(re.search(r"TLS handshake with \S+ failed: timed out after 2s", c.log()), "log: %s" % c.log()[-3000:])


# ---------------------------------------------------------------- the daemon, end to end


def test_the_daemon_sends_two_messages_over_one_tls_session():
    # smtpc as a daemon: two messages to one TLS peer at level may share one session.
    p = certs()
    with Smtpd(RELAY) as d, TlsPeer(p["server"], p["server_key"]) as peer:
        with Smtpc(d, ["--route", "remote.test=" + peer.address, "--idle-timeout", "30s"]) as c:
            inject(d, "alice@test.local", ["one@remote.test"], message("daemon one"))
            peer.wait_messages(1)
            inject(d, "alice@test.local", ["two@remote.test"], message("daemon two"))
            got = peer.wait_messages(2)
            wait_queue_empty(d, c=c)
        check(all(m["tls"] for m in got), "not all over TLS: %s" % got)
        check(peer.connections == 1 and peer.starttls == 1,
              "connections %d, STARTTLS %d" % (peer.connections, peer.starttls))
        check(len(established(c)) == 1, "log: %s" % c.log()[-3000:])


def test_a_large_message_over_tls_arrives_byte_exact():
    # 4 MiB through TLS records: writes that fill the socket (want_write) and resume.
    p = certs()
    line = "".join(chr(33 + i % 90) for i in range(998))
    body = "\r\n".join(("." if i % 7 == 0 else "") + line[: 990 - i % 50] for i in range(4200))
    sent = message("large over tls", body=body)
    with Smtpd(RELAY) as d, TlsPeer(p["server"], p["server_key"]) as peer:
        inject(d, "alice@test.local", ["big@remote.test"], sent)
        run_once(d, ["--route", "remote.test=" + peer.address], timeout=120)
        got = peer.wait_messages(1)
        check(got[0]["tls"] is not None, "no TLS: %s" % got[0]["tls"])
        received, rest = ch.strip_received(got[0]["data"])
        check(received.startswith(b"Received: "), "no Received: %r" % got[0]["data"][:300])
        check(rest == sent, "content differs: %d bytes sent, %d arrived" % (len(sent), len(rest)))


def test_swaks_smtpd_queue_smtpc_to_an_smtpd_with_tls_arrives_with_esmtps():
    if shutil.which("swaks") is None:
        raise h.Skip("swaks is not installed")
    p = certs()
    tls = ["--tls-cert", p["server"], "--tls-key", p["server_key"]]
    # swaks speaks plaintext (its TLS needs Net::SSLeay, which is not a dependency);
    # the hop under test is smtpc's.
    with Dnsmasq(DNS_RECORDS) as dns, Smtpd(RELAY + tls) as d, \
            Smtpd(tls + ["--hostname", "mx.tls.test", "--local-domain", "dest.test"]) as dest:
        status, out, err = h.run_bounded(
            ["swaks", "--server", "127.0.0.1", "--port", str(d.port), "--helo", "client.test",
             "--from", "alice@test.local", "--to", "carol@dest.test", "--header", "Subject: end to end tls",
             "--body", "over TLS twice"], 60)
        check(status == 0, "swaks failed (%d): %s %s" % (status, out[-2000:], err[-2000:]))
        with Smtpc(d, tls_args(dns, "--route", "dest.test=mx.tls.test:%d" % dest.port,
                               "--tls-level", "verify", "--tls-ca-file", p["ca"])) as c:
            h.wait_for(lambda: dest.new("carol"), 30, "the message in carol's Maildir")
            wait_queue_empty(d, c=c)
        data = h.read_bytes(dest.new("carol")[0])
        # Return-Path, the destination's Received (smtpc's hop), then the first
        # smtpd's (swaks's hop), then what swaks sent.
        _, last_hop, rest = h.split_trace(data)
        first_hop, rest = ch.strip_received(rest)
        check(b"with ESMTPS" in last_hop, "the destination's Received says no ESMTPS: %r" % last_hop)
        check(first_hop.startswith(b"Received: ") and b"with ESMTPS" not in first_hop,
              "swaks's hop was plaintext, yet: %r" % first_hop)
        check(b"over TLS twice" in rest, "content: %r" % rest)
        lines = established(c)
        check(len(lines) == 1 and lines[0].group(1) == "Verified" and
              lines[0].group(2) == "mx.tls.test[127.0.0.1]:%d" % dest.port, "smtpc log: %s" % c.log()[-3000:])
        check("TLS connection established from" in dest.log(), "destination log: %s" % dest.log()[-3000:])


if __name__ == "__main__":
    ch.main([
        test_may_is_the_default_and_delivers_over_tls_that_is_untrusted_without_the_ca,
        test_may_with_the_ca_file_and_the_right_name_is_verified,
        test_may_against_a_server_without_starttls_delivers_in_plaintext,
        test_may_with_starttls_refused_goes_on_in_plaintext_on_the_same_connection,
        test_none_never_sends_starttls_even_when_offered,
        test_encrypt_against_a_server_without_starttls_defers_with_4_7_4_and_keeps_the_message,
        test_encrypt_with_starttls_refused_defers_with_4_7_4,
        test_encrypt_accepts_an_untrusted_certificate,
        test_verify_against_a_self_signed_certificate_without_the_ca_defers_and_says_why,
        test_verify_with_the_ca_file_and_the_right_name_delivers_verified,
        test_verify_with_the_right_ca_but_a_name_the_certificate_lacks_defers,
        test_a_bad_ca_file_is_a_configuration_error,
        test_tls_policy_overrides_tls_level_per_domain_and_levels_never_share_a_session,
        test_tls_policy_can_lower_the_level_for_one_domain,
        test_may_with_garbage_after_the_220_to_starttls_defers_with_4_7_5_never_plaintext,
        test_may_with_the_server_closing_after_the_220_to_starttls_defers_with_4_7_5,
        test_may_with_plaintext_injected_after_the_220_to_starttls_defers_and_starts_no_tls,
        test_a_server_silent_during_the_handshake_times_out_as_a_tls_failure,
        test_the_daemon_sends_two_messages_over_one_tls_session,
        test_a_large_message_over_tls_arrives_byte_exact,
        test_swaks_smtpd_queue_smtpc_to_an_smtpd_with_tls_arrives_with_esmtps,
    ])
