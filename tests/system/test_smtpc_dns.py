#!/usr/bin/env python3
"""smtpc system tests: routing by DNS against a private dnsmasq (apps/smtpc/routing.hpp).

  test_smtpc_dns.py SMTPD SMTPC [CASE...]

dnsmasq (smtpd_harness.Dnsmasq: its own records only, everything else NXDOMAIN)
serves:
  remote.test   MX 10 dead.remote.test (127.0.0.2), MX 20 live.remote.test (127.0.0.1)
  bare.test     no MX, A 127.0.0.1 (the domain is its own mail exchanger)
  nullmx.test   MX 0 "." (null MX, RFC 7505)
  anything else NXDOMAIN
MX hosts use smtpc's --port, the recording server's port; the recording server binds
127.0.0.1 only, so 127.0.0.2 on that port refuses the connection. Bounces go to the
local sender's Maildir (smtpc --local-domain test.local, smtpd's mail root).
"""
import smtpc_harness as ch
from recording_server import RecordingServer
from smtpc_harness import RELAY, Smtpc, check, inject, message, wait_queue_empty
from smtpd_harness import Dnsmasq, Smtpd

RECORDS = [
    "--mx-host=remote.test,dead.remote.test,10",
    "--mx-host=remote.test,live.remote.test,20",
    "--host-record=dead.remote.test,127.0.0.2",
    "--host-record=live.remote.test,127.0.0.1",
    "--host-record=bare.test,127.0.0.1",
    "--mx-host=nullmx.test,.,0",
]


def dns_args(dns, srv):
    return ["--dns-server", dns.server, "--port", str(srv.port), "--dns-timeout", "5s"]


def test_the_preferred_mx_is_down_so_the_second_one_gets_the_mail():
    with Dnsmasq(RECORDS) as dns, Smtpd(RELAY) as d, RecordingServer() as srv:
        with Smtpc(d, dns_args(dns, srv)) as c:
            inject(d, "alice@test.local", ["bob@remote.test"], message("via the backup mx"))
            got = srv.wait_messages(1, timeout=30)
            wait_queue_empty(d, c=c)
            c.wait_log(r"connect to dead\.remote\.test\[127\.0\.0\.2\]:%d: Connection refused" % srv.port)
            c.wait_log(r": to=<bob@remote\.test>, relay=live\.remote\.test\[127\.0\.0\.1\]:%d, .*status=sent \(250 "
                       % srv.port)
        check(got[0].rcpts == ["bob@remote.test"] and srv.connection_count() == 1,
              "delivered %s over %d connections" % (got, srv.connection_count()))
        check("query[MX] remote.test" in dns.log(), "smtpc did not ask dnsmasq for the MX: %s" % dns.log()[-2000:])
        check("dead.remote.test" in dns.log(), "the preferred MX host was not looked up: %s" % dns.log()[-2000:])
        check(d.all_new() == [], "a bounce was made: %s" % d.all_new())


def test_a_domain_without_mx_gets_its_mail_at_its_own_address():
    with Dnsmasq(RECORDS) as dns, Smtpd(RELAY) as d, RecordingServer() as srv:
        with Smtpc(d, dns_args(dns, srv)) as c:
            inject(d, "alice@test.local", ["carol@bare.test"], message("A fallback"))
            got = srv.wait_messages(1, timeout=30)
            wait_queue_empty(d, c=c)
            c.wait_log(r": to=<carol@bare\.test>, relay=bare\.test\[127\.0\.0\.1\]:%d, .*status=sent" % srv.port)
        check(got[0].rcpts == ["carol@bare.test"], "delivered: %s" % got)


def test_a_null_mx_domain_bounces_at_once_with_5_1_10_and_nxdomain_with_5_1_2():
    with Dnsmasq(RECORDS) as dns, Smtpd(RELAY) as d, RecordingServer() as srv:
        with Smtpc(d, dns_args(dns, srv)) as c:
            inject(d, "alice@test.local", ["dan@nullmx.test"], message("to a null MX"))
            inject(d, "alice@test.local", ["erin@nowhere.test"], message("to no domain"))
            files = ch.wait_dsn(d, "alice", count=2)
            wait_queue_empty(d, c=c)
            c.wait_log(r": to=<dan@nullmx\.test>, status=bounced \(556 5\.1\.10 ")
        check(srv.connection_count() == 0, "something connected for a null MX: %d" % srv.connection_count())
        statuses = {}
        for msg in ch.dsns(d, "alice"):
            check(msg["To"].strip("<> ") == "alice@test.local", "DSN To: %r" % msg["To"])
            _, rcpts, _ = ch.dsn_report(msg)
            check(len(rcpts) == 1, "DSN recipients: %r" % rcpts)
            statuses[rcpts[0]["Final-Recipient"]] = (rcpts[0]["Status"], rcpts[0]["Action"],
                                                     rcpts[0].get("Diagnostic-Code", ""))
        check(statuses.get("rfc822; dan@nullmx.test", ("",))[0] == "5.1.10",
              "null MX DSN: %r (files %s)" % (statuses, files))
        check("556 5.1.10" in statuses["rfc822; dan@nullmx.test"][2] and
              statuses["rfc822; dan@nullmx.test"][1] == "failed", "null MX DSN fields: %r" % statuses)
        check(statuses.get("rfc822; erin@nowhere.test", ("",))[0] == "5.1.2", "NXDOMAIN DSN: %r" % statuses)
        with open(d.new("alice")[0], "rb") as f:
            check(f.read().startswith(b"Return-Path: <>\r\n"), "a local DSN starts with Return-Path: <>")


if __name__ == "__main__":
    ch.main([
        test_the_preferred_mx_is_down_so_the_second_one_gets_the_mail,
        test_a_domain_without_mx_gets_its_mail_at_its_own_address,
        test_a_null_mx_domain_bounces_at_once_with_5_1_10_and_nxdomain_with_5_1_2,
    ])
