#!/usr/bin/env python3
"""smtpd system tests: faults and signals.

  test_smtpd_faults.py SMTPD [CASE...]

- kill -9 of the worker serving a session in DATA: the client sees the connection
  drop, nothing reaches new/ or the queue, the master starts a new worker (logged),
  and a new session works;
- SIGTERM: an idle session and one in DATA get 421 4.3.2 after --shutdown-grace
  (the cut message leaves nothing), a session that ends within the grace ends
  normally, the master exits 0 and no child survives;
- SIGHUP: the running session goes on, new sessions are served by new workers with
  the re-read config file; a broken file is refused and the old workers go on;
- kill -9 of the log process: the master restarts it and lines keep coming;
- a full disk (a 2 MB tmpfs as the mail root, and as the queue root): 452 4.3.1 (or
  451 4.3.0) after the dot, nothing partial left, and the next small message works.
  Needs root for mount(8); skipped otherwise.
"""
import os
import re
import signal
import socket
import subprocess
import time

import smtpd_harness as h
from smtpd_harness import Smtpd, check, check_reply, dot_encode


def _small_message_works(d, mailbox="after"):
    c = d.client()
    c.expect_greeting()
    c.hello()
    check_reply(c.transaction("a@client.example", ["%s@test.local" % mailbox],
                              dot_encode(b"Subject: small\r\n\r\nsmall\r\n")), 250, what="small message")
    c.expect("QUIT", 221)
    c.close()


def test_kill_9_of_the_worker_in_data_loses_the_session_and_a_new_worker_serves():
    with Smtpd(["--workers", "1"]) as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<a@client.example>", 250)
        c.expect("RCPT TO:<alice@test.local>", 250)
        c.expect("RCPT TO:<carol@remote.example>", 250)
        c.expect("DATA", 354)
        c.send(b"Subject: half a message\r\n\r\n" + b"half\r\n" * 20000)
        # The worker has opened the copies: its tmp file grows.
        h.wait_for(lambda: d.tmp("alice") and os.path.getsize(d.tmp("alice")[0]) > 0, 10,
                   "the message's tmp file in alice/tmp")
        workers = d.worker_pids()
        victim = d.serving_pid(c)
        check(workers == [victim], "with --workers 1 the only worker should serve: workers %s, serving %d"
              % (workers, victim))
        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()
        # The client sees the connection drop.
        try:
            data = c.wait_closed(10)
        except ConnectionResetError:
            data = b""
        check(b"250" not in data, "a reply after the kill: %r" % data)
        c.close()
        check(d.new("alice") == [], "a killed session's message reached new/: %s" % d.new("alice"))
        check(d.queue_ids() == [], "a killed session's message reached the queue: %s" % d.queue_ids())
        orphans = d.tmp("alice") + d.queue_tmp()
        if orphans:
            # Nothing in maildir.hpp or transaction.hpp promises to clean up after a
            # SIGKILL (only abort(), errors and destructors unlink): report, not fail.
            h.note("after kill -9 the orphan(s) %s stay in tmp/" % [os.path.relpath(p, d.dir) for p in orphans])
        # The master starts a new worker and says so in its log.
        new = h.wait_for(lambda: [p for p in d.worker_pids() if p != victim], 15, "a new worker after the kill")
        check(len(new) == 1, "workers after the restart: %s" % new)
        # The master's lines (its pid in "smtpd[pid]") name the dead and the new pid.
        died = h.wait_for(lambda: _master_lines_naming(d, victim), 10, "a master log line naming pid %d" % victim)
        started = h.wait_for(lambda: _master_lines_naming(d, new[0]), 10,
                             "a master log line naming the new worker pid %d" % new[0])
        h.note("master logged: %r | %r" % (died[-1], started[-1]))
        _small_message_works(d)
        check(len(d.new("after")) == 1, "a new session did not deliver")
        check(d.proc.poll() is None and time.time() - killed_at < 60, "the master did not survive")


def _master_lines_naming(d, pid):
    rx = re.compile(r"\b%d\b" % pid)
    return [text for _, p, _, text in d.log_lines() if p == d.pid and rx.search(text)]


