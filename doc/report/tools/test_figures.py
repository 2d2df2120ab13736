#!/usr/bin/python3
"""test_figures.py COMMAND ... -- the testing chapter's figures, measured on this run,
as Markdown fragments and key/value lines for assemble.py.

  suites BUILD GEN            meson tests per suite (meson introspect --tests)
  doctest BUILD GEN           doctest test cases per unit-test binary and module
                              (BINARY --count --test-suite=MODULE)
  results LOG.json[,LOG.json...] NAME GEN [SUITE]
                              `meson test` runs from their JSON logs (only the tests
                              of SUITE, if given): per test its result, time and the
                              cases it reports (doctest's summary line, the Python
                              harness's "N passed" line)
  coverage SUMMARY.json GEN   gcovr --json-summary: line and branch coverage per
                              directory
  fuzz LOGDIR SECONDS GEN T.. libFuzzer's final lines per target: executions,
                              edges covered (cov), features (ft), corpus size

Each command writes GEN/<fragment>.md and appends to GEN/values.tsv. Anything that
cannot be read is an error: no figure is ever guessed or left blank.
"""
import json
import os
import re
import subprocess
import sys
from collections import OrderedDict

from mdtable import put_values, table, write


def fail(msg):
    sys.exit("test_figures.py: " + msg)


def thousands(n):
    return "{:,}".format(n).replace(",", "\u2009")  # thin space: 1 234 567


def introspect_tests(build):
    out = subprocess.run(["meson", "introspect", "--tests", build], check=True,
                         capture_output=True, text=True).stdout
    tests = json.loads(out)
    if not tests:
        fail("meson introspect --tests %s: no tests" % build)
    return tests


def suites_of(test):
    # "libsmtp:unit" -> "unit" (meson prefixes the project name)
    return [s.split(":", 1)[-1] for s in test["suite"]]


# What a suite runs: a description, or None to list its tests by name (short suites).
SUITE_TEXT = OrderedDict([
    ("unit", "doctest binaries, one meson test per module (doctest TEST_SUITE)"),
    ("style", None),
    ("system", "real daemons and real peers on loopback (Python harness), install, subproject"),
    ("memory", None),
])


def cmd_suites(build, gen):
    tests = introspect_tests(build)
    by_suite = OrderedDict((s, []) for s in SUITE_TEXT)
    for t in tests:
        for s in suites_of(t):
            by_suite.setdefault(s, []).append(t["name"])
    rows = []
    for s, names in by_suite.items():
        if not names:
            fail("suite %s has no tests" % s)
        text = SUITE_TEXT.get(s) or ", ".join("`%s`" % n for n in sorted(names))
        rows.append([s, len(names), text])
    rows.append(["all", len(tests), ""])
    write(gen, "test-suites.md", table(["suite", "meson tests", "what they run"], rows, [12, 14, 74],
                                       "lrl", "meson tests per suite (`meson introspect --tests`)."))
    put_values(gen, meson_tests=len(tests), **{"meson_tests_" + s: len(n) for s, n in by_suite.items()})
    put_values(gen, **{"meson_test_names_" + s: ", ".join("`%s`" % x for x in sorted(n))
                       for s, n in by_suite.items()})


def doctest_count(cmd):
    out = subprocess.run(cmd + ["--count"], check=True, capture_output=True, text=True,
                         timeout=60).stdout
    m = re.search(r"unskipped test cases passing the current filters:\s*(\d+)", out)
    if not m:
        fail("no count from %s: %r" % (" ".join(cmd), out[-300:]))
    return int(m.group(1))


def cmd_doctest(build, gen):
    tests = introspect_tests(build)
    rows = []
    binaries = OrderedDict()
    for t in tests:
        if "unit" not in suites_of(t):
            continue
        cmd = t["cmd"]
        module = [a for a in cmd[1:] if a.startswith("--test-suite=")]
        if not module or not os.access(cmd[0], os.X_OK):
            fail("unit test %s is not a doctest binary run with --test-suite: %r" % (t["name"], cmd))
        n = doctest_count(cmd[:1] + module)
        binary = os.path.relpath(cmd[0], build)
        rows.append((binary, t["name"], n))
        binaries.setdefault(binary, 0)
    # A binary's total is its own count: meson tests may overlap (a filter naming two
    # doctest suites), so the sum over its meson tests can be larger.
    total_by_binary = {b: doctest_count([os.path.join(build, b)]) for b in binaries}
    out = []
    for b in binaries:
        modules = ", ".join("%s %d" % (m, n) for bb, m, n in rows if bb == b)
        out.append(["`%s`" % os.path.basename(b), modules, total_by_binary[b]])
    total = sum(total_by_binary.values())
    out.append(["%d binaries" % len(binaries), "%d meson tests" % len(rows), total])
    write(gen, "doctest-counts.md", table(
        ["binary", "meson tests (modules) and their test cases", "test cases"], out, [22, 64, 14], "llr",
        "doctest test cases per binary (in `tests/`) and per meson test, each counted with that test's "
        "own `--test-suite` filter (`BINARY --count`)."))
    put_values(gen, doctest_cases=total, doctest_binaries=len(binaries), doctest_modules=len(rows))


