#!/usr/bin/env python3
"""smtpd system tests: transactions and the protocol against the real daemon.

  test_smtpd_basic.py SMTPD [CASE...]

smtplib delivers to local and remote recipients (Maildir files byte-exact after the
Return-Path and Received headers; the queue's envelope and content); command and
message line limits; a 10 MB message; the message size limit; RSET, NOOP, VRFY,
EXPN, HELP, unknown commands, out-of-order commands, too many recipients, the error
limit, QUIT. Every case starts its own daemon (smtpd_harness).
"""
import hashlib
import re
import smtplib

import smtpd_harness as h
from smtpd_harness import Smtpd, check, check_reply, dot_encode, parse_received, split_trace

BODY = (b"From: Sender <sender@client.example>\r\n"
        b"To: alice@test.local\r\n"
        b"Subject: a local and a remote recipient\r\n"
        b"Message-ID: <basic-1@client.example>\r\n"
        b"\r\n"
        b"First line.\r\n"
        b".A line that starts with a dot (stuffed on the wire).\r\n"
        b"..Two dots.\r\n"
        b"\tTabbed, trailing spaces   \r\n"
        b"\r\n"
        b"Last line.\r\n")


def test_local_and_remote_recipients_are_delivered_byte_exact():
    with Smtpd() as d:
        s = d.smtp()
        refused = s.sendmail("sender@client.example",
                             ["alice@test.local", "Bob@TEST.local", "carol@remote.example"], BODY)
        s.quit()
        check(refused == {}, "refused: %r" % refused)

        # Each local recipient: one file in <mailbox>/new, none in tmp; mailbox names
        # are lower-cased ("Bob" -> bob).
        received = {}
        for mailbox in ("alice", "bob"):
            raw = d.only_message(mailbox)
            check(d.tmp(mailbox) == [], "%s/tmp not empty: %s" % (mailbox, d.tmp(mailbox)))
            rp, rec, rest = split_trace(raw)
            check(rp == b"Return-Path: <sender@client.example>\r\n", "Return-Path: %r" % rp)
            check(rest == BODY, "%s: content differs from what was sent: %r" % (mailbox, rest[:300]))
            m = parse_received(rec)
            check(m.group("helo") == "client.example", "Received from: %r" % m.group(0))
            check(m.group("addr") == "127.0.0.1", "Received address: %r" % m.group(0))
            check(m.group("rdns") is None, "Received names a reverse name with --no-rdns: %r" % m.group(0))
            check(m.group("by") == "test.local", "Received by: %r" % m.group(0))
            check(m.group("proto") == "ESMTP", "Received with: %r" % m.group(0))
            check(m.group("for") is None, "Received has 'for' with three recipients: %r" % m.group(0))
            received[mailbox] = rec
        check(received["alice"] == received["bob"], "the copies' Received headers differ")
        check(set(d.mailboxes()) == {"alice", "bob"}, "mailboxes: %s" % d.mailboxes())

        # The remote recipient: one queued message, envelope naming sender and
        # recipient, content = Received + data byte-exact, nothing left in tmp/.
        ids = d.queue_ids()
        check(len(ids) == 1, "queue envelopes: %s" % ids)
        qid = ids[0]
        check(len(qid) == 28 and all(c in "0123456789abcdef" for c in qid), "queue id: %r" % qid)
        fields, rcpts = d.envelope(qid)
        check(fields.get("id") == qid, "envelope id: %r" % fields)
        check(fields.get("sender") == "sender@client.example", "envelope sender: %r" % fields)
        check([r.get("to") for r in rcpts] == ["carol@remote.example"], "envelope recipients: %r" % rcpts)
        check(rcpts[0].get("domain") == "remote.example" and rcpts[0].get("state") == "pending",
              "envelope rcpt: %r" % rcpts)
        content = d.content(qid)
        _, qrec, qrest = split_trace(content, return_path=False)
        check(qrest == BODY, "queued content differs: %r" % qrest[:300])
        check(qrec == received["alice"], "queued Received differs from the local one: %r vs %r"
              % (qrec, received["alice"]))
        mid = parse_received(qrec).group("id")
        check(mid in (qid, qid[7:14] + qid[19:22] + qid[26:28]),
              "Received id %r is neither the queue id %s nor its short form" % (mid, qid))
        check(int(fields.get("content-size", "-1")) == len(content), "content-size: %r" % fields)
        # One id per message (transaction.hpp): the queue id is the one in the log.
        d.wait_log(r"^\S+ \S+: info: \w+: client=\S+, helo=<client\.example>, id=%s$" % qid)
        check(d.queue_tmp() == [], "queue tmp/ not empty: %s" % d.queue_tmp())

        # The log: one line per recipient.
        d.wait_log(r"to=<carol@remote\.example>, status=queued")
        d.wait_log(r"from=<sender@client\.example>, size=%d, nrcpt=3" % len(BODY))
        d.wait_log(r"disconnect from \S*\[127\.0\.0\.1\] ehlo=1 mail=1 rcpt=3 data=1 quit=1 commands=7")
        # The client's name in connect/disconnect/client= lines is a name (with
        # --no-rdns: "unknown" or the like), never stray bytes.
        for m in d.wait_log(r"(connect from|client=) ([^\[]*)\[127\.0\.0\.1\]", count=3):
            check(re.match(r"^[A-Za-z0-9.-]+$", m.group(2)), "bad client name in the log: %r" % m.group(0))
        # worker.hpp: "to=<r>, status=sent, delivered=<mail_root>/<mailbox>/new/<file>".
        d.wait_log(r"to=<alice@test\.local>, status=sent, delivered=%s/alice/new/[^/\s]+$" % re.escape(d.mail))


