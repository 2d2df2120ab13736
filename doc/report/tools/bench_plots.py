#!/usr/bin/python3
"""bench_plots.py DATA_DIR FIG_DIR GEN_DIR -- the performance chapter's plots, tables
and run descriptions, from the benchmark results committed in DATA_DIR.

Data files (each results file with the env file of the same run):
  inbound-results.tsv, inbound-env.txt
      ../shared/bench/run-all.sh via bench/inbound.sh: one row per server, cell
      (message size, concurrent sessions) and round; column accept_msg_s
  relay-postfix-results.tsv, relay-postfix-env.txt
      ../shared/bench/run-relay.sh with --sut postfix --sut bench/relay.sut: one
      row per SUT, cell (mode, domains, messages) and round; columns msg_s,
      sink_conns
  relay-tls-results.tsv, relay-tls-env.txt
      bench/relay.sh: columns round variant messages seconds msg_s delivered left
      status; the env file holds at least a "date_utc:" line

Any number of rounds: a cell's figure is the median over its rounds, with the
min..max range drawn as an error bar. Writes FIG_DIR/{inbound,relay,relay-tls}.pdf,
GEN_DIR/bench-*.md and values in GEN_DIR/values.tsv. A missing file, column or
cell is an error.
"""
import csv
import os
import re
import statistics
import sys
from collections import OrderedDict

import matplotlib
from mdtable import put_values, table, write

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({"font.size": 8, "font.family": "DejaVu Sans", "axes.titlesize": 9,
                     "legend.fontsize": 7.5, "pdf.fonttype": 42})


def fail(msg):
    sys.exit("bench_plots.py: " + msg)


def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def read_tsv(path, needed):
    if not os.path.isfile(path):
        fail("missing data file %s" % path)
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t")]
    if not rows:
        fail("%s has no rows" % path)
    missing = [c for c in needed if c not in rows[0]]
    if missing:
        fail("%s lacks columns %s" % (path, ", ".join(missing)))
    return rows


def read_env(path):
    """The "key: value" lines of an env.txt (keys of at most six words), and the
    fsync probe's median with fsync as key "fsync-probe"."""
    if not os.path.isfile(path):
        fail("missing data file %s" % path)
    env = OrderedDict()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            m = re.match(r"fsync-probe fsync: .*?(median [0-9.]+ ms)", line)
            if m:  # the probe's line with fsync: what one durable file costs on this disk
                env.setdefault("fsync-probe", "create, write, fsync and rename of a 4 KiB file: " + m.group(1))
                continue
            if line.startswith("fsync-probe"):
                continue
            k, sep, v = line.partition(": ")
            if sep and len(k.split()) <= 6:
                env.setdefault(k.strip(), v.strip())
    if "date_utc" not in env:
        fail("%s has no date_utc line" % path)
    return env


def med_range(values):
    v = [x for x in values if x is not None]
    if not v:
        return None, None, None
    return statistics.median(v), min(v), max(v)


def fmt(x, nd=0):
    return "-" if x is None else "%.*f" % (nd, x)


def size_name(b):
    return "%d KiB" % (b // 1024) if b % 1024 == 0 else "%d B" % b


# ---------------------------------------------------------------- inbound

INBOUND_ORDER = ["smtp-sink", "postfix", "postfix-v6", "aiosmtpd", "aiosmtpd-nofsync"]
INBOUND_NAMES = {"smtp-sink": "smtp-sink", "postfix": "Postfix", "postfix-v6": "Postfix [::1]",
                 "aiosmtpd": "aiosmtpd", "aiosmtpd-nofsync": "aiosmtpd no fsync"}
COLORS = {"smtp-sink": "#b0b0b0", "postfix": "#4c72b0", "postfix-v6": "#8fa8d6", "aiosmtpd": "#dd8452",
          "aiosmtpd-nofsync": "#f2c09b", "postfix-permcache": "#8fa8d6", "none": "#4c72b0",
          "encrypt": "#c44e52"}
SMTPD_COLORS = ["#55a868", "#8fd19e", "#2d6e3e", "#b5e3c0"]


def server_name(label):
    if label in INBOUND_NAMES:
        return INBOUND_NAMES[label]
    m = re.fullmatch(r"smtpd-w(\d+)", label)
    return "smtpd (%s workers)" % m.group(1) if m else label


def order_labels(labels, known):
    first = [l for l in known if l in labels]
    rest = sorted(l for l in labels if l not in known)
    return first + rest


def color_for(label, others):
    if label in COLORS:
        return COLORS[label]
    return SMTPD_COLORS[others.index(label) % len(SMTPD_COLORS)]


def grouped_bars(ax, groups, labels, stats, names, colors):
    """groups: x tick labels; stats[(group, label)] = (median, lo, hi)."""
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        xs, ys, lo, hi = [], [], [], []
        for g, group in enumerate(groups):
            m, a, b = stats.get((group, label), (None, None, None))
            if m is None:
                continue
            xs.append(g - 0.4 + width * (i + 0.5))
            ys.append(m)
            lo.append(m - a)
            hi.append(b - m)
        ax.bar(xs, ys, width * 0.92, label=names[label], color=colors[label],
               yerr=[lo, hi] if any(lo) or any(hi) else None, capsize=1.5, error_kw={"lw": 0.6})
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups)
    ax.grid(axis="y", lw=0.3, alpha=0.6)
    ax.set_axisbelow(True)


