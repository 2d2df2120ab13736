#!/usr/bin/env bash
# Fails when a generated file in doc/ differs from what its generator prints now.
# Usage: check_generated.sh GENERATOR FILE
set -euo pipefail
if ! diff -u "$2" <("$1"); then
    echo "FAIL: $2 is out of date; regenerate it: $(basename "$1") > $2"
    exit 1
fi
echo "PASS: $2 matches its generator"