def test_sigterm_sends_421_4_3_2_to_an_idle_session_and_exits_0():
    with Smtpd(["--shutdown-grace", "1s", "--workers", "2"]) as d:
        idle = d.client(timeout=20)
        idle.expect_greeting()
        idle.hello()
        # A second session stuck in the middle of its message.
        busy = d.client(timeout=20)
        busy.expect_greeting()
        busy.hello()
        busy.expect("MAIL FROM:<a@client.example>", 250)
        busy.expect("RCPT TO:<alice@test.local>", 250)
        busy.expect("RCPT TO:<carol@remote.example>", 250)
        busy.expect("DATA", 354)
        busy.send(b"Subject: cut by the shutdown\r\n\r\nhalf")
        children = d.worker_pids() + [d.log_process_pid()]
        started = time.monotonic()
        d.signal(signal.SIGTERM)
        check_reply(idle.reply(timeout=20), 421, "4.3.2", "idle session at SIGTERM")
        idle.wait_closed(10)
        elapsed = time.monotonic() - started
        check(elapsed <= 10.0, "421 came %.1f s after SIGTERM with --shutdown-grace 1s" % elapsed)
        check_reply(busy.reply(timeout=20), 421, "4.3.2", "session in DATA at SIGTERM")
        busy.wait_closed(10)
        status = d.wait_exit(15)
        check(status == 0, "master exit status after SIGTERM: %s" % status)
        h.wait_for(lambda: not any(h.alive(p) for p in children if p), 5, "the children to exit")
        d.wait_log(r"log process stopping")
        check(d.all_new() == [] and d.all_tmp() == [], "the cut message left files: %s %s"
              % (d.all_new(), d.all_tmp()))
        check(d.queue_ids() == [] and d.queue_tmp() == [], "the cut message left queue files: %s %s"
              % (d.queue_ids(), d.queue_tmp()))


def test_a_session_that_ends_within_the_grace_ends_normally():
    with Smtpd(["--shutdown-grace", "10s", "--workers", "1"]) as d:
        c = d.client(timeout=20)
        c.expect_greeting()
        c.hello()
        c.expect("MAIL FROM:<a@client.example>", 250)
        c.expect("RCPT TO:<alice@test.local>", 250)
        d.signal(signal.SIGTERM)
        # Once the worker has taken the signal (its "stopping" line), a new connection
        # is not served: refused, closed, 421, or left unanswered (then reset when the
        # daemon exits), but never greeted.
        d.wait_log(r"worker \d+: stopping")
        late = None
        try:
            late = h.Client(d.port, timeout=15)
            r = late.reply(timeout=2)
            check(r.code != 220, "a connection after SIGTERM was greeted: %r" % r)
        except (ConnectionRefusedError, h.ConnectionClosed, ConnectionResetError, socket.timeout):
            pass
        c.expect("DATA", 354)
        c.send(dot_encode(b"Subject: within the grace\r\n\r\nok\r\n"))
        check_reply(c.reply(), 250, what="message during the grace")
        c.expect("QUIT", 221)
        c.wait_closed(10)
        check(d.wait_exit(15) == 0, "exit status %s" % d.proc.returncode)
        check(len(d.new("alice")) == 1, "not delivered")
        if late is not None and late.sock is not None:
            late.wait_closed(5)  # not left hanging once the daemon is gone
            late.close()


def test_sighup_lets_sessions_finish_and_new_workers_serve():
    with Smtpd(["--workers", "2"]) as d:
        c = d.client(timeout=20)
        c.expect_greeting()
        c.hello()
        old = set(d.worker_pids())
        check(len(old) == 2, "workers: %s" % old)
        serving = d.serving_pid(c)
        d.signal(signal.SIGHUP)
        new = h.wait_for(lambda: [p for p in d.worker_pids() if p not in old], 15, "new workers after SIGHUP")
        # The old session goes on; new sessions work.
        c.expect("NOOP", 250)
        for i in range(3):
            _small_message_works(d, "fresh")
        check_reply(c.transaction("a@client.example", ["alice@test.local"],
                                  dot_encode(b"Subject: old session\r\n\r\nx\r\n")), 250, what="old session")
        c.expect("QUIT", 221)
        c.wait_closed(10)
        # The drained workers exit once their sessions are over.
        h.wait_for(lambda: not any(h.alive(p) for p in old), 15, "the old workers to exit")
        check(h.alive(new[0]) and d.proc.poll() is None, "daemon not running after SIGHUP")
        check(len(d.new("fresh")) == 3 and len(d.new("alice")) == 1, "deliveries around SIGHUP failed")
        h.note("SIGHUP: old workers %s (serving %d), new %s" % (sorted(old), serving, new))


def test_sighup_rereads_the_config_file_and_keeps_running_on_a_bad_one():
    def prepare(d):
        d.cfg = os.path.join(d.dir, "smtpd.cfg")
        with open(d.cfg, "w") as f:
            f.write("hostname = \"before.test\";\n")
        d.args = ["-c", d.cfg] + d.args
    with Smtpd(["--workers", "1"], prepare=prepare, identity=False) as d:
        c = d.client()
        check(c.expect_greeting().texts[0].startswith("before.test"), "greeting before the reload")
        c.close()
        old = d.worker_pids()
        with open(d.cfg, "w") as f:
            f.write("hostname = \"after.test\";\n")
        d.signal(signal.SIGHUP)
        h.wait_for(lambda: [p for p in d.worker_pids() if p not in old], 15, "a new worker after SIGHUP")
        h.wait_for(lambda: not any(h.alive(p) for p in old), 15, "the old worker to exit")
        c = d.client()
        g = c.expect_greeting()
        check(g.texts[0].startswith("after.test"), "the reloaded hostname is not used: %r" % g)
        c.expect("QUIT", 221)
        c.close()
        # A broken file: the reload is refused, the running workers go on.
        current = d.worker_pids()
        with open(d.cfg, "w") as f:
            f.write("hostname = \"broken.test\";\nport = 70000;\n")
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload refused: .*smtpd\.cfg:2: port")
        check(d.proc.poll() is None and d.worker_pids() == current, "a bad reload changed the workers")
        c = d.client()
        check(c.expect_greeting().texts[0].startswith("after.test"), "greeting after a refused reload")
        c.expect("QUIT", 221)


