#!/usr/bin/env bash
# bench/relay.sh -- the outbound (relay) benchmark of smtpc: how fast a queue of N
# messages is delivered to a remote MX, in plaintext and with STARTTLS, in the same
# run, rounds interleaved. Loopback only; every wait is bounded by a count and a time.
#
# Usage:
#   bench/relay.sh [--build DIR] [--messages N] [--rounds R] [--scratch DIR]
#
#   --build DIR     the build tree with apps/smtpd/smtpd and apps/smtpc/smtpc
#                   (default <repo>/build)
#   --messages N    messages per cell (default 2000), 1 KiB each, one recipient
#   --rounds R      rounds; each runs every variant once (default 3)
#   --scratch DIR   queues, Maildirs, logs, certificates (default: a new
#                   /var/tmp/bench-relay.XXXXXX)
#
# One cell:
#   1. a fresh queue: smtpd (the relay, queue on disk, fsync as always) takes N
#      messages for user@remote.test from smtp-source (10 sessions); smtpc is not
#      running, so they stay queued (checked: N envelopes);
#   2. the clock starts; `smtpc --once --smarthost 127.0.0.1:DEST` delivers them all
#      to the destination and exits; the clock stops;
#   3. checked: the destination has N messages, the queue is empty.
#   msg/s = N / (2.).
# The destination ("remote MX") is a second smtpd with a certificate (STARTTLS
# offered), Maildir on /dev/shm so that its fsyncs cost little and the sender is what
# is measured. Variants: smtpc --tls-level none (plaintext) and encrypt (STARTTLS,
# TLS 1.3 by OpenSSL's defaults). The Postfix comparison of the plaintext path is the
# shared harness's run-relay.sh (smtp-sink has no STARTTLS): bench/relay.sut plugs
# smtpd+smtpc into it.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PATH=$PATH:/usr/sbin
BUILD=$REPO/build
MESSAGES=2000
ROUNDS=3
SCRATCH=""
RELAY_PORT=2545
DEST_PORT=2546

while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --messages) MESSAGES=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --scratch) SCRATCH=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "relay.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$BUILD" in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
SMTPD=$BUILD/apps/smtpd/smtpd
SMTPC=$BUILD/apps/smtpc/smtpc
for b in "$SMTPD" "$SMTPC"; do [ -x "$b" ] || { echo "relay.sh: no binary $b (build first)" >&2; exit 2; }; done
for c in smtp-source openssl ss timeout; do command -v "$c" >/dev/null || { echo "relay.sh: $c missing" >&2; exit 2; }; done
if ! { [ "$MESSAGES" -ge 1 ] && [ "$MESSAGES" -le 100000 ] && [ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ]; }; then
  echo "relay.sh: --messages 1..100000, --rounds 1..20" >&2; exit 2
fi
for p in $RELAY_PORT $DEST_PORT; do
  if ss -ltnH "sport = :$p" | grep -q .; then echo "relay.sh: port $p is in use" >&2; exit 1; fi
done
[ -n "$SCRATCH" ] || SCRATCH=$(mktemp -d /var/tmp/bench-relay.XXXXXX)
mkdir -p "$SCRATCH"
SCRATCH=$(cd "$SCRATCH" && pwd)
SHM=$(mktemp -d /dev/shm/bench-relay-dest.XXXXXX)
RESULTS=$SCRATCH/results.tsv
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$SHM"
}
trap cleanup EXIT

now() { date +%s.%N; }
wait_port() { for _ in $(seq 1 100); do ss -ltnH "sport = :$1" | grep -q 127.0.0.1 && return 0; sleep 0.1; done; return 1; }
count_files() { find "$1" -type f 2>/dev/null | wc -l; }

# The destination's certificate: self-signed, made here, never trusted by anyone
# (encrypt does not verify, like Postfix's level of the same name).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=dest.test -keyout "$SCRATCH/dest.key" -out "$SCRATCH/dest.pem" 2>/dev/null

