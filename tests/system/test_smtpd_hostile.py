#!/usr/bin/env python3
"""smtpd system tests: hostile clients.

  test_smtpd_hostile.py SMTPD [CASE...]

SMTP smuggling (a lone LF or CR around a dot inside DATA, then smuggled commands)
never yields a second message from one DATA; local parts that would leave the
mail root are 550 5.1.3 and nothing is created outside it, nor through a planted
symlink; over-long lines and NUL bytes get 500 and the stream stays in sync;
pregreeting gets 554; clients that vanish mid-message leave nothing. After each
abuse the daemon still serves a normal session.
"""
import os
import shutil
import tempfile

import smtpd_harness as h
from smtpd_harness import Smtpd, check, check_reply, dot_encode, split_trace

SMUGGLED = (b"MAIL FROM:<admin@test.local>\r\n"
            b"RCPT TO:<victim@test.local>\r\n"
            b"DATA\r\n"
            b"From: admin@test.local\r\n"
            b"Subject: smuggled\r\n"
            b"\r\n"
            b"This must never be a message of its own.\r\n")

SEQUENCES = [b"\n.\n", b"\r.\n", b"\n.\r\n", b"\r\n.\r", b"\r.\r", b"\r\n.\n", b"\n.\r"]


def _normal_session_works(d, mailbox="check"):
    """A plain transaction succeeds: the daemon survived what came before."""
    before = len(d.new(mailbox))
    c = d.client()
    c.expect_greeting()
    c.hello()
    check_reply(c.transaction("ok@client.example", ["%s@test.local" % mailbox],
                              dot_encode(b"Subject: still alive\r\n\r\nyes\r\n")), 250, what="normal session")
    c.expect("QUIT", 221)
    c.close()
    check(len(d.new(mailbox)) == before + 1, "the normal message was not delivered")


def test_smuggling_sequences_never_make_a_second_message():
    with Smtpd() as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        for seq in SEQUENCES:
            c.expect("MAIL FROM:<sender@client.example>", 250)
            c.expect("RCPT TO:<alice@test.local>", 250)
            c.expect("DATA", 354)
            c.send(b"Subject: smuggler\r\n\r\nHello" + seq + SMUGGLED + b"\r\n.\r\n")
            # Exactly one reply for the one DATA: the message is refused (bare LF or
            # CR, the default policy) and nothing smuggled is answered.
            r = c.reply()
            check_reply(r, 550, "5.5.2", "DATA with %r" % seq)
            check(c.still_open(0.3), "extra bytes after the reply to DATA with %r: %r" % (seq, c.buf))
            c.expect("NOOP", 250)  # in sync: the next reply is the NOOP's
        c.expect("QUIT", 221)
        c.close()
        check(d.new("victim") == [] and d.tmp("victim") == [], "a smuggled message was delivered")
        check(d.all_new() == [] and d.all_tmp() == [], "files stored: %s %s" % (d.all_new(), d.all_tmp()))
        check(d.queue_ids() == [], "queued: %s" % d.queue_ids())
        _normal_session_works(d)


def test_smuggling_pipelined_after_the_real_end_is_a_real_second_transaction_only():
    # The control: commands after the real CRLF.CRLF are commands (pipelined), and a
    # message with only CRLF line ends is delivered once.
    with Smtpd() as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<sender@client.example>", 250)
        c.expect("RCPT TO:<alice@test.local>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: first\r\n\r\nHello\r\n.\r\n" + SMUGGLED + b".\r\n")
        check_reply(c.reply(), 250, what="first message")
        check_reply(c.reply(), 250, what="pipelined MAIL")
        check_reply(c.reply(), 250, what="pipelined RCPT")
        check_reply(c.reply(), 354, what="pipelined DATA")
        check_reply(c.reply(), 250, what="second message")
        c.expect("QUIT", 221)
        check(len(d.new("alice")) == 1 and len(d.new("victim")) == 1, "one message each expected")