def test_one_recipient_gets_a_for_clause_and_null_sender_an_empty_return_path():
    with Smtpd() as d:
        s = d.smtp()
        s.sendmail("", ["alice@test.local"], BODY)
        s.quit()
        rp, rec, rest = split_trace(d.only_message("alice"))
        check(rp == b"Return-Path: <>\r\n", "Return-Path for <>: %r" % rp)
        check(parse_received(rec).group("for") == "alice@test.local", "Received: %r" % rec)
        check(rest == BODY, "content differs")
        check(d.queue_ids() == [], "a local-only message was queued: %s" % d.queue_ids())


def test_helo_gives_protocol_smtp_and_several_messages_share_a_session():
    with Smtpd() as d:
        c = d.client()
        c.expect_greeting()
        c.expect("HELO client.example", 250)
        for i in range(3):
            body = b"Subject: %d\r\n\r\nmessage %d\r\n" % (i, i)
            check_reply(c.transaction("a@client.example", ["alice@test.local"], dot_encode(body)), 250,
                        what="message %d" % i)
        c.expect("QUIT", 221)
        c.wait_closed()
        files = d.new("alice")
        check(len(files) == 3, "three messages expected: %s" % files)
        for f in files:
            _, rec, _ = split_trace(h.read_bytes(f))
            check(parse_received(rec).group("proto") == "SMTP", "HELO session not 'with SMTP': %r" % rec)


def test_ehlo_offers_the_extensions_and_the_size_limit():
    with Smtpd(["--max-message-size", "100k"]) as d:
        c = d.client()
        g = c.expect_greeting()
        check(g.texts[0].startswith("test.local"), "greeting does not name the host: %r" % g)
        r = c.hello()
        check(r.texts[0].startswith("test.local"), "EHLO reply does not name the host: %r" % r)
        keywords = [t.split()[0].upper() for t in r.texts[1:]]
        for k in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8"):
            check(k in keywords, "EHLO does not offer %s: %r" % (k, r))
        check("SIZE 102400" in r.texts, "SIZE does not say 102400: %r" % r)
        for k in ("STARTTLS", "AUTH", "CHUNKING"):
            check(k not in keywords, "EHLO offers %s, which smtpd does not do: %r" % (k, r))
        c.expect("QUIT", 221)


