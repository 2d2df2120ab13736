#!/usr/bin/env python3
"""smtpd system tests: the golden transcripts (tests/transcripts/*.smtp) replayed
against the real daemon.

  test_smtpd_transcripts.py SMTPD [FILE.smtp...]

Each run of C:/C~ lines is sent as one pipelined group, then the replies that the
S: lines after it describe are read and compared: reply by reply, the code, the
enhanced status code and the number of lines (the texts may name hosts and ids, so
they are not compared), and for EHLO replies every extension the file expects must
be offered with the same value. "! closes" means the daemon must close the
connection at the end; otherwise it must still be open. Directives are mapped to
smtpd options:
  set hostname/max_recipients/max_errors/message_size -> --hostname, --max-recipients,
      --max-errors, --max-message-size;
  reject rcpt <user@domain> 550 5.1.1 ...             -> --local-domain domain and
      --local-user for every other recipient of that domain in the file.
A file with any other directive (extensions switched off, bare line endings
normalized, other policy rejections) is not replayable against smtpd and is
skipped, with the reason printed, and so is a file whose settings smtpd refuses
(exit 78 at the start).
"""
import glob
import os
import re
import sys

import smtpd_harness as h
from smtpd_harness import Smtpd, check

ESCAPES = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\"}


def unescape(text):
    out = b""
    i = 0
    raw = text.encode("utf-8")
    while i < len(raw):
        ch = raw[i:i + 1]
        if ch != b"\\":
            out += ch
            i += 1
            continue
        nxt = raw[i + 1:i + 2].decode("latin-1")
        if nxt in ESCAPES:
            out += ESCAPES[nxt]
            i += 2
        elif nxt == "x":
            out += bytes([int(raw[i + 2:i + 4], 16)])
            i += 4
        else:
            raise ValueError("bad escape in %r" % text)
    return out


class Transcript:
    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)
        self.steps = []  # ("send", bytes) and ("expect", [reply line texts])
        self.sets = {}
        self.rejects = []
        self.closes = False
        with open(path, encoding="utf-8") as f:
            for line in f.read().split("\n"):
                if not line or line.startswith("#"):
                    continue
                if line.startswith("! "):
                    words = line[2:].split()
                    if words[0] == "set":
                        self.sets[words[1]] = words[2]
                    elif words[0] == "reject":
                        self.rejects.append(words[1:])
                    elif words[0] == "closes":
                        self.closes = True
                    else:
                        raise ValueError("%s: unknown directive %r" % (self.name, line))
                elif line.startswith("C:"):
                    self._add("send", unescape(line[3:] if len(line) > 2 else "") + b"\r\n")
                elif line.startswith("C~ "):
                    self._add("send", unescape(line[3:]))
                elif line.startswith("S:"):
                    self._add("expect", [line[3:] if len(line) > 2 else ""])
                else:
                    raise ValueError("%s: bad line %r" % (self.name, line))

    def _add(self, kind, value):
        if self.steps and self.steps[-1][0] == kind:
            self.steps[-1] = (kind, self.steps[-1][1] + value)
        else:
            self.steps.append((kind, value))

    def recipients(self):
        """Every RCPT path the client sends, as written ("<a@b>")."""
        data = b"".join(v for k, v in self.steps if k == "send")
        return [m.decode() for m in re.findall(rb"(?im)^RCPT TO:(<[^>\r\n]*>)", data)]

    def options(self):
        """The smtpd options for this file, or raises Skip saying why not."""
        opts = []
        mapping = {"hostname": "--hostname", "max_recipients": "--max-recipients",
                   "max_errors": "--max-errors", "message_size": "--max-message-size"}
        for key, value in self.sets.items():
            if key not in mapping:
                raise h.Skip("'! set %s %s' has no smtpd setting" % (key, value))
            opts += [mapping[key], value]
        opts += ["--hostname", self.sets.get("hostname", "mx.example")] if "hostname" not in self.sets else []
        if "message_size" not in self.sets:
            opts += ["--max-message-size", "10240000"]  # the library default the files assume
        refused_domains = {}
        for r in self.rejects:
            if r[0] != "rcpt" or r[2:4] != ["550", "5.1.1"]:
                raise h.Skip("'! reject %s' is a policy smtpd cannot be configured for" % " ".join(r))
            m = re.match(r"^<([^@>]+)@([^>]+)>$", r[1])
            if not m:
                raise h.Skip("'! reject %s': no domain" % " ".join(r))
            refused_domains.setdefault(m.group(2).lower(), set()).add(m.group(1).lower())
        for domain, refused in sorted(refused_domains.items()):
            opts += ["--local-domain", domain]
            users = sorted({m.group(1).lower() for m in (re.match(r"^<([^@>]+)@([^>]+)>$", p)
                                                         for p in self.recipients())
                            if m and m.group(2).lower() == domain} - refused)
            if not users:
                raise h.Skip("no accepted user at %s to configure" % domain)
            for u in users:
                opts += ["--local-user", u]
        if refused_domains:
            opts += ["--local-domain", "test.local"]
        return opts


