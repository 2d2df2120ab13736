#!/usr/bin/env bash
# libsmtp works as a meson subproject: a scratch project that has this tree as
# subprojects/libsmtp gets it with dependency('libsmtp', fallback : ...), builds
# examples/check_commands.cpp and runs it on real input.
# Usage: test_subproject.sh SOURCE_DIR
set -euo pipefail
source=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A copy, not a link: meson will not take a subproject that holds its build dirs.
mkdir -p "$work/app/subprojects/libsmtp"
tar -C "$source" --exclude=./.git --exclude='./build*' --exclude=./var -cf - . \
    | tar -C "$work/app/subprojects/libsmtp" -xf -
cp "$source/examples/check_commands.cpp" "$work/app/"
cat > "$work/app/meson.build" <<'MESON'
project('embedder', 'cpp', default_options : ['cpp_std=c++20'])
libsmtp_dep = dependency('libsmtp', fallback : ['libsmtp', 'libsmtp_dep'])
executable('check_commands', 'check_commands.cpp', dependencies : libsmtp_dep)
MESON

meson setup "$work/build" "$work/app" --force-fallback-for=libsmtp >/dev/null
ninja -C "$work/build" check_commands >/dev/null

got=$(printf 'HELO [192.0.2.1]\r\nQUIT now\r\n' | "$work/build/check_commands")
expected=$'501 5.5.2 Invalid domain name\n501 5.5.4 No arguments allowed'
if [ "$got" != "$expected" ]; then
    printf 'FAIL: got\n%s\nexpected\n%s\n' "$got" "$expected"
    exit 1
fi
echo "PASS: libsmtp used as a meson subproject"
