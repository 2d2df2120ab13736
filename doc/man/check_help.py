#!/usr/bin/env python3
"""Fails when a daemon's --help and its manual pages disagree on its options.

Usage: check_help.py PROGRAM PAGE...

PROGRAM is the built daemon (smtpd, smtpc); each PAGE is one of its pages, told apart
by the section in its .TH line:
  - section 8: the options tagged in OPTIONS (.TP entries) are exactly those --help
    prints, short and long;
  - section 5: every setting's option that --help prints (all but --help, --config and
    --check-config) appears in SETTINGS;
  - any page: every long option written anywhere in it (prose, examples, the example
    file) is one --help prints, so that no page tells of an option that does not exist.
    Short options in prose are not checked: they are as often another program's
    (kill -HUP, pgrep -o).
Exit status 0 when they agree, 1 with each difference on stdout, 2 on bad usage.
"""

import re
import subprocess
import sys

# The options config::load() adds to every daemon besides its settings.
BUILT_IN = {"-h", "--help", "-c", "--config", "--check-config"}
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z0-9][A-Za-z0-9-]*)")
LONG_OPTION = re.compile(r"(?<![\w-])(--[A-Za-z0-9][A-Za-z0-9-]*)")


def help_options(program):
    """The options in PROGRAM --help: the first word of each option line, split at ','."""
    run = subprocess.run([program, "--help"], capture_output=True, text=True, check=False)
    if run.returncode != 0:
        sys.exit("check_help: %s --help: exit status %d: %s" % (program, run.returncode, run.stderr))
    options = set()
    for line in run.stdout.splitlines():
        # "  -c,--config FILE  ...", "  --rdns,--no-rdns{false}=true"; descriptions
        # continued on their own line are indented further and never start with '-'.
        match = re.match(r"  (-\S+)", line)
        if not match:
            continue
        for part in match.group(1).split(","):
            name = re.match(r"--?[A-Za-z0-9][A-Za-z0-9-]*", part)
            if name:
                options.add(name.group(0))
    if not options:
        sys.exit("check_help: %s --help lists no options" % program)
    return options


def plain(line):
    """A roff line as text: font and spacing escapes gone, \\- and \\e as typed."""
    line = re.sub(r"\\f(\[[^]]*\]|\(..|.)", "", line)
    line = line.replace("\\%", "").replace("\\&", "").replace("\\|", "").replace("\\c", "")
    return line.replace("\\-", "-").replace("\\e", "\\")


def read_page(path):
    """(section, {SECTION NAME: [plain lines]}, [(line number, plain line)])."""
    section, sections, lines = None, {}, []
    current = None
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            raw = raw.rstrip("\n")
            if raw.startswith('.\\"') or raw.startswith("'\\\""):
                continue
            if raw.startswith(".TH "):
                fields = raw.split()
                section = fields[2] if len(fields) > 2 else None
            if raw.startswith(".SH "):
                current = raw[4:].strip().strip('"')
                sections[current] = []
                continue
            text = plain(raw)
            lines.append((number, text))
            if current is not None:
                sections[current].append(raw)
    return section, sections, lines


def tagged_options(raw_lines):
    """The options in the tags of the .TP entries of a section."""
    options = set()
    for i, line in enumerate(raw_lines[:-1]):
        if line.strip() == ".TP":
            options.update(OPTION.findall(plain(raw_lines[i + 1])))
    return options


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    program, pages = argv[1], argv[2:]
    name = program.rsplit("/", 1)[-1]
    known = help_options(program)
    failures = []
    for page in pages:
        section, sections, lines = read_page(page)
        label = page.rsplit("/", 1)[-1]
        for number, text in lines:
            for option in LONG_OPTION.findall(text):
                if option not in known:
                    failures.append("%s:%d: %s, which %s --help does not list" % (label, number, option, name))
        if section == "8":
            if "OPTIONS" not in sections:
                failures.append("%s: no OPTIONS section" % label)
                continue
            listed = tagged_options(sections["OPTIONS"])
            for option in sorted(known - listed):
                failures.append("%s --help lists %s; %s OPTIONS does not" % (name, option, label))
            for option in sorted(listed - known):
                failures.append("%s OPTIONS lists %s; %s --help does not" % (label, option, name))
        elif section == "5":
            if "SETTINGS" not in sections:
                failures.append("%s: no SETTINGS section" % label)
                continue
            text = " ".join(plain(line) for line in sections["SETTINGS"])
            listed = set(LONG_OPTION.findall(text))
            for option in sorted(known - BUILT_IN - listed):
                if option.startswith("--"):
                    failures.append("%s --help lists %s; %s SETTINGS does not" % (name, option, label))
        else:
            failures.append("%s: section %r, not 5 or 8" % (label, section))
    for failure in failures:
        print("FAIL: " + failure)
    if failures:
        return 1
    print("PASS: %s --help and %s list the same options" % (name, ", ".join(p.rsplit("/", 1)[-1] for p in pages)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