def inbound(data, fig, gen):
    rows = read_tsv(os.path.join(data, "inbound-results.tsv"),
                    ["label", "sessions", "size", "messages", "accept_msg_s", "delivered", "status"])
    env = read_env(os.path.join(data, "inbound-env.txt"))
    cells = OrderedDict()
    for r in rows:
        if r["label"] in ("", "label"):
            continue
        key = (int(r["size"]), int(r["sessions"]), r["label"])
        cells.setdefault(key, []).append(r)
    labels = order_labels({k[2] for k in cells}, INBOUND_ORDER)
    smtpds = [l for l in labels if l.startswith("smtpd")]
    if not smtpds or "postfix" not in labels or "smtp-sink" not in labels:
        fail("inbound-results.tsv needs smtp-sink, postfix and smtpd rows (has %s)" % ", ".join(labels))
    sizes = sorted({k[0] for k in cells})
    sessions = sorted({k[1] for k in cells})
    stats = {}
    for (size, ses, label), rs in cells.items():
        stats[(size, ses, label)] = med_range([num(r["accept_msg_s"]) for r in rs])
    rounds = max(len(rs) for rs in cells.values())
    messages = sorted({int(r["messages"]) for rs in cells.values() for r in rs})
    not_ok = [(k, r["status"]) for k, rs in cells.items() for r in rs if r["status"] != "OK"]

    names = {l: server_name(l) for l in labels}
    colors = {l: color_for(l, smtpds) for l in labels}
    f, axes = plt.subplots(1, len(sizes), figsize=(6.5, 2.9), sharey=False)
    if len(sizes) == 1:
        axes = [axes]
    for ax, size in zip(axes, sizes):
        st = {(str(ses), l): stats[(size, ses, l)] for ses in sessions for l in labels if (size, ses, l) in stats}
        grouped_bars(ax, [str(s) for s in sessions], labels, st, names, colors)
        ax.set_title("%s messages" % size_name(size))
        ax.set_xlabel("concurrent smtp-source sessions")
    axes[0].set_ylabel("accepted messages/s (median)")
    handles, leg = axes[0].get_legend_handles_labels()
    f.legend(handles, leg, loc="lower center", ncol=min(len(labels), 4), frameon=False)
    f.tight_layout(rect=(0, 0.13 if len(labels) <= 4 else 0.2, 1, 1))
    f.savefig(os.path.join(fig, "inbound.pdf"))
    plt.close(f)

    short = {"smtp-sink": "sink", "postfix": "Postfix", "postfix-v6": "Postfix [::1]", "aiosmtpd": "aiosmtpd",
             "aiosmtpd-nofsync": "aiosmtpd no fsync"}
    header = ["size", "sessions"] + [short.get(l, names[l]) for l in labels] + ["%s / Postfix" % short.get(
        smtpds[0], names[smtpds[0]])]
    rows = []
    ratios = []
    for size in sizes:
        for ses in sessions:
            vals = [stats.get((size, ses, l), (None,))[0] for l in labels]
            p = stats.get((size, ses, "postfix"), (None,))[0]
            s = stats.get((size, ses, smtpds[0]), (None,))[0]
            ratio = s / p if (s and p) else None
            if ratio:
                ratios.append(ratio)
            rows.append([size_name(size), ses] + [fmt(v) for v in vals] + ["%.1f x" % ratio if ratio else "-"])
    n = len(labels) + 1
    lines = table(header, rows, [10, 9] + [81.0 / n] * n, "lr" + "r" * n,
                  "Inbound, accepted messages per second, median of %d round%s; %s." % (
                      rounds, "" if rounds == 1 else "s",
                      "every cell delivered every message (status OK)" if not not_ok else
                      "cells not OK: " + ", ".join("%s/%s/%s %s" % (k[0], k[1], k[2], s) for k, s in not_ok)))
    write(gen, "bench-inbound.md", lines)
    faster = sum(1 for r in ratios if r > 1)
    if faster == len(ratios):
        verdict = "accepted more messages per second than Postfix in every cell, %.1f to %.1f times as many" % (
            min(ratios), max(ratios))
    elif faster == 0:
        verdict = "accepted fewer messages per second than Postfix in every cell, %.1f to %.1f times as many" % (
            min(ratios), max(ratios))
    else:
        verdict = "was faster than Postfix in %d of %d cells; its rate ranged from %.1f to %.1f times Postfix's" % (
            faster, len(ratios), min(ratios), max(ratios))
    put_values(gen, inbound_verdict=verdict)
    put_values(gen, inbound_rounds=rounds, inbound_messages="/".join(str(m) for m in messages),
               inbound_smtpd_label=names[smtpds[0]],
               inbound_ratio_min="%.1f" % min(ratios), inbound_ratio_max="%.1f" % max(ratios),
               inbound_not_ok=len(not_ok))
    return env, rounds, messages