def split_replies(lines):
    """Expected S: lines grouped into replies (a '-' after the code continues)."""
    replies, current = [], []
    for line in lines:
        current.append(line)
        if not re.match(r"^\d{3}-", line):
            replies.append(current)
            current = []
    check(not current, "unterminated multi-line reply in the transcript: %r" % current)
    return replies


def compare(expected, got, where):
    first = expected[0]
    code = int(first[:3])
    check(got.code == code, "%s: expected %r, got %r" % (where, expected, got))
    m = h.ENHANCED.match(first[4:])
    want_status = "%s.%s.%s" % m.groups() if m else None
    check(got.status == want_status, "%s: enhanced status: expected %r, got %r" % (where, expected, got))
    if len(expected) > 1 and code == 250 and " Hello " in first:  # an EHLO reply
        offered = {t.split(" ", 1)[0].upper(): t for t in got.texts[1:]}
        for line in expected[1:]:
            text = line[4:]
            keyword = text.split(" ", 1)[0].upper()
            check(keyword in offered, "%s: EHLO does not offer %s: %r" % (where, keyword, got))
            check(offered[keyword] == text, "%s: EHLO offers %r, expected %r" % (where, offered[keyword], text))
    else:
        check(len(got.texts) == len(expected), "%s: expected %d lines, got %r" % (where, len(expected), got))


def replay(t):
    opts = t.options()
    try:
        d = Smtpd(opts).__enter__()
    except h.ConfigRefused as e:
        raise h.Skip("smtpd refuses the settings %s: %s" % (" ".join(opts), e.stderr.strip()[-300:]))
    with d:
        c = d.client()
        n = 0
        for kind, value in t.steps:
            if kind == "send":
                c.send(value)
                continue
            for expected in split_replies(value):
                n += 1
                try:
                    got = c.reply()
                except h.ConnectionClosed as e:
                    raise AssertionError("%s: reply %d: the connection closed; expected %r (%s)"
                                         % (t.name, n, expected, e))
                compare(expected, got, "%s reply %d" % (t.name, n))
        if t.closes:
            rest = c.wait_closed(10)
            check(rest == b"", "%s: bytes after the last expected reply: %r" % (t.name, rest))
        else:
            check(c.still_open(0.5), "%s: the connection closed or sent more: %r" % (t.name, c.buf))
            c.expect("QUIT", 221)
        c.close()
        return d.mailboxes()


def _case(path):
    def case():
        replay(Transcript(path))
    case.__name__ = os.path.basename(path)
    return case


if __name__ == "__main__":
    files = sorted(glob.glob(os.path.join(h.TRANSCRIPT_DIR, "*.smtp")))
    if not files:
        print("FAIL: no transcripts in %s" % h.TRANSCRIPT_DIR)
        sys.exit(1)
    h.main([_case(p) for p in files])
