#!/usr/bin/env python3
"""smtpd system tests: configuration (apps/smtpd/settings.hpp, apps/common/config.hpp).

  test_smtpd_config.py SMTPD [CASE...]

--check-config accepts a valid file (exit 0) and the commented example
apps/smtpd/smtpd.cfg.example when it exists; a bad file or option exits 78 with
"file:line: key: reason" on stderr; a config file's values are used and the
command line wins over them; sizes and durations take suffixes; --help lists the
options; a configured mail root that does not exist stops the start.
"""
import os
import re
import shutil
import socket
import tempfile

import smtpd_harness as h
from smtpd_harness import Smtpd, check

EXIT_CONFIG = 78


class TempDir:
    def __enter__(self):
        self.path = tempfile.mkdtemp(prefix="smtpd-systest-cfg-")
        for sub in ("mail", "queue", "log"):
            os.mkdir(os.path.join(self.path, sub))
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)
        return False

    def write(self, name, text):
        path = os.path.join(self.path, name)
        with open(path, "w") as f:
            f.write(text)
        return path


def _run(*args, cwd=None):
    return h.run_bounded([h.SMTPD] + list(args), 20, cwd=cwd)


def _valid_config(t, port=2600):
    return ("# A valid configuration: every kind of value.\n"
            "port = %d;\n"
            "bind = [\"127.0.0.1\"];\n"
            "mail_root = \"%s/mail\";\n"
            "queue_root = \"%s/queue\";\n"
            "log_file = \"%s/log/smtpd.log\";\n"
            "log_level = \"debug\";\n"
            "hostname = \"from-file.test\";\n"
            "local_domain = [\"test.local\", \"example.org\"];\n"
            "relay_net = (\"127.0.0.0/8\", \"::1/128\");\n"
            "workers = 1;\n"
            "max_connections = 50;\n"
            "timeout = \"5m\";\n"
            "data_timeout = 600;\n"
            "shutdown_grace = \"2s\";\n"
            "max_message_size = \"1M\";\n"
            "max_recipients = 50;\n"
            "max_errors = 10;\n"
            "rdns = false;\n"
            "dns_timeout = \"3s\";\n"
            "reject_unknown_client = false;\n") % (port, t.path, t.path, t.path)


def _check_config_error(status, err, source, line, key):
    check(status == EXIT_CONFIG, "exit status %d, expected %d; stderr %r" % (status, EXIT_CONFIG, err))
    where = re.escape(source) + (":%d" % line if line else "")
    check(re.search(r"(^|\s|/)%s: %s: \S" % (where, re.escape(key)), err, re.M),
          "stderr does not say '%s%s: %s: reason': %r" % (source, ":%d" % line if line else "", key, err))


def test_check_config_accepts_a_valid_file():
    with TempDir() as t:
        cfg = t.write("smtpd.cfg", _valid_config(t))
        status, out, err = _run("--check-config", "-c", cfg)
        check(status == 0, "--check-config on a valid file: status %d, stdout %r stderr %r" % (status, out, err))
        status, out, err = _run("--check-config", "--config", cfg, "--port", "2601", "--timeout", "90s",
                                "--max-message-size", "512k", "--bind", "127.0.0.1", "--bind", "::1")
        check(status == 0, "--check-config with options: status %d, %r %r" % (status, out, err))
        # It checked and left: nothing was started, no mail store touched.
        check(os.listdir(os.path.join(t.path, "mail")) == [], "--check-config touched the mail root")


def test_check_config_accepts_the_example_config():
    example = os.path.join(h.SOURCE_ROOT, "apps", "smtpd", "smtpd.cfg.example")
    if not os.path.exists(example):
        raise h.Skip("no %s yet" % example)
    status, out, err = _run("--check-config", "-c", example)
    check(status == 0, "--check-config on the example: status %d, stdout %r, stderr %r" % (status, out, err))


def test_a_bad_value_exits_78_naming_file_line_and_key():
    with TempDir() as t:
        cfg = t.write("bad.cfg", "# line 1\nhostname = \"x.test\";\nport = 70000;\nworkers = 2;\n")
        for argv in (["--check-config", "-c", cfg], ["-c", cfg]):  # the same when starting
            status, out, err = _run(*argv, cwd=t.path)
            _check_config_error(status, err, "bad.cfg", 3, "port")


def test_an_unknown_key_exits_78_naming_file_line_and_key():
    with TempDir() as t:
        cfg = t.write("unknown.cfg", "port = 2525;\nno_such_key = 1;\n")
        status, out, err = _run("--check-config", "-c", cfg)
        _check_config_error(status, err, "unknown.cfg", 2, "no_such_key")