# ---------------------------------------------------------------- relay (Postfix)

RELAY_ORDER = ["postfix", "postfix-permcache"]
RELAY_NAMES = {"postfix": "Postfix", "postfix-permcache": "Postfix, permanent cache",
               "smtpd-smtpc": "smtpd + smtpc"}


def relay(data, fig, gen):
    rows = read_tsv(os.path.join(data, "relay-postfix-results.tsv"),
                    ["round", "label", "mode", "domains", "messages", "msg_s", "window_s", "sink_at_s", "sink_conns",
                     "delivered", "status"])
    env = read_env(os.path.join(data, "relay-postfix-env.txt"))
    cells = OrderedDict()
    for r in rows:
        if r["label"] in ("", "label"):
            continue
        key = (r["mode"], int(r["domains"]), int(r["messages"]), r["label"])
        cells.setdefault(key, []).append(r)
    labels = order_labels({k[3] for k in cells}, RELAY_ORDER)
    if "postfix" not in labels or "smtpd-smtpc" not in labels:
        fail("relay-postfix-results.tsv needs postfix and smtpd-smtpc rows (has %s)" % ", ".join(labels))
    groups = sorted({k[:3] for k in cells}, key=lambda g: (g[0] != "drain", g[1], g[2]))
    stats, conns = {}, {}
    for key, rs in cells.items():
        stats[key] = med_range([num(r["msg_s"]) for r in rs])
        conns[key] = med_range([num(r["sink_conns"]) for r in rs])
    rounds = max(len(rs) for rs in cells.values())
    not_ok = [(k, r["status"]) for k, rs in cells.items() for r in rs if r["status"] != "OK"]

    names = {l: RELAY_NAMES.get(l, l) for l in labels}
    colors = {l: COLORS.get(l, SMTPD_COLORS[0]) for l in labels}
    gname = ["%s\n%d dom., %d msgs" % g for g in groups]
    st = {(gname[i], l): stats[g + (l,)] for i, g in enumerate(groups) for l in labels if g + (l,) in stats}
    f, ax = plt.subplots(figsize=(6.5, 2.8))
    grouped_bars(ax, gname, labels, st, names, colors)
    ax.set_ylabel("messages/s to the sink (median)")
    ax.legend(loc="upper right", frameon=False)
    f.tight_layout()
    f.savefig(os.path.join(fig, "relay.pdf"))
    plt.close(f)

    header = ["mode", "domains", "messages"] + ["%s msg/s" % names[l] for l in labels] + \
             ["%s conns" % names[l] for l in labels]
    rows = [[g[0], g[1], g[2]] + [fmt(stats.get(g + (l,), (None,))[0]) for l in labels] +
            [fmt(conns.get(g + (l,), (None,))[0]) for l in labels] for g in groups]
    n = 2 * len(labels)
    lines = table(header, rows, [9, 10, 11] + [70.0 / n] * n, "lrr" + "r" * n,
                  "Relay to smtp-sink: messages per second, and the SMTP connections the sink saw; "
                  "median of %d round%s; %s." % (
                      rounds, "" if rounds == 1 else "s",
                      "every cell delivered every message (status OK)" if not not_ok else
                      "cells not OK: " + ", ".join("%s %d/%d %s: %s" % (k + (s,)) for k, s in not_ok)))
    write(gen, "bench-relay.md", lines)
    drain = [g for g in groups if g[0] == "drain"]
    ratios = [stats[g + ("smtpd-smtpc",)][0] / stats[g + ("postfix",)][0] for g in groups
              if stats.get(g + ("smtpd-smtpc",), (None,))[0] and stats.get(g + ("postfix",), (None,))[0]]
    if not ratios:
        fail("relay-postfix-results.tsv: no cell has figures for both postfix and smtpd-smtpc")
    ratio = "%.2f" % min(ratios) if "%.2f" % min(ratios) == "%.2f" % max(ratios) else \
        "between %.2f and %.2f" % (min(ratios), max(ratios))
    # How the window of smtpc's drain splits: until the sink has every message, and after.
    first = next((g for g in drain if g + ("smtpd-smtpc",) in cells), None)
    if first is None:
        fail("relay-postfix-results.tsv: no drain cell for smtpd-smtpc")
    ours = cells[first + ("smtpd-smtpc",)]
    put_values(gen, relay_rounds=rounds, relay_not_ok=len(not_ok), relay_ratio=ratio,
               relay_smtpc_sink_at="%.2f" % med_range([num(r["sink_at_s"]) for r in ours])[0],
               relay_smtpc_window="%.2f" % med_range([num(r["window_s"]) for r in ours])[0],
               relay_smtpc_cell="%s, %d domain(s), %d messages" % first,
               relay_messages="/".join(str(m) for m in sorted({g[2] for g in groups})),
               relay_smtpc_conns_max=fmt(max((conns[g + ("smtpd-smtpc",)][0] for g in groups
                                              if g + ("smtpd-smtpc",) in conns), default=None)),
               relay_postfix_conns_max=fmt(max((conns[g + ("postfix",)][0] for g in groups
                                                if g + ("postfix",) in conns), default=None)),
               relay_drain_cells=len(drain))
    return env, rounds


