#!/usr/bin/env python3
"""smtp::Resolver (apps/common/resolver.cpp) against a real dnsmasq on 127.0.0.1.

  test_resolver.py RESOLVER_PROBE

dnsmasq runs on a free port with only the records below, answers nothing else from
anywhere (no upstream servers, no /etc/hosts, NXDOMAIN for the reverse zones and .test),
and forwards only the domain "hole." to a UDP socket this test holds and never reads:

  127.0.0.2  PTR good.test              A good.test 127.0.0.2       confirmed
  127.0.0.3  PTR liar.test              A liar.test 127.0.0.99      unconfirmed
  127.0.0.4  (none)                                                 no_name
  ::1        PTR six.test               AAAA six.test ::1           confirmed (IPv6)
  127.0.0.5  PTR nowhere.test, multi.test   A multi.test 127.0.0.5  confirmed (2nd name)
  127.0.0.6  PTR slow.hole              A slow.hole: never answered temporary

and, for mx() and addresses() (and the Router, tests/system/test_routing.py):

  two.test     MX 10 mx1.two.test, 20 mx2.two.test
  eq.test      MX 10 mxa.eq.test, 10 mxb.eq.test, 20 mxc.eq.test   (shuffled)
  null.test    MX 0 "."  (dnsmasq's mx-host)   rawnull.test: the same as a raw RR
  dotten.test  MX 10 "."  (not a null MX: RFC 7505 wants preference 0; no host either)
  upper.test   MX 10 MX1.Two.TEST              skipmx.test: MX 10 missing.test, 20 mx1
  nohost.test  MX 10 missing.test (NXDOMAIN)   slowmx.test: MX 10 slow.hole
  bare.test    A 127.0.0.7, no MX              alias.test: CNAME bare.test
  dual.test    A 127.0.0.31, AAAA ::1          six.test: AAAA ::1 only
  mx1.two.test A 127.0.0.9   mx2.two.test A 127.0.0.10, AAAA ::1
  mxa/mxb/mxc.eq.test A 127.0.0.21/22/23       none.test: NXDOMAIN

What dnsmasq cannot say (duplicate records, records out of order, an MX host that is
an address, SERVFAIL, REFUSED, an A query never answered while AAAA is) comes from
TinyDns, a scripted responder in this file (see TINY_ZONE).

resolver_probe (tests/common/resolver_probe.cpp) runs the lookups in a select() loop
and prints one line per argument; every line is checked. A probe pointed at the
silent socket must end every lookup with "temporary" within its timeout (a generous
upper bound, no tight timing). The test waits for dnsmasq by retrying a real DNS
query, never by sleeping, and kills dnsmasq on every path. Python 3 standard library
only; all traffic stays on 127.0.0.1 and ::1.
"""
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

DNSMASQ = "/usr/sbin/dnsmasq"
STEP = 30.0  # seconds for any one step


def free_port(hosts):
    """A port free for both UDP and TCP on every host in `hosts` (a small race remains)."""
    for _ in range(100):
        held = []
        try:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind((hosts[0], 0))
            port = tcp.getsockname()[1]
            for host in hosts:
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    if host == hosts[0] and kind == socket.SOCK_STREAM:
                        continue
                    s = socket.socket(family, kind)
                    held.append(s)
                    s.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise AssertionError("no free port")


def have_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def encode_name(name):
    name = name.rstrip(".")
    if not name:
        return b"\0"  # the root
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"


def read_name(msg, pos):
    """A domain name at `pos` (RFC 1035 §4.1.4 compression); returns (name, next pos)."""
    labels, end, jumps = [], None, 0
    while True:
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            if end is None:
                end = pos + 2
            pos = ((length & 0x3F) << 8) | msg[pos + 1]
            jumps += 1
            assert jumps < 64, "compression loop"
            continue
        pos += 1
        if length == 0:
            break
        labels.append(msg[pos:pos + length].decode("ascii"))
        pos += length
    return ".".join(labels), (end if end is not None else pos)


