#!/usr/bin/env bash
# Builds the libFuzzer targets with clang, AddressSanitizer and UBSan, and runs each
# for a bounded time on a scratch copy of its seed corpus (the repo's corpus is
# never written to). A crash leaves its input as BUILD/TARGET-crash-* and fails.
# Usage: tests/fuzz/run.sh [BUILD_DIR] [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-fuzz}
seconds=${2:-60}
shift $(( $# < 2 ? $# : 2 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_command fuzz_reply fuzz_data fuzz_server_session fuzz_client_session fuzz_envelope)

if [ ! -f "$build/build.ninja" ]; then
    CXX=clang++ meson setup "$build" -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
        -Dbench=disabled -Dbuildtype=debugoptimized >/dev/null
fi
ninja -C "$build" $(printf 'tests/fuzz/%s ' "${targets[@]}") >/dev/null

for target in "${targets[@]}"; do
    corpus=$(mktemp -d)
    cp -r "tests/fuzz/corpus/$target/." "$corpus/"
    echo "== $target: ${seconds}s"
    log="$build/$target.log"
    status=0
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        "$build/tests/fuzz/$target" "$corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$build/$target-" >"$log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|ERROR|SUMMARY|Done [0-9]+ runs' "$log" || true
    rm -rf "$corpus"
    [ "$status" -eq 0 ] || { echo "$target: FAILED (status $status)"; exit 1; }
    echo "$target: no crash, no hang"
done
