#!/usr/bin/env python3
"""smtpd system tests: dropping privileges (apps/smtpd/privileges.hpp).

  test_smtpd_privileges.py SMTPD [CASE...]

As root: with --user nobody --group nogroup and the directories owned by nobody,
the master and every worker run as nobody/nogroup (all four ids of the Uid and Gid
lines of /proc/<pid>/status, no other supplementary group), and delivery works
(the files belong to nobody). An unknown user is a start-up error: non-zero exit,
a message naming it, no process left. Not root: SKIP (the unknown user still runs).
"""
import grp
import os
import pwd
import shutil
import socket
import tempfile

import smtpd_harness as h
from smtpd_harness import Smtpd, check, check_reply, dot_encode, split_trace


def _ids(pid):
    st = h.proc_status(pid)
    uids = [int(x) for x in st["Uid"].split()]
    gids = [int(x) for x in st["Gid"].split()]
    groups = [int(x) for x in st.get("Groups", "").split()]
    return uids, gids, groups


def test_master_and_workers_run_as_nobody_and_deliver():
    if not h.is_root():
        raise h.Skip("not root")
    try:
        nobody = pwd.getpwnam("nobody")
        nogroup = grp.getgrnam("nogroup")
    except KeyError:
        raise h.Skip("no user nobody or group nogroup here")
    uid, gid = nobody.pw_uid, nogroup.gr_gid

    def prepare(d):
        os.chmod(d.dir, 0o755)  # nobody must reach mail/, queue/ and log/
        for path in (d.mail, d.queue, d.log_dir):
            os.chown(path, uid, gid)

    with Smtpd(["--user", "nobody", "--group", "nogroup", "--workers", "2"], prepare=prepare) as d:
        workers = d.worker_pids()
        check(len(workers) == 2, "workers: %s" % workers)
        for pid in [d.pid] + workers:
            uids, gids, groups = _ids(pid)
            what = "master" if pid == d.pid else "worker %d" % pid
            check(uids == [uid] * 4, "%s Uid line: %s" % (what, uids))
            check(gids == [gid] * 4, "%s Gid line: %s" % (what, gids))
            check(set(groups) <= {gid}, "%s keeps supplementary groups: %s" % (what, groups))
        log_pid = d.log_process_pid()
        if log_pid:
            h.note("log process %d runs with Uid %s" % (log_pid, _ids(log_pid)[0]))

        c = d.client()
        c.expect_greeting()
        c.hello()
        body = b"Subject: as nobody\r\n\r\ndelivered by an unprivileged worker\r\n"
        check_reply(c.transaction("a@client.example", ["alice@test.local", "carol@remote.example"],
                                  dot_encode(body)), 250, what="delivery as nobody")
        c.expect("QUIT", 221)
        path = d.new("alice")
        check(len(path) == 1, "not delivered: %s" % path)
        _, _, rest = split_trace(h.read_bytes(path[0]))
        check(rest == body, "content differs")
        st = os.stat(path[0])
        check(st.st_uid == uid, "the delivered file belongs to uid %d" % st.st_uid)
        check(len(d.queue_ids()) == 1, "not queued")
        check(os.stat(os.path.join(d.queue, "envelope", d.queue_ids()[0])).st_uid == uid, "envelope owner")


def test_an_unknown_user_is_a_start_up_error():
    tmp = tempfile.mkdtemp(prefix="smtpd-systest-user-")
    try:
        for sub in ("mail", "queue", "log"):
            os.mkdir(os.path.join(tmp, sub))
        port = h.free_port()
        argv = [h.SMTPD, "--port", str(port), "--bind", "127.0.0.1", "--mail-root", tmp + "/mail",
                "--queue-root", tmp + "/queue", "--log-file", tmp + "/log/smtpd.log", "--no-rdns",
                "--hostname", "test.local", "--user", "no-such-user-systest"]
        status, out, err = h.run_bounded(argv, 20, cwd=tmp)
        check(status != 0, "smtpd started with an unknown user (status 0): %s %s" % (out, err))
        check(status > 0, "smtpd died of signal %d instead of exiting" % -status)
        log = open(tmp + "/log/smtpd.log", errors="replace").read() if os.path.exists(tmp + "/log/smtpd.log") else ""
        check("no-such-user-systest" in err, "stderr does not name the user: %r (log: %r)" % (err, log[-500:]))
        # Nothing listens on the port.
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            raise AssertionError("something still listens on port %d" % port)
        except ConnectionRefusedError:
            pass
        # An unknown group too (as root: otherwise any --user fails anyway).
        if not h.is_root():
            return
        argv[-1] = "nobody"
        status, out, err = h.run_bounded(argv + ["--group", "no-such-group-systest"], 20, cwd=tmp)
        check(status > 0 and "no-such-group-systest" in err, "unknown group: status %d, stderr %r" % (status, err))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    h.main([
        test_master_and_workers_run_as_nobody_and_deliver,
        test_an_unknown_user_is_a_start_up_error,
    ])
