#!/usr/bin/python3
"""settings_table.py DAEMON SETTINGS.md OUT.md VALUES.tsv -- a daemon's settings
reference, as printed by build/doc/settings_reference (from the code's own table
of settings), reshaped to fit a printed page.

The generated table has five columns (Setting, Command line, Type, Default,
Description); in a PDF its long cells would overflow. The command line is always
the key with '_' turned into '-' behind "--" (booleans also have --no-KEY, lists
are given by repeating the option): this script checks that rule on every row and
then leaves that column out, so the printed table has four columns with set
relative widths, in a smaller font. A row that broke the rule would keep its
option in the key cell. Defaults that are not literal values ("this machine's
host name") are set in italics instead of code.

Fails loudly on anything unexpected: no table, a header that changed, an empty
cell.
"""
import re
import sys

HEADER = ["Setting", "Command line", "Type", "Default", "Description"]


def fail(msg):
    sys.exit("settings_table.py: " + msg)


def cells(line):
    # Split a pipe-table row; "\|" inside a cell is an escaped bar (debug\|info).
    parts = re.split(r"(?<!\\)\|", line.strip())
    if parts[0] != "" or parts[-1] != "":
        fail("not a table row: " + line)
    return [p.strip() for p in parts[1:-1]]


def code(cell):
    m = re.fullmatch(r"`([^`]*)`", cell)
    return m.group(1) if m else None


def expected_option(key, type_):
    opt = "`--%s`" % key.replace("_", "-")
    if type_ == "boolean":
        return "%s, `--no-%s`" % (opt, key.replace("_", "-"))
    if type_.startswith("list of"):
        return opt + " (repeatable)"
    return opt


def text(cell):
    """Escapes '<' outside code spans (pandoc would take <mail_root> for HTML and drop
    it) and lets long paths break."""
    parts = re.split(r"(`[^`]*`)", cell)
    out = []
    for p in parts:
        if not p.startswith("`"):
            # A long word with slashes (a path pattern) may break after each slash.
            p = " ".join(w.replace("/", "/\u200b") if len(w) > 20 else w for w in p.split(" "))
            p = p.replace("<", "\\<")
        out.append(p)
    return "".join(out)


def literal(value):
    return bool(re.match(r'^(["\[\d-]|true$|false$)', value))


def main(argv):
    if len(argv) != 5:
        fail("usage: settings_table.py DAEMON SETTINGS.md OUT.md VALUES.tsv")
    daemon, src, out, values_path = argv[1:]
    rows = []
    header_seen = False
    with open(src, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("|"):
                continue
            c = cells(line)
            if not header_seen:
                if c != HEADER:
                    fail("%s: unexpected header %r" % (src, c))
                header_seen = True
                continue
            if set("".join(c)) <= set("-:"):
                continue
            if len(c) != 5 or not all(c):
                fail("%s: bad row %r" % (src, line))
            rows.append(c)
    if not rows:
        fail("%s: no settings found" % src)

    lines = [
        "\\begingroup\\small",
        "",
        # Relative widths come from the dashes of the separator line (pandoc, when
        # a row is longer than --columns): 27/19/20/34 %.
        "| Key | Type | Default | Description |",
        "|" + "-" * 27 + "|" + "-" * 19 + "|" + "-" * 20 + "|" + "-" * 34 + "|",
    ]
    irregular = 0
    defaults = []
    for setting, option, type_, default, desc in rows:
        key = code(setting)
        if key is None:
            fail("%s: setting %r is not a code span" % (src, setting))
        key_cell = setting
        if option != expected_option(key, type_):
            key_cell = "%s (%s)" % (setting, option)
            irregular += 1
        d = code(default)
        if d is None:
            fail("%s: default %r of %s is not a code span" % (src, default, key))
        defaults.append((key, d))
        if not literal(d):
            default_cell = "*%s*" % d
        elif " " not in d and len(d) > 12 and re.fullmatch(r'[^{}%#\\]*', d):
            # \nolinkurl: typewriter like a code span, but may break after / and .
            default_cell = "\\texttt{\\nolinkurl{%s}}" % d
        else:
            default_cell = default
        # "1024..1099511627776" may break after the dots
        lines.append("| %s | %s | %s | %s |" % (key_cell, text(type_).replace("\\|", " \\| ").replace("..", "..\u200b"),
                                              default_cell, text(desc)))
    lines += ["", "Table: %s settings, from the table in `apps/%s/settings.cpp` "
              "(%d settings)." % (daemon, daemon, len(rows)), "", "\\endgroup", ""]
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    with open(values_path, "a", encoding="utf-8") as f:
        f.write("%s_settings\t%d\n" % (daemon, len(rows)))
        f.write("%s_irregular_options\t%d\n" % (daemon, irregular))
        for key, d in defaults:  # {{smtpc.default.retry_min}} in the chapters
            f.write("%s.default.%s\t%s\n" % (daemon, key, d))


if __name__ == "__main__":
    main(sys.argv)
