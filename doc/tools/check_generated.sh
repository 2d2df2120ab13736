#!/usr/bin/env bash
# Fails when a generated file in doc/ differs from what its generator prints now.
# Usage: check_generated.sh GENERATOR FILE [GENERATOR ARGUMENTS...]
set -euo pipefail
generator=$1 file=$2
shift 2
if ! diff -u "$file" <("$generator" "$@"); then
    echo "FAIL: $file is out of date; regenerate it: $(basename "$generator") $* > $file"
    exit 1
fi
echo "PASS: $file matches its generator"