# The destination smtpd, for the whole run.
mkdir -p "$SHM/mail" "$SHM/queue" "$SCRATCH/log"
timeout $((ROUNDS * 1200 + 600)) "$SMTPD" --port "$DEST_PORT" --bind 127.0.0.1 --no-rdns \
  --hostname dest.test --local-domain remote.test --mail-root "$SHM/mail" --queue-root "$SHM/queue" \
  --log-file "$SCRATCH/log/dest.log" --log-level warning --workers 2 \
  --tls-cert "$SCRATCH/dest.pem" --tls-key "$SCRATCH/dest.key" > "$SCRATCH/log/dest.out" 2>&1 &
PIDS+=($!)
wait_port "$DEST_PORT" || { echo "relay.sh: destination did not start, see $SCRATCH/log/dest.out" >&2; exit 1; }

# Fills a fresh queue with N messages through the relay smtpd; prints nothing.
fill_queue() {   # dir
  local dir=$1 pid queued
  rm -rf "$dir"
  mkdir -p "$dir/queue" "$dir/mail"
  timeout 900 "$SMTPD" --port "$RELAY_PORT" --bind 127.0.0.1 --no-rdns --hostname relay.test \
    --local-domain relay.test --mail-root "$dir/mail" --queue-root "$dir/queue" \
    --log-file "$dir/relay.log" --log-level warning --workers 2 > "$dir/relay.out" 2>&1 &
  pid=$!
  wait_port "$RELAY_PORT" || { echo "relay.sh: relay smtpd did not start" >&2; kill "$pid"; return 1; }
  timeout 600 smtp-source -s 10 -m "$MESSAGES" -l 1024 -M client.test -f sender@relay.test \
    -t user@remote.test "127.0.0.1:$RELAY_PORT" > /dev/null
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  queued=$(count_files "$dir/queue/envelope")
  [ "$queued" = "$MESSAGES" ] || { echo "relay.sh: $queued of $MESSAGES queued" >&2; return 1; }
}

# One timed drain; prints "seconds delivered left".
drain() {   # dir level
  local dir=$1 level=$2 t0 t1 before after left
  before=$(count_files "$SHM/mail/user/new")
  t0=$(now)
  timeout 900 "$SMTPC" --once --queue-root "$dir/queue" --mail-root "$dir/mail" --hostname relay.test \
    --smarthost "127.0.0.1:$DEST_PORT" --tls-level "$level" --log-file "$dir/smtpc.log" \
    > "$dir/smtpc.out" 2>&1
  t1=$(now)
  after=$(count_files "$SHM/mail/user/new")
  left=$(count_files "$dir/queue/envelope")
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') $((after - before)) $left"
}

printf 'round\tvariant\tmessages\tseconds\tmsg_s\tdelivered\tleft\tstatus\n' > "$RESULTS"
echo "relay.sh: $MESSAGES messages x $ROUNDS rounds; scratch $SCRATCH"
for round in $(seq 1 "$ROUNDS"); do
  variants=(none encrypt)
  [ $((round % 2)) = 0 ] && variants=(encrypt none)   # alternate the order
  for level in "${variants[@]}"; do
    dir=$SCRATCH/cell
    fill_queue "$dir"
    sync
    read -r secs delivered left <<< "$(drain "$dir" "$level")"
    status=OK
    [ "$delivered" = "$MESSAGES" ] && [ "$left" = 0 ] || status=INCOMPLETE
    if [ "$level" = encrypt ] && ! grep -q 'TLS connection established to' "$dir/smtpc.log"; then
      status=NO_TLS
    fi
    rate=$(awk -v n="$MESSAGES" -v s="$secs" 'BEGIN { print n / s }')
    printf '%s\t%s\t%s\t%.3f\t%.1f\t%s\t%s\t%s\n' "$round" "$level" "$MESSAGES" "$secs" "$rate" \
      "$delivered" "$left" "$status" | tee -a "$RESULTS"
    rm -rf "$SHM/mail/user"
  done
done

echo "relay.sh: medians (msg/s):"
for level in none encrypt; do
  awk -F'\t' -v l="$level" 'NR > 1 && $2 == l { print $5 }' "$RESULTS" | sort -n |
    awk -v l="$level" '{ a[NR] = $1 } END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2;
      printf "  smtpc tls-level %-8s %8.1f msg/s (%d rounds)\n", l, m, NR }'
done
echo "relay.sh: results in $RESULTS"