def ptr_query(port, owner, qid, timeout):
    """Sends one PTR query over UDP; returns (rcode, [PTR names in answer order])."""
    msg = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + encode_name(owner) + struct.pack(">HH", 12, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(msg, ("127.0.0.1", port))
        while True:
            data, _ = s.recvfrom(4096)
            if len(data) >= 12 and struct.unpack(">H", data[:2])[0] == qid:
                break
    _, flags, qdcount, ancount, _, _ = struct.unpack(">HHHHHH", data[:12])
    pos = 12
    for _ in range(qdcount):
        _, pos = read_name(data, pos)
        pos += 4
    names = []
    for _ in range(ancount):
        _, pos = read_name(data, pos)
        rtype, _, _, rdlength = struct.unpack(">HHIH", data[pos:pos + 10])
        pos += 10
        if rtype == 12:
            names.append(read_name(data, pos)[0])
        pos += rdlength
    return flags & 0xF, names


class Dnsmasq:
    """dnsmasq in the foreground on 127.0.0.1 (and ::1 when there is one)."""

    def __init__(self, tmp, hole_port, ipv6):
        self.tmp = tmp
        self.ipv6 = ipv6
        self.port = free_port(["127.0.0.1", "::1"] if ipv6 else ["127.0.0.1"])
        self.log = os.path.join(tmp, "dnsmasq.log")
        conf = os.path.join(tmp, "dnsmasq.conf")
        lines = [
            "port=%d" % self.port,
            "listen-address=127.0.0.1" + (",::1" if ipv6 else ""),
            "bind-interfaces",
            "no-resolv",  # no upstream servers from /etc/resolv.conf
            "no-hosts",
            "no-daemon",  # foreground, no pid file, no change of user
            "log-facility=" + self.log,
            "log-queries",
            # Unknown reverse names and .test names get NXDOMAIN here, never forwarded.
            "bogus-priv",
            "local=/in-addr.arpa/",
            "local=/ip6.arpa/",
            "local=/test/",
            "host-record=good.test,127.0.0.2",
            "ptr-record=3.0.0.127.in-addr.arpa,liar.test",
            "address=/liar.test/127.0.0.99",
            "host-record=six.test,::1",
            # dnsmasq 2.90 answers these in reverse order: nowhere.test first.
            "ptr-record=5.0.0.127.in-addr.arpa,multi.test",
            "ptr-record=5.0.0.127.in-addr.arpa,nowhere.test",
            "address=/multi.test/127.0.0.5",
            "ptr-record=6.0.0.127.in-addr.arpa,slow.hole",
            # The one forwarded domain: to a socket on this machine that never answers.
            "server=/hole/127.0.0.1#%d" % hole_port,
        ]
        lines += [
            # MX and address records (RFC 5321 §5.1, RFC 7505). host-record adds PTRs,
            # so IPv6 (::1, six.test's) is given by address= here, which adds none.
            "mx-host=two.test,mx1.two.test,10",
            "mx-host=two.test,mx2.two.test,20",
            "host-record=mx1.two.test,127.0.0.9",
            "address=/mx2.two.test/127.0.0.10",
            "address=/mx2.two.test/::1",
            "mx-host=eq.test,mxa.eq.test,10",
            "mx-host=eq.test,mxb.eq.test,10",
            "mx-host=eq.test,mxc.eq.test,20",
            "host-record=mxa.eq.test,127.0.0.21",
            "host-record=mxb.eq.test,127.0.0.22",
            "host-record=mxc.eq.test,127.0.0.23",
            "mx-host=null.test,.,0",
            "dns-rr=rawnull.test,15,000000",  # preference 0, the root name: RFC 7505 §3
            "mx-host=dotten.test,.,10",
            "mx-host=upper.test,MX1.Two.TEST,10",
            "mx-host=skipmx.test,missing.test,10",
            "mx-host=skipmx.test,mx1.two.test,20",
            "mx-host=nohost.test,missing.test,10",
            "mx-host=slowmx.test,slow.hole,10",
            "host-record=bare.test,127.0.0.7",
            "cname=alias.test,bare.test",
            "address=/dual.test/127.0.0.31",
            "address=/dual.test/::1",
        ]
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.stderr = open(os.path.join(tmp, "dnsmasq.stderr"), "wb")
        self.proc = subprocess.Popen([DNSMASQ, "--conf-file=" + conf], stdin=subprocess.DEVNULL,
                                     stdout=self.stderr, stderr=self.stderr)

    def wait_ready(self):
        deadline = time.monotonic() + STEP
        for attempt in range(1, 301):
            if self.proc.poll() is not None:
                raise AssertionError("dnsmasq exited with %d:\n%s" % (self.proc.returncode, self.output()))
            try:
                rcode, names = ptr_query(self.port, "2.0.0.127.in-addr.arpa", attempt, 0.1)
                if rcode == 0 and names == ["good.test"]:
                    return
            except OSError:  # socket.timeout included: not listening yet
                pass
            if time.monotonic() > deadline:
                break
        raise AssertionError("dnsmasq did not answer on port %d:\n%s" % (self.port, self.output()))

    def output(self):
        text = ""
        for path in (os.path.join(self.tmp, "dnsmasq.stderr"), self.log):
            try:
                with open(path, errors="replace") as f:
                    text += f.read()[-4000:]
            except OSError:
                pass
        return text

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(STEP)
        self.stderr.close()


def rr(rtype, rdata):
    return (rtype, rdata)


def a(ip):
    return rr(1, socket.inet_pton(socket.AF_INET, ip))


def aaaa(ip):
    return rr(28, socket.inet_pton(socket.AF_INET6, ip))


def mx(preference, host):
    return rr(15, struct.pack(">H", preference) + encode_name(host))


SERVFAIL = 2
REFUSED = 5
SILENT = "silent"

# name -> {qtype: [records] | SILENT}, or an rcode for every query of the name. A name
# not listed is NXDOMAIN; a type not listed for a listed name is NODATA.
TINY_ZONE = {
    "dup.test": {1: [a("127.0.0.11"), a("127.0.0.11"), a("127.0.0.12")], 28: [aaaa("::1"), aaaa("::1")]},
    "order.test": {15: [mx(30, "c.order.test"), mx(10, "A.Order.Test"), mx(20, "b.order.test"),
                        mx(40, "a.order.test"), mx(5, "192.0.2.1")]},
    "mixednull.test": {15: [mx(0, "."), mx(10, "dup.test")]},
    "servfail.test": SERVFAIL,
    "refused.test": REFUSED,
    "half.test": {1: SILENT, 28: [aaaa("::1")]},
    # For the Router (test_routing.py).
    "many.test": {15: [mx(10 * n, "h%d.many.test" % n) for n in range(12, 0, -1)]},
    "wide.test": {1: [a("127.0.2.%d" % n) for n in range(1, 13)]},
    "partial.test": {15: [mx(10, "servfail.test"), mx(20, "dup.test")]},
    "allfail.test": {15: [mx(10, "servfail.test"), mx(20, "none.test")]},
    "twin.test": {15: [mx(10, "t1.twin.test"), mx(20, "t2.twin.test")]},
    "t1.twin.test": {1: [a("127.0.0.13")]},
    "t2.twin.test": {1: [a("127.0.0.13"), a("127.0.0.14")]},
    "mxfail.test": SERVFAIL,
}
for n in range(1, 13):
    TINY_ZONE["h%d.many.test" % n] = {1: [a("127.0.1.%d" % n)]}


class TinyDns:
    """A UDP DNS responder on 127.0.0.1 answering from TINY_ZONE, in a thread."""

    def __init__(self, zone=None):
        self.zone = TINY_ZONE if zone is None else zone
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)  # so stop() is noticed
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = self.reply(data)
            except (IndexError, struct.error, UnicodeDecodeError):
                continue  # not a query we can read: no answer
            if reply is not None:
                self.sock.sendto(reply, peer)

    def reply(self, query):
        qid, flags, qdcount, _, _, _ = struct.unpack(">HHHHHH", query[:12])
        if qdcount != 1:
            return None
        name, pos = read_name(query, 12)
        qtype, _ = struct.unpack(">HH", query[pos:pos + 4])
        question = query[12:pos + 4]
        entry = self.zone.get(name.lower())
        rcode, answers = 0, []
        if entry is None:
            rcode = 3  # NXDOMAIN
        elif isinstance(entry, int):
            rcode = entry
        else:
            answers = entry.get(qtype, [])
            if answers == SILENT:
                return None
        # QR, RD copied, RA; one question; the answers point to its name (0xC00C).
        header = struct.pack(">HHHHHH", qid, 0x8080 | (flags & 0x0100) | rcode, 1, len(answers), 0, 0)
        body = b"".join(struct.pack(">HHHIH", 0xC00C, rtype, 1, 60, len(rdata)) + rdata
                        for rtype, rdata in answers)
        return header + question + body

    def stop(self):
        self.stopping = True
        self.thread.join(STEP)
        self.sock.close()


