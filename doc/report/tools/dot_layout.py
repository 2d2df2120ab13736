#!/usr/bin/python3
"""dot_layout.py IN.dot OUT.dot -- layout only, for the printed page.

A generated state diagram is drawn left to right with 10-point labels, for the
screen; on an A4 page it would be scaled down until it could not be read. Here it
is drawn top to bottom (narrower) with larger fonts, and the inputs that keep a
state (its self-loops, which graphviz draws on top of neighbouring edges) are
listed inside that state's box instead, under its name. The states, the
transitions and every label text stay as the generator wrote them.
"""
import html
import re
import sys
from collections import OrderedDict


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: dot_layout.py IN.dot OUT.dot")
    with open(argv[1], encoding="utf-8") as f:
        text = f.read()
    if "->" not in text:
        sys.exit("dot_layout.py: %s has no edges" % argv[1])

    loops = OrderedDict()

    def take_loop(m):
        loops.setdefault(m.group(2), []).append(m.group(3))
        return ""

    text = re.sub(r'^\s*((\w+) -> \2 \[label="([^"]*)"\];)\n', take_loop, text, flags=re.M)
    nodes = []
    for name, labels in loops.items():
        items = ", ".join(labels).split(", ")
        lines = [", ".join(items[i:i + 3]) for i in range(0, len(items), 3)]
        nodes.append('    %s [label=<%s<br/><font point-size="12">stays: %s</font>>];' % (
            name, html.escape(name), "<br/>".join(html.escape(l) for l in lines)))

    text = re.sub(r"rankdir\s*=\s*LR", "rankdir=TB", text)
    text = re.sub(r"(edge \[[^\]]*?)fontsize=\d+", r"\1fontsize=14", text)
    text = re.sub(r"(node \[[^\]]*?)fontsize=\d+", r"\1fontsize=16", text)
    text, n = re.subn(r"^(\s*(?:strict\s+)?digraph\s+\w*\s*\{)",
                      lambda m: m.group(1) + "\n    node [fontsize=16];\n    edge [fontsize=14];", text,
                      count=1, flags=re.M)
    if n != 1:
        sys.exit("dot_layout.py: no 'digraph NAME {' line in %s" % argv[1])
    # The states' own labels after the graph's default node attributes.
    close = text.rstrip().rfind("}")
    text = text[:close] + "\n".join(nodes) + ("\n" if nodes else "") + text[close:]
    with open(argv[2], "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main(sys.argv)
