#!/usr/bin/env bash
# The tree is formatted with the project's .clang-format: clang-format 14
# (Debian's, installed by scripts/setup) reports no change for any C, C++
# or CUDA file of the checkout. A file that needs formatting is named with
# the first lines clang-format would change; `scripts/format` fixes them.
#   test_format.sh SOURCE_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
cf=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$cf" ]; then
  echo "test_format: SKIP: clang-format is not installed (scripts/setup installs it)"
  exit 77
fi
cd "$src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -d '' files < <(git ls-files -z --cached --others --exclude-standard -- \
    '*.c' '*.h' '*.cu' '*.cc' '*.cpp' | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done)
else
  mapfile -d '' files < <(find . -path './build*' -prune -o -path ./.git -prune -o \
    \( -name '*.c' -o -name '*.h' -o -name '*.cu' -o -name '*.cc' -o -name '*.cpp' \) -type f -print0)
fi
[ ${#files[@]} -gt 0 ] || { echo "test_format: FAIL: no source files found under $src" >&2; exit 1; }
out=$("$cf" --dry-run -Werror "${files[@]}" 2>&1) && rc=0 || rc=$?
if [ $rc -ne 0 ]; then
  head -n 40 <<<"$out" >&2 || true
  bad=$(sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error:.*/\1/p' <<<"$out" | sort -u)
  n=$(grep -c . <<<"$bad" || true)
  echo "test_format: FAIL: $n file(s) not formatted; run scripts/format" >&2
  exit 1
fi
echo "test_format: ${#files[@]} files formatted as .clang-format says"