# ---------------------------------------------------------------- relay with TLS

def relay_tls(data, fig, gen):
    rows = read_tsv(os.path.join(data, "relay-tls-results.tsv"),
                    ["round", "variant", "messages", "seconds", "msg_s", "delivered", "left", "status"])
    env = read_env(os.path.join(data, "relay-tls-env.txt"))
    by = OrderedDict()
    for r in rows:
        by.setdefault(r["variant"], []).append(r)
    if set(by) != {"none", "encrypt"}:
        fail("relay-tls-results.tsv needs the variants none and encrypt (has %s)" % ", ".join(by))
    variants = ["none", "encrypt"]
    names = {"none": "plaintext\n(--tls-level none)", "encrypt": "STARTTLS\n(--tls-level encrypt)"}
    stats = {v: med_range([num(r["msg_s"]) for r in by[v]]) for v in variants}
    f, ax = plt.subplots(figsize=(3.6, 2.5))
    for i, v in enumerate(variants):
        m, a, b = stats[v]
        ax.bar([i], [m], 0.55, color=COLORS[v], yerr=[[m - a], [b - m]] if b > a else None, capsize=3,
               error_kw={"lw": 0.7})
        ax.text(i, m / 2, "%.0f" % m, ha="center", va="center", color="white", fontsize=8)
    ax.set_xticks(range(len(variants)))
    ax.set_xticklabels([names[v] for v in variants])
    ax.set_ylabel("messages/s (median)")
    ax.grid(axis="y", lw=0.3, alpha=0.6)
    ax.set_axisbelow(True)
    f.tight_layout()
    f.savefig(os.path.join(fig, "relay-tls.pdf"))
    plt.close(f)

    trows = []
    for v in variants:
        rs = by[v]
        m, a, b = stats[v]
        sent = sum(int(r["messages"]) for r in rs)
        dl = sum(int(r["delivered"]) for r in rs)
        trows.append(["`%s`" % v, len(rs), "/".join(sorted({r["messages"] for r in rs})), "%.1f" % m,
                     "%.0f..%.0f" % (a, b), "%d / %d" % (dl, sent), ", ".join(sorted({r["status"] for r in rs}))])
    cost = 100.0 * (1 - stats["encrypt"][0] / stats["none"][0])
    lines = table(["`--tls-level`", "rounds", "messages", "median msg/s", "min..max", "delivered / sent",
                   "status"], trows, [16, 10, 12, 16, 14, 18, 14], "lrrrrrl",
                  "smtpc draining a queue to an smtpd, plaintext and STARTTLS (`bench/relay.sh`).")
    write(gen, "bench-relay-tls.md", lines)
    put_values(gen, tls_rounds=max(len(r) for r in by.values()),
               tls_messages="/".join(sorted({r["messages"] for r in rows})),
               tls_none=fmt(stats["none"][0]), tls_encrypt=fmt(stats["encrypt"][0]),
               tls_comparison=tls_comparison(cost, stats["none"], stats["encrypt"]),
               tls_not_ok=sum(1 for r in rows if r["status"] != "OK"))
    return env


