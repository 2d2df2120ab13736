#!/usr/bin/python3
"""struct_table.py HEADER STRUCT PREFIX OUT.md VALUES.tsv [CAPTION] -- a table of the
numeric fields of one C++ struct, read from the header that defines it: each
field's name, its default (the member initializer) and the comment above or
beside it (which cites the RFC section, as DESIGN.md asks). So the report's
limits are the code's, not a copy.

Reads fields of the form `TYPE NAME = NUMBER;` (digit separators allowed, and
products such as 64 * 1024) directly inside `struct STRUCT { ... };`. Each value
is also written to VALUES.tsv as PREFIX.NAME (the number as written in the code,
without digit separators). Fails when the struct or any such field is missing.
"""
import re
import sys

from mdtable import table


def fail(msg):
    sys.exit("struct_table.py: " + msg)


FIELD = re.compile(r"^\s*(?:std::)?[A-Za-z_][\w:]*\s+(\w+)\s*=\s*([0-9' *]+);\s*(?://+<?\s*(.*))?$")


def fields(path, struct):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^struct %s \{\n(.*?)^\};" % re.escape(struct), text, re.S | re.M)
    if not m:
        fail("%s: no struct %s" % (path, struct))
    out = []
    comment = []
    depth = 0
    for line in m.group(1).splitlines():
        s = line.strip()
        if not s.startswith("//"):
            depth += s.count("{") - s.count("}")
        if depth > 0:
            continue
        if s.startswith("//"):
            c = re.sub(r"^/+<?\s?", "", s)
            if not c.startswith("@"):  # Doxygen grouping (@name, @{, @}) is no explanation
                comment.append(c)
            continue
        fm = FIELD.match(line)
        if fm:
            name, value, tail = fm.group(1), fm.group(2).replace("'", "").strip(), fm.group(3)
            text_ = " ".join(comment + ([tail] if tail else [])).strip()
            out.append((name, value, text_))
        comment = []
    if not out:
        fail("%s: struct %s has no numeric fields" % (path, struct))
    return out


def evaluate(value):
    if not re.fullmatch(r"[0-9 *]+", value):
        fail("not a number: %r" % value)
    n = 1
    for part in value.split("*"):
        n *= int(part)
    return n


def main(argv):
    if len(argv) not in (6, 7):
        fail("usage: struct_table.py HEADER STRUCT PREFIX OUT.md VALUES.tsv [CAPTION]")
    header, struct, prefix, out, values = argv[1:6]
    caption = argv[6] if len(argv) == 7 else "`%s` (`%s`)" % (struct, header)
    rows = []
    with open(values, "a", encoding="utf-8") as v:
        for name, value, text in fields(header, struct):
            n = evaluate(value)
            v.write("%s.%s\t%d\n" % (prefix, name, n))
            text = text.replace("|", "/").replace("<", "\\<") or "-"
            rows.append(["`%s`" % name, "{:,}".format(n).replace(",", "\u2009"), text])
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(table(["field", "default", "why (the comment in the code)"], rows, [27, 12, 61],
                                "lrl", caption + ".")))


if __name__ == "__main__":
    main(sys.argv)
