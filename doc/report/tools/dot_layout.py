#!/usr/bin/python3
"""dot_layout.py IN.dot OUT.dot -- layout only, for the printed page.

A generated state diagram is drawn left to right with 10-point labels, for the
screen; on an A4 page it would be scaled down until it could not be read. Here it
is drawn top to bottom (narrower) with larger fonts, and the inputs that keep a
state (its self-loops, which graphviz draws on top of neighbouring edges) are
listed inside that state's box instead, under its name. An edge label of one
line longer than WRAP characters is broken in two at the space nearest its middle
(after a ':' or ',' when there is one), because top to bottom the labels sit side
by side and their length sets the drawing's width. A label of several lines
(one per cause) is left as it is, so that each line stays one cause. The states, the transitions
and every label's words stay as the generator wrote them.
"""
import html
import re
import sys
from collections import OrderedDict

WRAP = 20


def wrap_line(line):
    """The line, or its two halves joined by a dot line break."""
    if len(line) <= WRAP:
        return line
    spaces = [i for i, c in enumerate(line) if c == " "]
    if not spaces:
        return line
    punctuated = [i for i in spaces if line[i - 1] in ":,"]
    at = min(punctuated or spaces, key=lambda i: abs(i - len(line) / 2))
    return line[:at] + "\\n" + line[at + 1:]


def wrap_label(m):
    label = m.group(1)
    return 'label="%s"' % (label if "\\n" in label else wrap_line(label))


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

    text = re.sub(r'label="([^"<]*)"', wrap_label, text)
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
