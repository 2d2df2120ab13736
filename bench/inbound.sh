#!/usr/bin/env bash
# bench/inbound.sh -- the inbound (acceptance) benchmark of smtpd against Postfix,
# aiosmtpd and smtp-sink, on this machine, loopback only, with the shared harness
# (../shared/bench, see its README.md). It builds nothing: it takes an smtpd binary.
#
# Usage:
#   bench/inbound.sh [SMTPD] [--smtpd PATH] [--workers "2 4"] [--scratch DIR]
#                    [run-all.sh options: --rounds N --quick --only "..." --ipv6 ...]
#   bench/inbound.sh [SMTPD] --verify-fsync [N]
#
#   SMTPD / --smtpd   the smtpd binary (default: <repo>/build/apps/smtpd/smtpd)
#   --workers LIST    one benchmark row per value, label smtpd-w<N>, port 2528,
#                     2529, ... (default "2 4")
#   --scratch DIR     where the Maildirs, queues and smtpd's log files go (default: a
#                     new /tmp/bench-inbound.XXXXXX; must be on the same kind of disk as
#                     /var/tmp, where the harness keeps the other servers' Maildirs)
#   --verify-fsync N  not a benchmark: run smtpd (--workers 1) under `strace -f -y`,
#                     send N (default 20) 1 KiB messages and count fsync/rename/link per
#                     message and per target (file or directory), like the harness's
#                     verify-fsync.sh does for Postfix and aiosmtpd
#   anything else     passed to run-all.sh unchanged
# Environment: SHARED_BENCH (default "$(dirname <repo>)/shared/bench").
#
# The harness starts every smtpd row itself (under `timeout`), drives it with
# smtp-source, checks every message in <scratch>/w<N>/mail/user/{new,cur} and that
# tmp/ is empty, then stops it by PID. Everything is bounded by message counts and
# timeouts there. Results land in $SHARED_BENCH/results/run-<date>/; the last lines
# printed here say where.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SHARED_BENCH=${SHARED_BENCH:-$(dirname "$REPO")/shared/bench}
PATH=$PATH:/usr/sbin
SMTPD=""
WORKERS="2 4"
SCRATCH=""
VERIFY=0
VERIFY_N=20
PASS=()
FIRST_PORT=2528

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then SMTPD=$1; shift; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --smtpd) SMTPD=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --scratch) SCRATCH=$2; shift 2 ;;
    --verify-fsync)
      VERIFY=1; shift
      if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then VERIFY_N=$1; shift; fi ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) PASS+=("$1"); shift ;;
  esac
