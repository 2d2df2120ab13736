#!/usr/bin/env bash
# `make install` puts a usable libsmtp where PREFIX says: this installs the build
# into a temporary prefix, builds examples/check_commands.cpp out of the tree with
# nothing but pkg-config (shared, then static), and runs both on real input.
# Usage: test_install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1")
source=$(realpath "$2")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

meson install -C "$build" --destdir "$work/root" --quiet --only-changed >/dev/null
prefix=$(meson introspect "$build" --buildoptions | python3 -c \
    'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"))')
root="$work/root$prefix"
pcdir=$(dirname "$(find "$root" -name libsmtp.pc | head -n 1)")
[ -f "$pcdir/libsmtp.pc" ] || { echo "FAIL: libsmtp.pc not installed"; exit 1; }

# The .pc file names the final prefix; point it at the staging root instead.
export PKG_CONFIG_PATH="$pcdir"
export PKG_CONFIG_SYSROOT_DIR="$work/root"
libdir=$(pkg-config --variable=libdir libsmtp)  # already under the sysroot

c++ -std=c++20 -o "$work/shared" "$source/examples/check_commands.cpp" $(pkg-config --cflags --libs libsmtp)
c++ -std=c++20 -o "$work/static" "$source/examples/check_commands.cpp" $(pkg-config --cflags libsmtp) \
    "$libdir/libsmtp.a" $(pkg-config --libs fmt)

input=$'EHLO client.example\r\nMAIL FROM:<a@example.org> SIZE=100\r\nRCPT TO:<b@example.net> FOO=1\r\n'
expected=$'EHLO domain=client.example\nMAIL path=<a@example.org> size=100\n555 5.5.4 Unsupported parameter: FOO'
for kind in shared static; do
    got=$(printf '%s' "$input" | LD_LIBRARY_PATH="$libdir" "$work/$kind")
    if [ "$got" != "$expected" ]; then
        printf 'FAIL (%s): got\n%s\nexpected\n%s\n' "$kind" "$got" "$expected"
        exit 1
    fi
done
echo "PASS: installed headers, libsmtp.pc, shared and static library build and run an example"