TRAVERSAL = ['"../etc"', '".."', '"."', '".hidden"', '"a/b"', 'a/b', '"../../../../tmp/evil"', '"a\\/b"',
             '"/etc/passwd"', '"x/../../y"', '"..x"', '"x.."']


def test_path_traversal_local_parts_get_550_5_1_3_and_nothing_is_created_outside():
    tmp = tempfile.gettempdir()
    watched = [os.path.join(tmp, n) for n in ("evil", "etc", "y")]
    check(not any(os.path.lexists(p) for p in watched), "leftovers in %s: %s" % (tmp, watched))
    with Smtpd() as d:
        before = h.tree(d.dir)
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<a@client.example>", 250)
        for rcpt in TRAVERSAL:
            c.expect("RCPT TO:<%s@test.local>" % rcpt, 550, "5.1.3")
        # Unquoted forms that are not even dot-strings: a syntax error, or 550.
        for rcpt in (".hidden", "../etc", "a..b", ".."):
            r = c.command("RCPT TO:<%s@test.local>" % rcpt)
            check(r.code in (501, 550), "RCPT %s: expected 501 or 550, got %r" % (rcpt, r))
        c.expect("RCPT TO:<alice@test.local>", 250)
        c.expect("DATA", 354)
        c.send(dot_encode(b"Subject: only alice\r\n\r\nx\r\n"))
        check_reply(c.reply(), 250)
        c.expect("QUIT", 221)
        after = h.tree(d.dir)
        allowed = {"mail/alice", "mail/alice/tmp", "mail/alice/new", "mail/alice/cur"}
        extra = sorted(p for p in after - before if p not in allowed and not p.startswith("mail/alice/new/")
                       and not p.startswith(("queue/", "log/")))
        check(not extra, "paths created: %s" % extra)
        check(d.mailboxes() == ["alice"], "mailboxes: %s" % d.mailboxes())
    check(not any(os.path.lexists(p) for p in watched), "created outside: %s" % watched)


def test_a_symlink_planted_as_a_mailbox_is_never_followed():
    outside = tempfile.mkdtemp(prefix="smtpd-systest-outside-")
    try:
        def plant(d):
            os.symlink(outside, os.path.join(d.mail, "evil"))
            os.mkdir(os.path.join(d.mail, "half"))
            os.symlink(outside, os.path.join(d.mail, "half", "tmp"))
        with Smtpd(prepare=plant) as d:
            for mailbox in ("evil", "half"):
                c = d.client()
                c.expect_greeting()
                c.hello()
                c.expect("MAIL FROM:<a@client.example>", 250)
                r = c.command("RCPT TO:<%s@test.local>" % mailbox)
                if r.code == 250:
                    r = c.command("DATA")
                    if r.code == 354:
                        c.send(dot_encode(b"Subject: through a symlink\r\n\r\nx\r\n"))
                        r = c.reply()
                check(r.code >= 400, "delivery through a symlinked %s was accepted: %r" % (mailbox, r))
                c.expect("QUIT", 221)
                c.close()
            check(os.listdir(outside) == [], "files written through the symlink: %s" % os.listdir(outside))
            _normal_session_works(d)
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def test_over_long_lines_get_500_and_the_stream_stays_in_sync():
    with Smtpd() as d:
        c = d.client()
        c.expect_greeting()
        # 1 MB without a line end, then one: one 500 for the whole line.
        c.send(b"EHLO " + b"a" * (1024 * 1024) + b"\r\n")
        check_reply(c.reply(), 500, "5.5.2", "1 MB command line")
        c.hello()
        # In DATA: a 200 KB line is refused at the end of the message.
        c.expect("MAIL FROM:<a@client.example>", 250)
        c.expect("RCPT TO:<alice@test.local>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: long\r\n\r\n" + b"L" * 200000 + b"\r\n.\r\n")
        check_reply(c.reply(), 550, "5.6.0", "200 KB message line")
        c.expect("NOOP", 250)
        c.expect("QUIT", 221)
        c.close()
        check(d.all_new() == [] and d.all_tmp() == [], "files left")
        # A client that sends endless garbage and vanishes.
        c = d.client()
        c.expect_greeting()
        try:
            c.send(b"x" * (4 * 1024 * 1024))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may give up on such a client
        c.abort()
        _normal_session_works(d)