def cases_of(stdout):
    """(passed, failed, skipped, assertions) a test's output reports, or None."""
    m = re.findall(r"\[doctest\] test cases:\s*(\d+)\s*\|\s*(\d+) passed\s*\|\s*(\d+) failed\s*\|\s*(\d+) skipped",
                   stdout)
    a = re.findall(r"\[doctest\] assertions:\s*(\d+)\s*\|", stdout)
    if m:
        # doctest counts the cases left out by --test-suite as skipped: not a result.
        _, p, f, _ = (int(x) for x in m[-1])
        return p, f, 0, int(a[-1]) if a else 0
    m = re.findall(r"^(\d+) passed, (\d+) failed, (\d+) skipped$", stdout, re.M)
    if m:
        p, f, s = (int(x) for x in m[-1])
        return p, f, s, None
    return None


def cmd_results(logs, name, gen, suite_filter=None):
    runs = []
    for log in logs.split(","):
        with open(log, encoding="utf-8") as f:
            lines = [line for line in f if line.strip()]
        for line in lines:
            r = json.loads(line)
            # "libsmtp:unit / client": project, suite, test name
            m = re.fullmatch(r"(?:[^:/ ]+:)?([^ /]+) / (.+)", r["name"])
            r["suite_name"], r["test_name"] = (m.group(1), m.group(2)) if m else ("", r["name"])
            if suite_filter is None or r["suite_name"] == suite_filter:
                runs.append(r)
    if not runs:
        fail("%s: no test ran%s" % (logs, "" if suite_filter is None else " in suite " + suite_filter))
    rows = []
    ok = bad = 0
    cases = [0, 0, 0]
    assertions = 0
    failed_names = []
    for r in sorted(runs, key=lambda r: (r["suite_name"], r["test_name"])):
        suite = r["suite_name"]
        result = r["result"]
        c = cases_of(r.get("stdout") or "")
        if result == "OK":
            ok += 1
        elif result == "SKIP":
            pass
        else:
            bad += 1
            failed_names.append(r["test_name"])
        cell = "-"
        if c:
            cases = [x + y for x, y in zip(cases, c[:3])]
            assertions += c[3] or 0
            cell = "%d / %d / %d" % c[:3]
        rows.append([r["test_name"], suite, result if result == "OK" else "**%s**" % result,
                     "%.1f" % r["duration"], cell])
    rows.append(["%d tests" % len(runs), "", "%d OK, %d not" % (ok, bad), "", "%d / %d / %d" % tuple(cases)])
    write(gen, name + "-results.md", table(
        ["test", "suite", "result", "seconds", "cases passed / failed / skipped"], rows, [30, 12, 20, 12, 26],
        "lllrr", "`meson test` results%s: result, time, and the cases each test reports." % (
            "" if suite_filter is None else " (suite %s)" % suite_filter)))
    put_values(gen, **{name + "_tests": len(runs), name + "_ok": ok, name + "_failed": bad,
                       name + "_cases_passed": cases[0], name + "_cases_failed": cases[1],
                       name + "_cases_skipped": cases[2], name + "_assertions": thousands(assertions),
                       name + "_failed_list": ", ".join(failed_names) or "none"})


DIRS = [("libsmtp/", "libsmtp (protocol core)"), ("apps/common/", "apps/common"),
        ("apps/smtpd/", "apps/smtpd"), ("apps/smtpc/", "apps/smtpc")]


def pct(covered, total):
    return "%.1f %%" % (100.0 * covered / total) if total else "-"