def test_wrong_types_and_invalid_values_exit_78():
    cases = [
        ("rdns = 1;\n", "rdns"),                          # not a boolean
        ("workers = \"two\";\n", "workers"),              # not an integer
        ("timeout = \"5 minutes\";\n", "timeout"),        # not a duration
        ("max_message_size = \"10X\";\n", "max_message_size"),
        ("relay_net = [\"10.1.2.3/8\"];\n", "relay_net"),  # host bits set
        ("relay_net = [\"not-a-net\"];\n", "relay_net"),
        ("bind = [\"300.1.1.1\"];\n", "bind"),
        ("log_level = \"loud\";\n", "log_level"),
        ("port = 0;\n", "port"),
    ]
    with TempDir() as t:
        for i, (text, key) in enumerate(cases):
            cfg = t.write("bad%d.cfg" % i, "# case %d\n" % i + text)
            status, out, err = _run("--check-config", "-c", cfg)
            _check_config_error(status, err, "bad%d.cfg" % i, 2, key)


def test_bad_options_exit_78():
    for argv, key in ((["--port", "70000"], "--port"), (["--relay-net", "10.0.0.0/33"], "--relay-net"),
                      (["--timeout", "soon"], "--timeout")):
        status, out, err = _run("--check-config", *argv)
        check(status == EXIT_CONFIG, "%s: status %d, expected 78; %r" % (argv, status, err))
        check(key in err, "%s: stderr does not name %s: %r" % (argv, key, err))
    status, out, err = _run("--check-config", "--no-such-option")
    check(status == EXIT_CONFIG, "--no-such-option: status %d, %r" % (status, err))
    with TempDir() as t:
        missing = os.path.join(t.path, "missing.cfg")
        status, out, err = _run("--check-config", "-c", missing)
        check(status == EXIT_CONFIG and "missing.cfg" in err, "missing --config file: %d %r" % (status, err))


def test_help_lists_every_option():
    status, out, err = _run("--help")
    check(status == 0, "--help: status %d, %r" % (status, err))
    for option in ("--port", "--bind", "--mail-root", "--queue-root", "--log-file", "--user", "--group",
                   "--hostname", "--local-domain", "--local-user", "--relay-net", "--workers",
                   "--max-connections", "--timeout", "--data-timeout", "--shutdown-grace",
                   "--max-message-size", "--max-recipients", "--max-errors", "--rdns", "--dns-server",
                   "--dns-timeout", "--reject-unknown-client", "--check-config", "--config"):
        check(option in out, "--help does not list %s" % option)


def test_the_config_file_is_used_and_options_win():
    def prepare(d):
        d.cfg = os.path.join(d.dir, "smtpd.cfg")
        with open(d.cfg, "w") as f:
            f.write("hostname = \"from-file.test\";\n"
                    "local_domain = [\"file.test\"];\n"
                    "max_message_size = \"1M\";\n"
                    "max_recipients = 2;\n")
        d.args = ["-c", d.cfg, "--max-message-size", "512k"] + d.args
    with Smtpd(prepare=prepare, identity=False) as d:
        c = d.client()
        g = c.expect_greeting()
        check(g.texts[0].startswith("from-file.test"), "greeting: %r" % g)
        r = c.hello()
        check("SIZE 524288" in r.texts, "the option did not win over the file: %r" % r)
        c.expect("MAIL FROM:<a@client.example>", 250)
        c.expect("RCPT TO:<one@file.test>", 250)
        c.expect("RCPT TO:<two@FILE.test>", 250)
        c.expect("RCPT TO:<three@file.test>", 452, "4.5.3")
        c.expect("QUIT", 221)


def test_a_missing_mail_root_stops_the_start():
    with TempDir() as t:
        port = h.free_port()
        status, out, err = h.run_bounded(
            [h.SMTPD, "--port", str(port), "--bind", "127.0.0.1", "--mail-root", t.path + "/no-such-dir",
             "--queue-root", t.path + "/queue", "--log-file", t.path + "/log/smtpd.log", "--no-rdns",
             "--hostname", "test.local"], 20, cwd=t.path)
        check(status > 0, "smtpd with a missing mail root: status %d" % status)
        log = open(t.path + "/log/smtpd.log", errors="replace").read() \
            if os.path.exists(t.path + "/log/smtpd.log") else ""
        check("no-such-dir" in err + log, "no message names the missing mail root: %r %r" % (err, log[-1000:]))
        check(not os.path.exists(t.path + "/no-such-dir"), "the missing mail root was created")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            raise AssertionError("something still listens on port %d" % port)
        except ConnectionRefusedError:
            pass


if __name__ == "__main__":
    h.main([
        test_check_config_accepts_a_valid_file,
        test_check_config_accepts_the_example_config,
        test_a_bad_value_exits_78_naming_file_line_and_key,
        test_an_unknown_key_exits_78_naming_file_line_and_key,
        test_wrong_types_and_invalid_values_exit_78,
        test_bad_options_exit_78,
        test_help_lists_every_option,
        test_the_config_file_is_used_and_options_win,
        test_a_missing_mail_root_stops_the_start,
    ])