class Test:
    def __init__(self, probe):
        self.probe = probe
        self.passed = 0
        self.failed = 0

    def run(self, args, timeout=STEP):
        start = time.monotonic()
        proc = subprocess.run([self.probe] + args, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, text=True)
        return proc, time.monotonic() - start

    def check(self, what, args, expected, exit_code=0, within=None, at_least=None):
        """Runs the probe; its lines must be `expected` (a list; an entry may be a set of
        lines any of which is fine) and its exit status `exit_code`."""
        try:
            proc, elapsed = self.run(args)
            lines = proc.stdout.splitlines()
            problems = []
            if proc.returncode != exit_code:
                problems.append("exit status %d, expected %d" % (proc.returncode, exit_code))
            if len(lines) != len(expected):
                problems.append("%d lines, expected %d" % (len(lines), len(expected)))
            for got, want in zip(lines, expected):
                if got != want and not (isinstance(want, set) and got in want):
                    problems.append("line %r, expected %r" % (got, want))
            if within is not None and elapsed > within:
                problems.append("took %.2f s, more than %.2f s" % (elapsed, within))
            if at_least is not None and elapsed < at_least:
                problems.append("took %.2f s, less than %.2f s" % (elapsed, at_least))
            if problems:
                raise AssertionError("; ".join(problems) + "\nstdout:\n" + proc.stdout + "stderr:\n" + proc.stderr)
            print("ok: %s (%.2f s)" % (what, elapsed))
            self.passed += 1
        except (AssertionError, subprocess.TimeoutExpired) as e:
            print("FAIL: %s: %s" % (what, e))
            self.failed += 1


