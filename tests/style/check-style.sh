#!/usr/bin/env bash
# The house-style checks (DESIGN.md), run by `make test_style`:
#  1. every C++ source is formatted as .clang-format says;
#  2. libsmtp stays sans-IO: nothing under libsmtp/ or include/smtp/ includes a
#     socket, thread, file, process or clock header.
# Exit status: 0 clean, 1 a finding (each printed with file and line).
set -u
cd "$(dirname "$0")/../.."
status=0

mapfile -t sources < <(git ls-files -co --exclude-standard -- '*.cpp' '*.hpp' '*.h' 2>/dev/null \
                       | grep -v '^subprojects/' | while read -r f; do [ -f "$f" ] && echo "$f"; done)
if [ ${#sources[@]} -eq 0 ]; then
    echo "check-style: no sources found"; exit 1
fi
if ! clang-format --dry-run --Werror "${sources[@]}"; then
    echo "check-style: formatting differs from .clang-format (fix: clang-format -i FILE)"
    status=1
fi

forbidden='#[[:space:]]*include[[:space:]]*<(sys/[a-z_]+\.h|unistd\.h|fcntl\.h|poll\.h|netdb\.h|netinet/[a-z_]+\.h|arpa/inet\.h|thread|mutex|future|condition_variable|fstream|filesystem|chrono|ctime|time\.h|cstdio|stdio\.h|iostream|csignal|signal\.h)>'
if grep -rnE "$forbidden" libsmtp include; then
    echo "check-style: libsmtp is sans-IO; the includes above are not allowed there"
    status=1
fi

[ $status -eq 0 ] && echo "check-style: ${#sources[@]} files clean, libsmtp sans-IO"
exit $status
