#!/usr/bin/env python3
"""smtp::smtpc::Router (apps/smtpc/routing.cpp) on a real Resolver, against dnsmasq.

  test_routing.py ROUTE_PROBE

The DNS side is test_resolver.py's: dnsmasq with its zone (see its docstring) on a
free port, the silent socket for timeouts, and TinyDns for what dnsmasq cannot say
(SERVFAIL, many MX hosts, many addresses, one address under two MX hosts).

route_probe (tests/smtpc/route_probe.cpp) routes every domain at once and prints
"DOMAIN ok host[address]:port..." in the order to try, or "DOMAIN STATUS REPLY"; a
result delivered from inside route() (an IP route) ends with "(immediate)". Which MX
host is down is not the Router's concern (the delivery threads try the endpoints in
turn): only the order of the endpoints is checked here. Python 3 standard library
only; all traffic stays on 127.0.0.1 and ::1.
"""
import os
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_resolver import Dnsmasq, Test, TinyDns, have_ipv6_loopback  # noqa: E402

MX1 = "mx1.two.test[127.0.0.9]"
MX2 = "mx2.two.test[127.0.0.10] mx2.two.test[::1]"  # per host: IPv4 first


def routes(t, server, silent, tiny_server):
    t.check("endpoints follow MX preference, each host's IPv4 addresses before IPv6",
            [server, "two.test", "TWO.TEST"],
            ["two.test ok %s:25 %s:25" % (MX1, MX2.replace(" ", ":25 ")),
             "TWO.TEST ok %s:25 %s:25" % (MX1, MX2.replace(" ", ":25 "))])
    t.check("MX hosts get Settings::port",
            ["--port", "2525", server, "two.test"],
            ["two.test ok %s:2525 %s:2525" % (MX1, MX2.replace(" ", ":2525 "))])
    t.check("with no MX the domain is its own mail exchanger (RFC 5321 §5.1)",
            [server, "bare.test", "alias.test", "six.test"],
            ["bare.test ok bare.test[127.0.0.7]:25",
             "alias.test ok alias.test[127.0.0.7]:25",
             "six.test ok six.test[::1]:25"])  # AAAA only
    t.check("null MX, NXDOMAIN and hosts without address get their replies",
            [server, "null.test", "rawnull.test", "none.test", "nohost.test", "dotten.test", "two.test",
             "[192.0.2.1]"],
            ["null.test permanent 556 5.1.10 Recipient address has null MX",
             "rawnull.test permanent 556 5.1.10 Recipient address has null MX",
             "none.test permanent 550 5.1.2 Host or domain name not found",
             "nohost.test temporary 451 4.4.4 No address for the mail exchangers",
             "dotten.test temporary 451 4.4.4 No address for the mail exchangers",
             "two.test ok %s:25 %s:25" % (MX1, MX2.replace(" ", ":25 ")),
             "[192.0.2.1] permanent 550 5.1.2 Host or domain name not found"])
    t.check("an MX host without address is skipped",
            [server, "skipmx.test"], ["skipmx.test ok %s:25" % MX1])
    t.check("a DNS timeout is temporary, 451 4.4.3",
            ["--timeout-ms", "1000", silent, "two.test"],
            ["two.test temporary 451 4.4.3 DNS lookup failed: MX of two.test: timeout"],
            within=1.0 + 10, at_least=0.5)
    t.check("an MX host whose lookup times out makes the route temporary",
            ["--timeout-ms", "1000", server, "slowmx.test"],
            ["slowmx.test temporary 451 4.4.3 DNS lookup failed: A/AAAA of slow.hole: timeout"],
            within=2.0 + 10, at_least=0.5)

    # Our own name among the MX hosts (RFC 5321 §5.1).
    t.check("our own name as the best MX is a loop, 554 5.4.6",
            ["--hostname", "MX1.two.test", server, "two.test"],
            ["two.test permanent 554 5.4.6 Mail for the domain loops back to myself"])
    t.check("our own name as a backup MX leaves only the better ones",
            ["--hostname", "mx2.two.test", server, "two.test"], ["two.test ok %s:25" % MX1])

    # Static routes and the smarthost: first the route, then the smarthost, never MX.
    t.check("a static route to an IP address is used at once, from inside route()",
            ["--timeout-ms", "30000", "--static", "ip.test=127.0.0.50:2525", "--static", "six.test=[::1]:2526",
             silent, "ip.test", "six.test"],
            ["ip.test ok 127.0.0.50[127.0.0.50]:2525 (immediate)", "six.test ok ::1[::1]:2526 (immediate)"],
            within=10)
    t.check("a static route to a name is resolved by A/AAAA, not MX",
            ["--static", "name.test=dual.test:2526", "--static", "mx.test=two.test", "--static",
             "gone.test=none.test", server, "name.test", "mx.test", "gone.test", "bare.test"],
            ["name.test ok dual.test[127.0.0.31]:2526 dual.test[::1]:2526",
             "mx.test temporary 451 4.4.4 No address for relay host two.test",
             "gone.test temporary 451 4.4.4 No address for relay host none.test",
             "bare.test ok bare.test[127.0.0.7]:25"])
    t.check("the smarthost takes every domain without a static route, null MX ones too",
            ["--smarthost", "dual.test:587", "--static", "ip.test=127.0.0.50", server, "two.test", "null.test",
             "none.test", "ip.test"],
            ["two.test ok dual.test[127.0.0.31]:587 dual.test[::1]:587",
             "null.test ok dual.test[127.0.0.31]:587 dual.test[::1]:587",
             "none.test ok dual.test[127.0.0.31]:587 dual.test[::1]:587",
             "ip.test ok 127.0.0.50[127.0.0.50]:25 (immediate)"])
    t.check("a smarthost that is an address asks no DNS",
            ["--timeout-ms", "30000", "--smarthost", "127.0.0.51:2525", silent, "two.test"],
            ["two.test ok 127.0.0.51[127.0.0.51]:2525 (immediate)"], within=10)
    t.check("a smarthost lookup that times out is temporary",
            ["--smarthost", "slow.hole", "--timeout-ms", "1000", server, "two.test"],
            ["two.test temporary 451 4.4.3 DNS lookup failed: A/AAAA of slow.hole: timeout"],
            within=1.0 + 10, at_least=0.5)

    # Equal preferences: both orders over 24 routes, mxc (20) always last.
    orders = {"eq.test ok mxa.eq.test[127.0.0.21]:25 mxb.eq.test[127.0.0.22]:25 mxc.eq.test[127.0.0.23]:25",
              "eq.test ok mxb.eq.test[127.0.0.22]:25 mxa.eq.test[127.0.0.21]:25 mxc.eq.test[127.0.0.23]:25"}
    try:
        proc, _ = t.run([server] + ["eq.test"] * 24)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        assert len(lines) == 24 and set(lines) <= orders, lines
        assert set(lines) == orders, "24 routes, always %s" % set(lines)  # chance 2^-23
        print("ok: MX hosts of equal preference come in both orders")
        t.passed += 1
    except (AssertionError, subprocess.TimeoutExpired) as e:
        print("FAIL: MX hosts of equal preference come in both orders: %s" % e)
        t.failed += 1

    # TinyDns: limits, failures, duplicates.
    t.check("at most max_endpoints (10) endpoints, the most preferred MX hosts",
            [tiny_server, "many.test"],
            ["many.test ok " + " ".join("h%d.many.test[127.0.1.%d]:25" % (n, n) for n in range(1, 11))])
    t.check("at most max_endpoints (10) addresses of one host",
            [tiny_server, "wide.test"],
            ["wide.test ok " + " ".join("wide.test[127.0.2.%d]:25" % n for n in range(1, 11))])
    t.check("an MX host whose lookup fails is skipped when another has addresses",
            [tiny_server, "partial.test"],
            ["partial.test ok dup.test[127.0.0.11]:25 dup.test[127.0.0.12]:25 dup.test[::1]:25"])
    t.check("a failed lookup and no address anywhere is temporary, 451 4.4.3",
            [tiny_server, "allfail.test", "mxfail.test"],
            ["allfail.test temporary 451 4.4.3 DNS lookup failed: A/AAAA of servfail.test: server failure or "
             "refused",
             "mxfail.test temporary 451 4.4.3 DNS lookup failed: MX of mxfail.test: server failure or refused"])
    t.check("an address under two MX hosts is one endpoint, the better host's",
            [tiny_server, "twin.test"],
            ["twin.test ok t1.twin.test[127.0.0.13]:25 t2.twin.test[127.0.0.14]:25"])

    # Cancelling.
    t.check("cancel_all() forgets every route and its lookups",
            ["--cancel-all", "--static", "ip.test=127.0.0.50", server, "two.test", "ip.test", "bare.test"],
            ["two.test cancelled", "ip.test ok 127.0.0.50[127.0.0.50]:25 (immediate)", "bare.test cancelled"])
    t.check("a callback may call cancel_all()",
            ["--cancel-in-callback", "--timeout-ms", "30000", server, "bare.test", "slowmx.test", "none.test"],
            [{"bare.test ok bare.test[127.0.0.7]:25", "bare.test cancelled"},
             "slowmx.test cancelled",
             {"none.test permanent 550 5.1.2 Host or domain name not found", "none.test cancelled"}],
            within=10)
    t.check("destroying the Router cancels its lookups",
            ["--destroy-early", "--timeout-ms", "30000", server, "two.test", "slowmx.test"],
            ["two.test cancelled", "slowmx.test cancelled"], within=10)


def main():
    if len(sys.argv) != 2:
        print("usage: test_routing.py ROUTE_PROBE", file=sys.stderr)
        return 2
    t = Test(os.path.abspath(sys.argv[1]))
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never read
    with tempfile.TemporaryDirectory(prefix="test_routing.") as tmp:
        dns = None
        tiny = TinyDns()
        try:
            hole.bind(("127.0.0.1", 0))
            hole_port = hole.getsockname()[1]
            dns = Dnsmasq(tmp, hole_port, have_ipv6_loopback())
            dns.wait_ready()
            routes(t, "127.0.0.1:%d" % dns.port, "127.0.0.1:%d" % hole_port, "127.0.0.1:%d" % tiny.port)
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