def test_command_lines_up_to_512_octets_pass_and_longer_get_500():
    with Smtpd() as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        # "NOOP " + arg + CRLF: 510 and 512 octets in all pass, 513 and 100k fail.
        c.expect("NOOP " + "x" * 503, 250)
        c.expect("NOOP " + "x" * 505, 250)
        c.expect("NOOP " + "x" * 506, 500, "5.5.2")
        c.expect("NOOP " + "y" * 100000, 500, "5.5.2")
        # The stream stays in sync: the next command gets its own reply.
        c.expect("MAIL FROM:<a@client.example>", 250, "2.1.0")
        c.expect("RCPT TO:<alice@test.local>", 250, "2.1.5")
        # A long line inside a command the session was in: still one 500, state kept.
        c.expect("RCPT TO:<" + "b" * 600 + "@test.local>", 500, "5.5.2")
        check_reply(_data(c, dot_encode(b"Subject: sync\r\n\r\nok\r\n")), 250, what="DATA after long lines")
        c.expect("QUIT", 221)
        check(len(d.new("alice")) == 1, "the message was not delivered once")


def _data(c, encoded):
    c.expect("DATA", 354)
    c.send(encoded)
    return c.reply()


def test_message_lines_up_to_998_octets_pass_and_longer_get_550_5_6_0():
    with Smtpd() as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        # RFC 5321 §4.5.3.1.6: 1000 octets with CRLF: 997 and 998 pass, 999 fails.
        ok = b"Subject: long lines\r\n\r\n" + b"a" * 997 + b"\r\n" + b"b" * 998 + b"\r\n"
        check_reply(c.transaction("a@client.example", ["alice@test.local"], dot_encode(ok)), 250, what="998")
        _, _, rest = split_trace(d.only_message("alice"))
        check(rest == ok, "998-octet lines not delivered byte-exact")
        # A dot-stuffed line counts as sent: "." + 998 octets is 999 on the wire.
        bad = b"Subject: too long\r\n\r\n" + b"c" * 999 + b"\r\nafter\r\n"
        check_reply(c.transaction("a@client.example", ["alice@test.local"], dot_encode(bad)), 550, "5.6.0",
                    "999-octet line")
        c.expect("NOOP", 250)  # in sync after the refused message
        check(len(d.new("alice")) == 1, "the refused message was delivered")
        check(d.tmp("alice") == [], "tmp/ not empty after a refused message: %s" % d.tmp("alice"))
        c.expect("QUIT", 221)