def tls_comparison(cost, none, encrypt):
    """The medians' difference in words; ranges that overlap make it noise."""
    overlap = none[1] <= encrypt[2] and encrypt[1] <= none[2]
    if cost < 0:
        text = "%.0f\u00a0%% faster than plaintext" % -cost
    else:
        text = "a cost of %.0f\u00a0%%" % cost
    if overlap:
        text += (", but the two min..max ranges overlap, so this run cannot tell TLS's cost "
                 "from the noise between rounds")
    return text


# ---------------------------------------------------------------- the runs

def describe(title, env, extra):
    keys = [("date_utc", "date (UTC)"), ("cpus", "CPUs"), ("memory", "memory"), ("kernel", "kernel"),
            ("os", "system"), ("fs of /var", "file system"), ("fs of /var/tmp", "file system"),
            ("postfix", "Postfix"), ("postfix package (smtp-source, smtp-sink)", "Postfix"),
            ("openssl", "OpenSSL"), ("matrix options", "harness options"), ("matrix", "matrix"),
            ("command", "command"), ("load before run", "load before the run"),
            ("fsync-probe", "fsync probe")]
    out = ["**%s.**" % title]
    parts = []
    for k, name in keys:
        if k in env and env[k]:
            v = env[k].replace("|", "/")
            if k == "cpus":
                v = re.sub(r"^(\d+)\s+model:\s*(.*)$", r"\1 (\2)", v)
            elif k in ("matrix options", "matrix", "command") and "`" not in v:
                v = "`%s`" % v  # options as typed: "--messages", not an en dash
            parts.append("%s: %s" % (name, v))
    parts += extra
    return out + ["", "; ".join(p.rstrip(".") for p in parts) + ".", ""]


def main(argv):
    if len(argv) != 4:
        fail("usage: bench_plots.py DATA_DIR FIG_DIR GEN_DIR")
    data, fig, gen = argv[1:]
    os.makedirs(fig, exist_ok=True)
    ienv, irounds, imsgs = inbound(data, fig, gen)
    renv, rrounds = relay(data, fig, gen)
    tenv = relay_tls(data, fig, gen)
    lines = []
    lines += describe("Inbound (`bench/inbound.sh`)", ienv,
                      ["%d round%s of %s messages per cell" % (irounds, "" if irounds == 1 else "s",
                                                               "/".join(map(str, imsgs)))])
    lines += describe("Relay, Postfix comparison (`run-relay.sh`)", renv, ["%d round%s" % (
        rrounds, "" if rrounds == 1 else "s")] + (["SUTs: `%s`" % renv["suts"]] if "suts" in renv else []))
    lines += describe("Relay, plaintext and STARTTLS (`bench/relay.sh`)", tenv, [])
    write(gen, "bench-env.md", lines)
    put_values(gen, bench_inbound_date=ienv["date_utc"][:10], bench_relay_date=renv["date_utc"][:10],
               bench_tls_date=tenv["date_utc"][:10],
               bench_machine=machine(ienv, os.path.join(data, "inbound-env.txt")))


def machine(env, path):
    for k in ("cpus", "memory", "kernel"):
        if k not in env:
            fail("%s has no %s line" % (path, k))
    m = re.match(r"(\d+)\s+model:\s*(.*)", env["cpus"])
    if not m:
        fail("%s: cannot read the cpus line %r" % (path, env["cpus"]))
    return "%s CPUs (%s), %s, %s" % (m.group(1), m.group(2), env["memory"], env["kernel"])


if __name__ == "__main__":
    main(sys.argv)
