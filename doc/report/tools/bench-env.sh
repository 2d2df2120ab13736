#!/usr/bin/env bash
# doc/report/tools/bench-env.sh [COMMAND...] -- prints a description of this machine
# in the "key: value" form of the shared harness's env.txt, for benchmark runs that
# write none (bench/relay.sh). Run it right before the benchmark:
#   doc/report/tools/bench-env.sh bench/relay.sh --rounds 3 > doc/report/data/relay-tls-env.txt
# COMMAND is only recorded, not run.
set -euo pipefail
echo "date_utc: $(date -u +%FT%TZ)"
echo "kernel: $(uname -srm)"
echo "cpus: $(nproc)  model: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "memory: $(free -m | awk '/^Mem:/{print $2" MiB"}')"
echo "fs of /var/tmp: $(df -T /var/tmp | awk 'NR==2{print $2" on "$1}')"
echo "os: $(. /etc/os-release; echo "$PRETTY_NAME")"
echo "openssl: $(openssl version)"
[ $# -eq 0 ] || echo "command: $*"
echo "load before run: $(cut -d' ' -f1-3 /proc/loadavg)"