def test_a_10_mb_message_is_delivered_byte_exact():
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" * 12 + b"\r\n"
    body = b"Subject: ten megabytes\r\n\r\n" + line * (10 * 1024 * 1024 // len(line)) + b".dot line\r\n"
    with Smtpd() as d:
        s = d.smtp(timeout=60)
        s.sendmail("big@client.example", ["alice@test.local", "far@remote.example"], body)
        s.quit()
        _, _, rest = split_trace(d.only_message("alice"))
        check(len(rest) == len(body) and hashlib.sha256(rest).digest() == hashlib.sha256(body).digest(),
              "10 MB message not byte-exact (%d octets delivered, %d sent)" % (len(rest), len(body)))
        ids = d.queue_ids()
        check(len(ids) == 1, "queued: %s" % ids)
        _, _, qrest = split_trace(d.content(ids[0]), return_path=False)
        check(hashlib.sha256(qrest).digest() == hashlib.sha256(body).digest(), "queued 10 MB copy differs")


def test_a_message_over_max_message_size_gets_552_and_leaves_nothing():
    with Smtpd(["--max-message-size", "100k"]) as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        # Declared too big: refused at MAIL (RFC 1870).
        c.expect("MAIL FROM:<a@client.example> SIZE=102401", 552, "5.3.4")
        c.expect("MAIL FROM:<a@client.example> SIZE=102400", 250)
        c.expect("RSET", 250)
        # Not declared, bigger than the limit: read to the end, then 552.
        big = b"Subject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 200
        r = c.transaction("a@client.example", ["alice@test.local", "far@remote.example"], dot_encode(big))
        check_reply(r, 552, "5.3.4", "message over the limit")
        c.expect("NOOP", 250)
        check(d.all_new() == [] and d.all_tmp() == [], "files left: %s %s" % (d.all_new(), d.all_tmp()))
        check(d.queue_ids() == [] and d.queue_tmp() == [], "queue left: %s %s" % (d.queue_ids(), d.queue_tmp()))
        # Exactly at the limit: accepted. Content counted after unstuffing, CRLFs in.
        exact = b"Subject: exact\r\n\r\n" + (b"e" * 998 + b"\r\n") * 102
        exact += b"f" * (102400 - len(exact) - 2) + b"\r\n"
        check(len(exact) == 102400, "test bug")
        check_reply(c.transaction("a@client.example", ["alice@test.local"], dot_encode(exact)), 250,
                    what="message at the limit")
        c.expect("QUIT", 221)
        _, _, rest = split_trace(d.only_message("alice"))
        check(rest == exact, "message at the limit not byte-exact")


def test_smtplib_sees_552_for_an_oversized_message():
    with Smtpd(["--max-message-size", "64k"]) as d:
        s = d.smtp()
        try:
            s.sendmail("a@client.example", ["alice@test.local"], b"Subject: x\r\n\r\n" + b"q" * 70000 + b"\r\n")
        except smtplib.SMTPDataError as e:
            check(e.smtp_code == 552, "expected 552, got %s %r" % (e.smtp_code, e.smtp_error))
        except smtplib.SMTPSenderRefused as e:  # smtplib sends SIZE= when offered
            check(e.smtp_code == 552, "expected 552, got %s %r" % (e.smtp_code, e.smtp_error))
        else:
            raise AssertionError("an oversized message was accepted")
        s.quit()
        check(d.all_new() == [] and d.all_tmp() == [], "files left")


def test_rset_noop_and_wrong_sequences():
    with Smtpd() as d:
        c = d.client()
        c.expect_greeting()
        c.expect("NOOP", 250, "2.0.0")
        c.expect("RSET", 250, "2.0.0")
        c.expect("MAIL FROM:<a@client.example>", 503, "5.5.1")  # before HELO
        c.expect("RCPT TO:<alice@test.local>", 503, "5.5.1")
        c.expect("DATA", 503, "5.5.1")
        c.hello()
        c.expect("RCPT TO:<alice@test.local>", 503, "5.5.1")  # before MAIL
        c.expect("DATA", 503, "5.5.1")
        c.expect("MAIL FROM:<a@client.example>", 250, "2.1.0")
        c.expect("MAIL FROM:<a@client.example>", 503, "5.5.1")  # nested MAIL
        c.expect("DATA", 554, "5.5.1")  # no valid recipient
        c.expect("RCPT TO:<alice@test.local>", 250, "2.1.5")
        c.expect("NOOP", 250)  # NOOP keeps the transaction
        c.expect("RSET", 250, "2.0.0")  # RSET drops it
        c.expect("DATA", 503, "5.5.1")
        c.expect("RCPT TO:<alice@test.local>", 503, "5.5.1")
        # A new transaction after RSET goes to its own recipients only.
        c.expect("MAIL FROM:<b@client.example>", 250)
        c.expect("RCPT TO:<bob@test.local>", 250)
        c.expect("DATA", 354)
        c.send(dot_encode(b"Subject: after RSET\r\n\r\nbody\r\n"))
        check_reply(c.reply(), 250, "2.0.0", "message after RSET")
        # RSET after a message, HELO again: the session goes on.
        c.expect("RSET", 250)
        c.expect("EHLO again.example", 250)
        c.expect("QUIT", 221, "2.0.0")
        c.wait_closed()
        check(d.new("alice") == [], "the RSET transaction was delivered: %s" % d.new("alice"))
        rp, _, _ = split_trace(d.only_message("bob"))
        check(rp == b"Return-Path: <b@client.example>\r\n", "Return-Path: %r" % rp)


def test_vrfy_and_expn_get_252_never_250():
    with Smtpd() as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        # RFC 5321 §7.3: a server that does not verify says 252 (doc/protocol-core.md).
        for cmd in ("VRFY alice", "VRFY <alice@test.local>", "VRFY nobody-here", "EXPN staff"):
            r = c.command(cmd)
            check(r.code != 250, "%s answered 250, which verifies a user: %r" % (cmd, r))
            check_reply(r, 252, "2.0.0", cmd)
        c.expect("VRFY", 501)  # argument required
        c.expect("QUIT", 221)


def test_commands_not_offered_get_502_and_unknown_ones_500():
    with Smtpd() as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        for cmd in ("HELP", "BDAT 0 LAST", "STARTTLS", "AUTH PLAIN"):
            c.expect(cmd, 502, "5.5.1")
        for cmd in ("XYZZY", "MAILFROM:<a@b>", "EHLOO x", "GET / HTTP/1.0"):
            c.expect(cmd, 500, "5.5.2")
        c.expect("MAIL FROM: <a@client.example>", 501)  # space after the colon
        c.expect("MAIL FROM:<a@client.example> FOO=BAR", 555, "5.5.4")
        c.expect("QUIT extra", 501, "5.5.4")
        c.expect("NOOP", 250)
        c.expect("QUIT", 221)


def test_too_many_recipients_get_452_4_5_3():
    with Smtpd(["--max-recipients", "3"]) as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<a@client.example>", 250)
        for i in range(3):
            c.expect("RCPT TO:<user%d@test.local>" % i, 250)
        c.expect("RCPT TO:<user3@test.local>", 452, "4.5.3")
        c.expect("DATA", 354)
        c.send(dot_encode(b"Subject: three\r\n\r\n3\r\n"))
        check_reply(c.reply(), 250, what="three recipients")
        c.expect("QUIT", 221)
        check(sorted(d.mailboxes()) == ["user0", "user1", "user2"], "mailboxes: %s" % d.mailboxes())


def test_the_error_limit_ends_the_session_with_421_4_7_0():
    with Smtpd(["--max-errors", "3"]) as d:
        c = d.client()
        c.expect_greeting()
        for _ in range(3):
            c.expect("FOO", 500)
        r = c.command("BAR")
        # The fourth error gets its reply, then 421.
        check_reply(r, 500, what="fourth error")
        check_reply(c.reply(), 421, "4.7.0", "after max_errors")
        c.wait_closed()
        # A delivered message sets the count back to zero (server_session.hpp).
        c = d.client()
        c.expect_greeting()
        c.hello()
        for _ in range(3):
            c.expect("FOO", 500)
        check_reply(c.transaction("a@client.example", ["alice@test.local"], dot_encode(b"S: x\r\n\r\nx\r\n")),
                    250, what="message")
        for _ in range(3):
            c.expect("FOO", 500)
        c.expect("NOOP", 250)
        c.expect("QUIT", 221)


def test_quit_closes_and_eight_bit_and_utf8_mail_are_delivered():
    body = "Subject: caf\u00e9\r\n\r\nna\u00efve \u2603\r\n".encode("utf-8")
    with Smtpd() as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<a@client.example> BODY=8BITMIME", 250)
        c.expect("RCPT TO:<alice@test.local>", 250)
        check_reply(_data(c, dot_encode(body)), 250, what="8-bit message")
        c.expect("MAIL FROM:<j\u00f6rg@client.example> SMTPUTF8", 250)
        c.expect("RCPT TO:<\u00fcser@test.local>", 250)
        check_reply(_data(c, dot_encode(body)), 250, what="UTF-8 message")
        c.expect("QUIT", 221)
        c.wait_closed()
        _, _, rest = split_trace(d.only_message("alice"))
        check(rest == body, "8-bit content changed")
        rp, rec, rest = split_trace(d.only_message("\u00fcser"))
        check(rp == "Return-Path: <j\u00f6rg@client.example>\r\n".encode("utf-8"), "Return-Path: %r" % rp)
        check(parse_received(rec).group("proto") == "UTF8SMTP", "Received with: %r" % rec)
        check(rest == body, "UTF-8 content changed")


if __name__ == "__main__":
    h.main([
        test_local_and_remote_recipients_are_delivered_byte_exact,
        test_one_recipient_gets_a_for_clause_and_null_sender_an_empty_return_path,
        test_helo_gives_protocol_smtp_and_several_messages_share_a_session,
        test_ehlo_offers_the_extensions_and_the_size_limit,
        test_command_lines_up_to_512_octets_pass_and_longer_get_500,
        test_message_lines_up_to_998_octets_pass_and_longer_get_550_5_6_0,
        test_a_10_mb_message_is_delivered_byte_exact,
        test_a_message_over_max_message_size_gets_552_and_leaves_nothing,
        test_smtplib_sees_552_for_an_oversized_message,
        test_rset_noop_and_wrong_sequences,
        test_vrfy_and_expn_get_252_never_250,
        test_commands_not_offered_get_502_and_unknown_ones_500,
        test_too_many_recipients_get_452_4_5_3,
        test_the_error_limit_ends_the_session_with_421_4_7_0,
        test_quit_closes_and_eight_bit_and_utf8_mail_are_delivered,
    ])