def cmd_coverage(summary, gen):
    with open(summary, encoding="utf-8") as f:
        data = json.load(f)
    sums = OrderedDict((d, [0, 0, 0, 0, 0]) for d, _ in DIRS)
    for fobj in data["files"]:
        path = fobj["filename"]
        for d, _ in DIRS:
            if path.startswith(d):
                s = sums[d]
                s[0] += fobj["line_covered"]
                s[1] += fobj["line_total"]
                s[2] += fobj["branch_covered"]
                s[3] += fobj["branch_total"]
                s[4] += 1
    rows = []
    total = [0, 0, 0, 0, 0]
    values = {}
    for d, label in DIRS:
        s = sums[d]
        if s[1] == 0:
            fail("coverage: no lines measured under %s" % d)
        total = [a + b for a, b in zip(total, s)]
        rows.append([label, s[4], "%s / %s" % (thousands(s[0]), thousands(s[1])), pct(s[0], s[1]),
                     "%s / %s" % (thousands(s[2]), thousands(s[3])), pct(s[2], s[3])])
        key = d.strip("/").replace("/", "_")
        values["cov_lines_" + key] = pct(s[0], s[1])
        values["cov_branches_" + key] = pct(s[2], s[3])
    rows.append(["all", total[4], "%s / %s" % (thousands(total[0]), thousands(total[1])),
                 pct(total[0], total[1]), "%s / %s" % (thousands(total[2]), thousands(total[3])),
                 pct(total[2], total[3])])
    write(gen, "coverage.md", table(
        ["directory", "files", "lines covered / total", "lines", "branches covered / total", "branches"],
        rows, [27, 7, 22, 10, 24, 10], "lrrrrr",
        "Line and branch coverage by the unit and system suites (gcovr)."))
    values["cov_lines_all"] = pct(total[0], total[1])
    values["cov_branches_all"] = pct(total[2], total[3])
    put_values(gen, **values)


def cmd_fuzz(logdir, seconds, gen, targets):
    rows = []
    total = 0
    crashes = []
    for t in targets:
        path = os.path.join(logdir, t + ".log")
        if not os.path.isfile(path):
            fail("no fuzz log %s" % path)
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
        execs = re.search(r"^stat::number_of_executed_units:\s*(\d+)", text, re.M)
        rate = re.search(r"^stat::average_exec_per_sec:\s*(\d+)", text, re.M)
        rss = re.search(r"^stat::peak_rss_mb:\s*(\d+)", text, re.M)
        start = re.search(r"INITED cov: (\d+) ft: (\d+) corp: (\d+)", text)
        ends = re.findall(r"(?:DONE|pulse|NEW|REDUCE)\s+cov: (\d+) ft: (\d+) corp: (\d+)", text)
        crashed = re.search(r"ERROR: (AddressSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|SUMMARY: ", text)
        if not (execs and rate and rss and start):
            fail("%s: no final statistics (did libFuzzer run with -print_final_stats=1?)" % path)
        end = ends[-1] if ends else start.groups()
        result = "passed"
        if crashed:
            result = "**crash**"
            crashes.append(t)
        n = int(execs.group(1))
        total += n
        rows.append([t.replace("fuzz_", ""), thousands(n), thousands(int(rate.group(1))),
                     "%s\u00a0→\u00a0%s" % (start.group(1), end[0]), "%s\u00a0→\u00a0%s" % (start.group(2), end[1]),
                     "%s\u00a0→\u00a0%s" % (start.group(3), end[2]), rss.group(1), result])
    write(gen, "fuzz.md", table(
        ["target", "executions", "exec/s", "edges (cov)", "features (ft)", "corpus", "RSS MB",
         "result"], rows, [17, 13, 9, 15, 17, 13, 8, 8], "lrrrrrrl",
        "libFuzzer statistics of the targets `fuzz_NAME`, %s s each (clang, ASan, UBSan): "
        "figures at the start → at the end of the run." % seconds))
    put_values(gen, fuzz_targets=len(targets), fuzz_seconds=seconds, fuzz_execs=thousands(total),
               fuzz_failed=len(crashes), fuzz_failed_list=", ".join(crashes) or "none")


def main(argv):
    if len(argv) < 2:
        fail(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "suites" and len(args) == 2:
        cmd_suites(*args)
    elif cmd == "doctest" and len(args) == 2:
        cmd_doctest(*args)
    elif cmd == "results" and len(args) in (3, 4):
        cmd_results(*args)
    elif cmd == "coverage" and len(args) == 2:
        cmd_coverage(*args)
    elif cmd == "fuzz" and len(args) >= 4:
        cmd_fuzz(args[0], args[1], args[2], args[3:])
    else:
        fail("bad arguments: %r\n%s" % (argv[1:], __doc__))


if __name__ == "__main__":
    main(sys.argv)
