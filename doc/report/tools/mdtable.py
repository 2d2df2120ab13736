"""mdtable.py: pipe tables for pandoc's LaTeX output that fit the page, and the
files the tools write them and their values to (put_values, write).

Pandoc sets a pipe table's column widths from the dashes of its separator line
when any line of the table is longer than --columns (72): then the table takes the
text width and cells wrap. The separator made here is always that long, so every
table gets the relative widths given, in a smaller font.
"""
import os


def table(header, rows, widths, aligns, caption, size="small"):
    """header: cell texts; rows: lists of cell texts; widths: relative widths
    (percent); aligns: 'l' or 'r' per column; caption: the table's caption."""
    if not (len(header) == len(widths) == len(aligns)):
        raise ValueError("header, widths and aligns differ in length")
    for r in rows:
        if len(r) != len(header):
            raise ValueError("row %r has %d cells, not %d" % (r, len(r), len(header)))
    sep = "|"
    for w, a in zip(widths, aligns):
        n = max(3, int(round(w)))
        sep += ("-" * (n - 1) + ":" if a == "r" else "-" * n) + "|"
    lines = ["\\begingroup\\%s" % size, "",
             "| " + " | ".join(header) + " |", sep]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    lines += ["", "Table: " + caption, "", "\\endgroup", ""]
    return lines


def put_values(gen, **values):
    """Appends KEY<TAB>VALUE lines to GEN/values.tsv (the {{key}}s of assemble.py)."""
    with open(os.path.join(gen, "values.tsv"), "a", encoding="utf-8") as f:
        for k, v in values.items():
            f.write("%s\t%s\n" % (k, v))


def write(gen, name, lines):
    """Writes a fragment (an <!-- include: NAME --> of assemble.py) to GEN/NAME."""
    with open(os.path.join(gen, name), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