done
[ -n "$SMTPD" ] || SMTPD=$REPO/build/apps/smtpd/smtpd
case "$SMTPD" in /*) ;; *) SMTPD=$PWD/$SMTPD ;; esac
[ -x "$SMTPD" ] || { echo "inbound.sh: no smtpd binary at $SMTPD (build it, or pass its path)" >&2; exit 2; }
[ -x "$SHARED_BENCH/run-all.sh" ] || { echo "inbound.sh: no harness at $SHARED_BENCH (set SHARED_BENCH)" >&2; exit 2; }
[ -n "$SCRATCH" ] || SCRATCH=$(mktemp -d /tmp/bench-inbound.XXXXXX)
mkdir -p "$SCRATCH"
SCRATCH=$(cd "$SCRATCH" && pwd)
# fsync on tmpfs costs nothing: a Maildir there would not be comparable with Postfix's.
fstype=$(stat -f -c %T "$SCRATCH")
[ "$fstype" != tmpfs ] || echo "inbound.sh: WARNING: $SCRATCH is on tmpfs; fsync is free there" >&2

# The smtpd command line of one row: loopback only, no reverse DNS (it would leave the
# host), user@bench.test delivered into <dir>/mail/user. Paths must exist (smtpd
# creates only its default ./var/ paths).
smtpd_cmd() {   # dir port workers
  local dir=$1 port=$2 workers=$3
  mkdir -p "$dir/mail" "$dir/queue" "$dir/log"
  rm -f "$dir/log/smtpd.log"   # the log then holds this run only (all its rounds)
  printf '%q ' "$SMTPD" --port "$port" --bind 127.0.0.1 --no-rdns --hostname bench.test \
    --local-domain bench.test --mail-root "$dir/mail" --queue-root "$dir/queue" \
    --log-file "$dir/log/smtpd.log" --workers "$workers"
}

wait_port() { for _ in $(seq 1 100); do ss -ltnH "sport = :$1" | grep -q 127.0.0.1 && return 0; sleep 0.1; done; return 1; }

if [ "$VERIFY" = 1 ]; then
  if ! { [ "$VERIFY_N" -ge 1 ] && [ "$VERIFY_N" -le 1000 ]; }; then echo "N must be 1..1000" >&2; exit 2; fi
  command -v strace >/dev/null || { echo "strace missing: apt-get install strace" >&2; exit 1; }
  D=$SCRATCH/verify
  rm -rf "$D"
  PORT=$FIRST_PORT
  if ss -ltnH "sport = :$PORT" | grep -q .; then echo "port $PORT already in use" >&2; exit 1; fi
  CMD=$(smtpd_cmd "$D" "$PORT" 1)
  # -y prints the path behind every fd, so a file fsync and a directory fsync differ.
  timeout 300 strace -f -qq -y -o "$D/trace" \
    -e trace=execve,fsync,fdatasync,sync_file_range,syncfs,sync,rename,renameat,renameat2,link,linkat \
    bash -c "exec $CMD" < /dev/null > "$D/server.out" 2>&1 &
  SPID=$!
  wait_port "$PORT" || { echo "smtpd did not listen on $PORT; see $D/server.out" >&2; kill "$SPID"; exit 1; }
  MD=$D/mail/user
  timeout 120 smtp-source -s 1 -m "$VERIFY_N" -l 1024 -M client.bench.test -f s@client.bench.test \
    -t user@bench.test "127.0.0.1:$PORT" > /dev/null
  kill "$SPID"   # TERM to timeout -> strace -> smtpd
  for _ in $(seq 1 150); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$SPID" 2>/dev/null && kill -KILL "$SPID"
  wait "$SPID" 2>/dev/null || true
  delivered=$({ find "$MD/new" "$MD/cur" -type f 2>/dev/null || true; } | wc -l)
  echo "server=smtpd messages_sent=$VERIFY_N delivered=$delivered  (trace: $D/trace)"
  # Classify by the traced path: the message file in tmp/, the new/ directory, other.
  awk -v n="$VERIFY_N" '
    / \+\+\+ |resumed>/ { next }
    { c = ""
      if ($0 ~ /(^| )(fsync|fdatasync|sync_file_range|syncfs|sync)\(/) c = "fsync"
      else if ($0 ~ /(^| )(rename|renameat|renameat2)\(/) c = "rename"
      else if ($0 ~ /(^| )(link|linkat)\(/) c = "link"
      if (c == "") next
      t = "other"
      if (match($0, /\(-?[0-9]+<[^>]*>/)) t = "other " substr($0, RSTART + index(substr($0, RSTART), "<"), RLENGTH - index(substr($0, RSTART), "<") - 1)
      if ($0 ~ /\/user\/tmp\/[^>]*>/) t = "file in tmp/"
      else if ($0 ~ /\/user\/new>/) t = "dir new/"
      if (c != "fsync") t = "tmp/ -> new/"
      cnt[c "\t" t]++
    }
    END { for (k in cnt) { split(k, a, "\t"); printf "  smtpd  %-7s %-13s %5d calls  (%.2f per message)\n", a[1], a[2], cnt[k], cnt[k]/n } }
  ' "$D/trace" | sort
  [ "$delivered" = "$VERIFY_N" ] || { echo "inbound.sh: only $delivered of $VERIFY_N delivered" >&2; exit 1; }
  exit 0
fi

SERVERS=$SCRATCH/servers.conf
{
  echo "# written by $REPO/bench/inbound.sh: LABEL PORT MAILDIR START_CMD (run-all.sh --servers)"
  port=$FIRST_PORT
  for w in $WORKERS; do
    echo "smtpd-w$w  $port  $SCRATCH/w$w/mail/user  $(smtpd_cmd "$SCRATCH/w$w" "$port" "$w")"
    port=$((port + 1))
  done
} > "$SERVERS"
echo "inbound.sh: smtpd=$SMTPD"
echo "inbound.sh: servers file $SERVERS:"
sed 's/^/  /' "$SERVERS"

# The machine may be shared: note every 10 s what else runs (at most 3 hours), so a
# noisy cell can be told apart from a slow server afterwards.
(
  for _ in $(seq 1 1080); do
    { echo "--- $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg)"
      top -bn1 -o %CPU -w 160 | sed -n '7,14p'; } >> "$SCRATCH/machine-load.txt" 2>&1
    sleep 10
  done
) &
SAMPLER=$!
set +e
"$SHARED_BENCH/run-all.sh" --servers "$SERVERS" "${PASS[@]}" 2>&1 | tee "$SCRATCH/run-all.out"
rc=${PIPESTATUS[0]}
set -e
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
OUT=$(sed -n 's/^=== summary (\(.*\)\/summary\.md) ===$/\1/p' "$SCRATCH/run-all.out" | tail -n 1)

# smtpd's own account of the run: deliveries logged, log records the workers had to
# drop (they never block on a full log queue), and every other warning or error
# besides the expected "running as root" notice.
echo "=== smtpd logs ==="
for w in $WORKERS; do
  log=$SCRATCH/w$w/log/smtpd.log
  [ -f "$log" ] || { echo "smtpd-w$w: no log at $log"; continue; }
  sent=$(grep -c 'status=sent' "$log" || true)
  drops=$(grep -c ': warning: [0-9]* records\? dropped before this one' "$log" || true)
  others=$(grep -E ': (warning|error|fatal|panic): ' "$log" |
           grep -v -e 'running as root' -e 'dropped before this one' || true)
  echo "smtpd-w$w: $log: $sent deliveries logged, $drops 'records dropped' warnings," \
       "$(printf '%s' "$others" | grep -c . || true) other warning/error lines"
  printf '%s\n' "$others" | grep . | head -n 20 | sed 's/^/  /' || true
  grep -E 'log process stopping' "$log" | sed 's/^/  /' || true
done
echo "inbound.sh: smtpd scratch (Maildirs, queues, logs, servers file, machine-load.txt): $SCRATCH"
if [ -n "$OUT" ]; then
  echo "inbound.sh: results in $OUT (summary.md, results.tsv, env.txt, log.txt, smtpd-w*.server.log)"
else
  echo "inbound.sh: run-all.sh printed no results directory; see $SCRATCH/run-all.out"
fi
exit "$rc"