def test_a_killed_log_process_is_restarted_and_logging_goes_on():
    with Smtpd(["--workers", "1"]) as d:
        old = d.log_process_pid()
        check(old in h.children_of(d.pid), "log process pid %s is not a child of the master" % old)
        os.kill(old, signal.SIGKILL)
        d.wait_log(r"log process restarted")
        new = d.log_process_pid()
        check(new != old and h.alive(new), "no new log process: %s" % new)
        _small_message_works(d, "logged")
        d.wait_log(r"to=<logged@test\.local>, status=sent")


def _mount_tmpfs(path, size="2m"):
    if not h.is_root():
        raise h.Skip("not root: cannot mount a tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0755" % size, "tmpfs", path],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise h.Skip("mount -t tmpfs failed: %s" % r.stderr.strip())


def _umount(path):
    subprocess.run(["umount", path], capture_output=True, timeout=30)


def test_a_full_mail_root_gets_452_and_leaves_nothing_partial():
    mounted = []

    def prepare(d):
        _mount_tmpfs(d.mail)
        mounted.append(d.mail)
        d.on_cleanup(lambda: _umount(d.mail))
    big = b"Subject: bigger than the disk\r\n\r\n" + (b"F" * 998 + b"\r\n") * 3000  # 3 MB
    try:
        with Smtpd(prepare=prepare) as d:
            c = d.client()
            c.expect_greeting()
            c.hello()
            r = c.transaction("a@client.example", ["alice@test.local"], dot_encode(big))
            check_reply(r, (452, 451), what="message bigger than the mail root's file system")
            check((r.code, r.status) in ((452, "4.3.1"), (451, "4.3.0")), "enhanced status: %r" % r)
            if r.code != 452:
                h.note("ENOSPC answered %r; maildir.hpp says 452 4.3.1" % r)
            c.expect("NOOP", 250)
            check(d.all_new() == [] and d.all_tmp() == [], "partial files: %s %s" % (d.all_new(), d.all_tmp()))
            check(d.queue_ids() == [], "queued: %s" % d.queue_ids())
            # Two recipients: all or nothing.
            r = c.transaction("a@client.example", ["alice@test.local", "bob@test.local"],
                              dot_encode(b"Subject: half the disk\r\n\r\n" + (b"G" * 998 + b"\r\n") * 1100))
            check_reply(r, (452, 451), what="two copies of 1.1 MB on 2 MB")
            check(d.all_new() == [] and d.all_tmp() == [], "partial files: %s %s" % (d.all_new(), d.all_tmp()))
            c.expect("QUIT", 221)
            _small_message_works(d)
            check(len(d.new("after")) == 1, "small message after ENOSPC not delivered")
            d.wait_log(r"status=deferred \(452 4\.3\.1")
    finally:
        for p in mounted:
            if os.path.ismount(p):
                _umount(p)


def test_a_full_queue_gets_452_and_leaves_nothing_partial():
    def prepare(d):
        _mount_tmpfs(d.queue)
        d.on_cleanup(lambda: _umount(d.queue))
    big = b"Subject: bigger than the queue\r\n\r\n" + (b"Q" * 998 + b"\r\n") * 3000
    with Smtpd(prepare=prepare) as d:
        c = d.client()
        c.expect_greeting()
        c.hello()
        r = c.transaction("a@client.example", ["carol@remote.example", "alice@test.local"], dot_encode(big))
        check_reply(r, 452, "4.3.1", "message bigger than the queue's file system")
        check(d.queue_ids() == [], "envelopes: %s" % d.queue_ids())
        leftovers = [p for p in h.tree(d.queue) if p.startswith(("tmp/", "content/", "domain/")) and
                     os.path.isfile(os.path.join(d.queue, p))]
        check(not leftovers, "queue files left: %s" % leftovers)
        check(d.all_new() == [] and d.all_tmp() == [], "local copy kept: %s %s" % (d.all_new(), d.all_tmp()))
        c.expect("QUIT", 221)


if __name__ == "__main__":
    h.main([
        test_kill_9_of_the_worker_in_data_loses_the_session_and_a_new_worker_serves,
        test_sigterm_sends_421_4_3_2_to_an_idle_session_and_exits_0,
        test_a_session_that_ends_within_the_grace_ends_normally,
        test_sighup_lets_sessions_finish_and_new_workers_serve,
        test_sighup_rereads_the_config_file_and_keeps_running_on_a_bad_one,
        test_a_killed_log_process_is_restarted_and_logging_goes_on,
        test_a_full_mail_root_gets_452_and_leaves_nothing_partial,
        test_a_full_queue_gets_452_and_leaves_nothing_partial,
    ])