def orders_seen(lines, prefix):
    """The distinct lines among `lines`, each of which must start with `prefix`."""
    for line in lines:
        assert line.startswith(prefix), "unexpected line %r" % line
    return set(lines)


def mx_and_addresses(t, server, silent, tiny):
    """mx() and addresses() against dnsmasq, TinyDns and the silent socket."""
    tiny_server = "127.0.0.1:%d" % tiny.port
    t.check("MX hosts come by preference; null MX, NODATA and NXDOMAIN are told apart",
            ["--mx", server, "two.test", "null.test", "rawnull.test", "bare.test", "none.test", "dotten.test",
             "upper.test", "alias.test", "TWO.TEST."],
            ["two.test ok 10:mx1.two.test 20:mx2.two.test",
             "null.test ok null",
             "rawnull.test ok null",
             "bare.test no_records",
             "none.test no_domain",
             "dotten.test ok",  # "." of preference 10: no host, and not a null MX either
             "upper.test ok 10:mx1.two.test",
             "alias.test no_records",  # a CNAME to a name without MX
             "TWO.TEST. ok 10:mx1.two.test 20:mx2.two.test"])
    t.check("a name that cannot be in DNS is no_domain without a query",
            ["--mx", "--timeout-ms", "30000", silent, "1.2.3.4", "bad..name", "-x.test", "."],
            ["1.2.3.4 no_domain", "bad..name no_domain", "-x.test no_domain", ". no_domain"], within=10)
    t.check("addresses are IPv4 first, then IPv6; NXDOMAIN only when both say so",
            ["--addresses", server, "bare.test", "six.test", "dual.test", "mx2.two.test", "none.test",
             "two.test", "alias.test", "Dual.Test.", "192.0.2.1"],
            ["bare.test ok 127.0.0.7",
             "six.test ok ::1",  # AAAA only
             "dual.test ok 127.0.0.31 ::1",
             "mx2.two.test ok 127.0.0.10 ::1",
             "none.test no_domain",
             "two.test no_records",  # MX records, no address
             "alias.test ok 127.0.0.7",
             "Dual.Test. ok 127.0.0.31 ::1",
             "192.0.2.1 no_domain"])  # an address is not looked up as a name
    t.check("a silent server makes MX and address lookups temporary within the timeout",
            ["--mx", "--timeout-ms", "1000", silent, "two.test", "null.test"],
            ["two.test temporary (timeout)", "null.test temporary (timeout)"], within=1.0 + 10, at_least=0.5)
    t.check("an address lookup against a silent server is temporary",
            ["--addresses", "--timeout-ms", "1000", silent, "dual.test"],
            ["dual.test temporary (timeout)"], within=1.0 + 10, at_least=0.5)
    t.check("a forwarded name that never answers is temporary, the others are not held up",
            ["--addresses", "--timeout-ms", "1500", server, "slow.hole", "dual.test"],
            ["slow.hole temporary (timeout)", "dual.test ok 127.0.0.31 ::1"], within=1.5 + 10, at_least=0.75)

    # Equal preferences in random order (RFC 5321 §5.1), within one Resolver and
    # across Resolvers (seeded once each); mxc (20) always last.
    first_two = {"eq.test ok 10:mxa.eq.test 10:mxb.eq.test 20:mxc.eq.test",
                 "eq.test ok 10:mxb.eq.test 10:mxa.eq.test 20:mxc.eq.test"}
    try:
        proc, _ = t.run(["--mx", "--raw-order", server] + ["eq.test"] * 24)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == 24, lines
        seen = orders_seen(lines, "eq.test ok ")
        assert seen <= first_two, seen
        assert seen == first_two, "24 lookups, always %s" % seen  # chance 2^-23
        print("ok: equal MX preferences are shuffled within one Resolver (%s)" %
              ", ".join("%d" % lines.count(x) for x in sorted(first_two)))
        t.passed += 1
    except (AssertionError, subprocess.TimeoutExpired) as e:
        print("FAIL: equal MX preferences are shuffled within one Resolver: %s" % e)
        t.failed += 1
    try:
        seen = set()
        for run in range(1, 31):  # all alike: chance 2^-29
            proc, _ = t.run(["--mx", "--raw-order", server, "eq.test"])
            assert proc.returncode == 0, proc.stderr
            seen |= orders_seen(proc.stdout.splitlines(), "eq.test ok ")
            assert seen <= first_two, seen
            if seen == first_two:
                break
        assert seen == first_two, "30 runs, always %s" % seen
        print("ok: each Resolver is seeded anew (both orders after %d runs)" % run)
        t.passed += 1
    except (AssertionError, subprocess.TimeoutExpired) as e:
        print("FAIL: each Resolver is seeded anew: %s" % e)
        t.failed += 1
    t.check("sorted output does not depend on the shuffle",
            ["--mx", "--repeat", "8", server, "eq.test", "two.test"],
            ["eq.test ok 10:mxa.eq.test 10:mxb.eq.test 20:mxc.eq.test",
             "two.test ok 10:mx1.two.test 20:mx2.two.test"])

    t.check("a cancelled MX lookup never reports, also when its answer arrives",
            ["--mx", "--cancel-first", "--drain", server, "two.test", "null.test"],
            ["two.test cancelled -", "null.test ok null"])
    t.check("a callback may cancel address lookups that finished with it",
            ["--addresses", "--cancel-in-callback", "--drain", server, "bare.test", "dual.test", "none.test"],
            ["bare.test ok 127.0.0.7",
             {"dual.test cancelled -", "dual.test ok 127.0.0.31 ::1"},
             {"none.test cancelled -", "none.test no_domain"}])
    t.check("an address lookup in flight is dropped by the destructor",
            ["--addresses", "--cancel-first", "--timeout-ms", "500", silent, "bare.test", "dual.test"],
            ["bare.test cancelled -", "dual.test temporary (timeout)"], within=0.5 + 10)
    t.check("a callback may start the next MX lookup",
            ["--mx", "--repeat", "3", server, "two.test", "none.test", "bare.test"],
            ["two.test ok 10:mx1.two.test 20:mx2.two.test", "none.test no_domain", "bare.test no_records"])

    # TinyDns: what dnsmasq cannot say.
    t.check("MX records are sorted, a host listed twice keeps its best, addresses and \".\" are left out",
            ["--mx", tiny_server, "order.test", "mixednull.test"],
            ["order.test ok 10:a.order.test 20:b.order.test 30:c.order.test",
             "mixednull.test ok 10:dup.test"])  # "." beside another record is no null MX
    t.check("duplicate addresses are given once",
            ["--addresses", tiny_server, "dup.test"], ["dup.test ok 127.0.0.11 127.0.0.12 ::1"])
    t.check("SERVFAIL and REFUSED are temporary",
            ["--mx", tiny_server, "servfail.test", "refused.test"],
            # c-ares retries, then reports both as ECONNREFUSED
            ["servfail.test temporary (server failure or refused)",
             "refused.test temporary (server failure or refused)"])
    t.check("SERVFAIL for addresses is temporary",
            ["--addresses", tiny_server, "servfail.test"], ["servfail.test temporary (server failure or refused)"])
    t.check("an AAAA answer counts when the A query is never answered",
            ["--addresses", "--timeout-ms", "1000", tiny_server, "half.test"],
            ["half.test ok ::1"], within=1.0 + 10, at_least=0.5)


