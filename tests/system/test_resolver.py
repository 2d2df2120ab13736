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

resolver_probe (tests/common/resolver_probe.cpp) runs the lookups in a select() loop
and prints "ADDRESS STATUS NAME" per address; every line is checked. A probe pointed
at the silent socket must end every lookup with "temporary" within its timeout (a
generous upper bound, no tight timing). The test waits for dnsmasq by retrying a real
DNS query, never by sleeping, and kills dnsmasq on every path. Python 3 standard
library only; all traffic stays on 127.0.0.1 and ::1.
"""
import os
import socket
import struct
import subprocess
import sys
import tempfile
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
        except AssertionError as e:
            print("FAIL: %s" % e)
            t.failed += 1
        finally:
            if dns is not None:
                dns.stop()
            hole.close()
    print("%d passed, %d failed" % (t.passed, t.failed))
    return 0 if t.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