def test_nul_bytes_and_bare_line_ends_in_commands_get_500():
    with Smtpd() as d:
        c = d.client()
        c.expect_greeting()
        c.expect(b"NOOP\0", 500, "5.5.2")
        c.expect(b"EHLO client\0.example", 500, "5.5.2")
        c.hello()
        c.expect(b"MAIL FROM:<a\0b@client.example>", 500, "5.5.2")
        c.expect("MAIL FROM:<a@client.example>", 250)
        c.expect(b"RCPT TO:<alice@test.local>\0", 500, "5.5.2")
        c.expect(b"RCPT TO:<\0alice@test.local>", 500, "5.5.2")
        # A bare LF is no line end: the line up to it is refused, what follows is a line.
        c.send(b"NOOP\nRCPT TO:<alice@test.local>\r\n")
        check_reply(c.reply(), 500, "5.5.2", "bare LF in a command")
        check_reply(c.reply(), 250, what="line after the bare LF")
        c.send(b"NOOP\rRSET\r\n")
        check_reply(c.reply(), 500, "5.5.2", "bare CR in a command")
        c.expect(b"\xff\xfe RSET", 500)
        c.expect("DATA", 354)
        body = b"Subject: NUL is content\r\n\r\na\0b\r\n"
        c.send(dot_encode(body))
        check_reply(c.reply(), 250, what="message with a NUL")
        c.expect("QUIT", 221)
        _, _, rest = split_trace(d.only_message("alice"))
        check(rest == body, "NUL in content not kept: %r" % rest)


def test_pregreet_gets_554_5_5_0():
    # The connect verdict waits for a reverse lookup that never gets an answer, so
    # the client's early bytes surely arrive before the greeting.
    with h.SilentDns() as dns:
        with Smtpd(["--rdns", "--dns-server", dns.server, "--dns-timeout", "2s"], probe_greeting=False) as d:
            c = d.client(timeout=20)
            c.send(b"EHLO eager.example\r\n")
            g = c.reply(timeout=20)
            check_reply(g, 220, what="greeting after the lookup timed out")
            check_reply(c.reply(timeout=20), 554, "5.5.0", "pregreet")
            c.wait_closed(10)
            check(d.all_new() == [], "files stored")


def test_clients_vanishing_mid_message_leave_nothing():
    with Smtpd() as d:
        for how in ("close", "reset"):
            c = d.client()
            c.expect_greeting()
            c.hello()
            c.expect("MAIL FROM:<a@client.example>", 250)
            c.expect("RCPT TO:<alice@test.local>", 250)
            c.expect("RCPT TO:<carol@remote.example>", 250)
            c.expect("DATA", 354)
            c.send(b"Subject: never finished\r\n\r\n" + b"data\r\n" * 20000)
            if how == "close":
                c.close()
            else:
                c.abort()
        # The aborted transactions' files go once the worker has seen the close.
        h.wait_for(lambda: d.all_tmp() == [] and d.queue_tmp() == [], 10,
                   "tmp/ to be cleaned after the clients vanished (%s %s)" % (d.all_tmp(), d.queue_tmp()))
        check(d.all_new() == [] and d.queue_ids() == [], "stored: %s %s" % (d.all_new(), d.queue_ids()))
        _normal_session_works(d)


if __name__ == "__main__":
    h.main([
        test_smuggling_sequences_never_make_a_second_message,
        test_smuggling_pipelined_after_the_real_end_is_a_real_second_transaction_only,
        test_path_traversal_local_parts_get_550_5_1_3_and_nothing_is_created_outside,
        test_a_symlink_planted_as_a_mailbox_is_never_followed,
        test_over_long_lines_get_500_and_the_stream_stays_in_sync,
        test_nul_bytes_and_bare_line_ends_in_commands_get_500,
        test_pregreet_gets_554_5_5_0,
        test_clients_vanishing_mid_message_leave_nothing,
    ])
