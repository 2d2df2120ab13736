#!/usr/bin/env bash
# Writes the manual pages of doc/man/ from their templates (*.in) and the daemons'
# tables of settings, with doc/tools/settings_reference, rebuilt first in BUILD_DIR.
# Run it after changing a template, a daemon's settings or an example configuration;
# the style tests man_* fail until then.
#   doc/man/regenerate.sh [BUILD_DIR]      (default: build)
set -euo pipefail
man=$(cd "$(dirname "$0")" && pwd)
source=$(cd "$man/../.." && pwd)
build=${1:-build}
ninja -C "$build" doc/settings_reference >/dev/null
generator=$build/doc/settings_reference

# page, then the generator's arguments
write() {
    local page=$1
    shift
    "$generator" "$@" >"$man/$page.tmp"
    mv "$man/$page.tmp" "$man/$page"
    echo "wrote doc/man/$page"
}
write smtpd.8 --man smtpd 8 "$man/smtpd.8.in"
write smtpc.8 --man smtpc 8 "$man/smtpc.8.in"
write smtpd.cfg.5 --man smtpd 5 "$man/smtpd.cfg.5.in" "$source/apps/smtpd/smtpd.cfg.example"
write smtpc.cfg.5 --man smtpc 5 "$man/smtpc.cfg.5.in" "$source/apps/smtpc/smtpc.cfg.example"