def main():
    if len(sys.argv) != 2:
        print("usage: test_resolver.py RESOLVER_PROBE", file=sys.stderr)
        return 2
    t = Test(os.path.abspath(sys.argv[1]))
    ipv6 = have_ipv6_loopback()
    # Bound, never read: datagrams to it are queued and dropped, and no ICMP "port
    # unreachable" tells the sender anything. The silent server of the temporary cases.
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tempfile.TemporaryDirectory(prefix="test_resolver.") as tmp:
        dns = None
        tiny = TinyDns()
        try:
            hole.bind(("127.0.0.1", 0))
            hole_port = hole.getsockname()[1]
            dns = Dnsmasq(tmp, hole_port, ipv6)
            dns.wait_ready()
            server = "127.0.0.1:%d" % dns.port
            silent = "127.0.0.1:%d" % hole_port

            t.check("every status, all lookups at once",
                    ["--timeout-ms", "5000", server,
                     "127.0.0.2", "127.0.0.3", "127.0.0.4", "::1", "127.0.0.5", "::2", "::ffff:127.0.0.2"],
                    ["127.0.0.2 confirmed good.test",
                     "127.0.0.3 unconfirmed liar.test",
                     "127.0.0.4 no_name -",
                     "::1 confirmed six.test",
                     "127.0.0.5 confirmed multi.test",
                     "::2 no_name -",
                     "::ffff:127.0.0.2 confirmed good.test"])

            # max_names bounds the forward lookups, taken in the order of the answer.
            _, order = ptr_query(dns.port, "5.0.0.127.in-addr.arpa", 4242, STEP)
            assert sorted(order) == ["multi.test", "nowhere.test"], order
            first_only = ("127.0.0.5 confirmed multi.test" if order[0] == "multi.test"
                          else "127.0.0.5 unconfirmed nowhere.test")
            t.check("max_names 1 checks only the first PTR name (%s)" % order[0],
                    ["--max-names", "1", server, "127.0.0.5"], [first_only])
            t.check("max_names 0 checks no name", ["--max-names", "0", server, "127.0.0.2"],
                    ["127.0.0.2 unconfirmed good.test"])

            t.check("a forward lookup that times out makes the result temporary",
                    ["--timeout-ms", "1500", server, "127.0.0.6", "127.0.0.2"],
                    ["127.0.0.6 temporary -", "127.0.0.2 confirmed good.test"],
                    within=1.5 + 10, at_least=0.75)
            t.check("a silent server gives temporary within the timeout",
                    ["--timeout-ms", "1000", silent, "127.0.0.2", "::1", "127.0.0.4"],
                    ["127.0.0.2 temporary -", "::1 temporary -", "127.0.0.4 temporary -"],
                    within=1.0 + 10, at_least=0.5)

            t.check("a cancelled lookup never reports, also when its answer arrives",
                    ["--cancel-first", "--drain", server, "127.0.0.2", "127.0.0.3"],
                    ["127.0.0.2 cancelled -", "127.0.0.3 unconfirmed liar.test"])
            t.check("a cancelled lookup in flight is dropped by the destructor",
                    ["--cancel-first", "--timeout-ms", "500", silent, "127.0.0.2", "127.0.0.3"],
                    ["127.0.0.2 cancelled -", "127.0.0.3 temporary -"], within=0.5 + 10)
            t.check("a callback may cancel lookups that finished with it",
                    ["--cancel-in-callback", "--drain", server, "127.0.0.2", "127.0.0.3", "::1"],
                    ["127.0.0.2 confirmed good.test",
                     {"127.0.0.3 cancelled -", "127.0.0.3 unconfirmed liar.test"},
                     {"::1 cancelled -", "::1 confirmed six.test"}])
            t.check("a callback may start the next lookup",
                    ["--repeat", "3", server, "127.0.0.2", "::1", "127.0.0.4"],
                    ["127.0.0.2 confirmed good.test", "::1 confirmed six.test", "127.0.0.4 no_name -"])

            if ipv6:
                t.check("the server may be an IPv6 address with a port",
                        ["[::1]:%d" % dns.port, "::1", "127.0.0.3"],
                        ["::1 confirmed six.test", "127.0.0.3 unconfirmed liar.test"])
            else:
                print("skipped: no ::1 here, no IPv6 server")
            t.check("a malformed server is refused", ["127.0.0.1:99999", "127.0.0.2"], [], exit_code=2)
            t.check("a host name is not a server", ["dns.example", "127.0.0.2"], [], exit_code=2)

            mx_and_addresses(t, server, silent, tiny)
        except AssertionError as e:
            print("FAIL: %s" % e)
            t.failed += 1
        finally:
            if dns is not None:
                dns.stop()
            tiny.stop()
            hole.close()
    print("%d passed, %d failed" % (t.passed, t.failed))
    return 0 if t.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
