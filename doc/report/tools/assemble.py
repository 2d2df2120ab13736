#!/usr/bin/python3
"""assemble.py GENERATED_DIR OUT.md CHAPTER.md... -- the report's Markdown in one file.

Pandoc has no include directive, so the chapters say where generated text goes:

  <!-- include: NAME -->   on a line of its own: replaced by GENERATED_DIR/NAME
  {{key}}                 anywhere: replaced by the value of `key` in
                          GENERATED_DIR/values.tsv (lines "key<TAB>value"),
                          written by the scripts that measured it

Everything fails loudly: a missing fragment, an unknown key, a key defined twice,
and any text that reads like a placeholder left in the result (TODO, TBD, FIXME,
XXX, "??", an unreplaced {{...}} or include line). The report must say only what
was measured or read from the code.
"""
import os
import re
import sys

INCLUDE = re.compile(r"^<!--\s*include:\s*(\S+)\s*-->\s*$")
KEY = re.compile(r"\{\{([A-Za-z0-9_.-]+)\}\}")
PLACEHOLDER = re.compile(r"\b(TODO|TBD|FIXME|XXX)\b|\?\?|\{\{|<!--\s*include")


def fail(msg):
    sys.exit("assemble.py: " + msg)


def load_values(gen):
    path = os.path.join(gen, "values.tsv")
    values = {}
    if not os.path.exists(path):
        return values
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            key, sep, value = line.partition("\t")
            if not sep:
                fail("%s:%d: no TAB" % (path, n))
            if key in values and values[key] != value:
                fail("%s:%d: %s defined twice (%r, %r)" % (path, n, key, values[key], value))
            values[key] = value
    return values


def expand(path, gen, values, depth=0):
    if depth > 3:
        fail("includes nested too deep at " + path)
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if m:
                frag = os.path.join(gen, m.group(1))
                if not os.path.isfile(frag):
                    fail("%s:%d: generated fragment %s is missing" % (path, n, frag))
                out.append(expand(frag, gen, values, depth + 1).rstrip("\n") + "\n")
                continue

            def value(m, where="%s:%d" % (path, n)):
                if m.group(1) not in values:
                    fail("%s: no value for {{%s}}" % (where, m.group(1)))
                return values[m.group(1)]

            out.append(KEY.sub(value, line))
    return "".join(out)


def main(argv):
    if len(argv) < 4:
        fail("usage: assemble.py GENERATED_DIR OUT.md CHAPTER.md...")
    gen, out_path, chapters = argv[1], argv[2], argv[3:]
    values = load_values(gen)
    text = "\n".join(expand(c, gen, values) for c in chapters)
    for n, line in enumerate(text.splitlines(), 1):
        # Code blocks may quote "??" (e.g. a shell pattern); none of ours do.
        if PLACEHOLDER.search(line):
            fail("line %d of the assembled report looks like a placeholder: %s" % (n, line.strip()))
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main(sys.argv)
