#!/usr/bin/env bash
# scripts/setup tells the truth: on a copy of the tree with one source file
# broken it exits non-zero and shows the compiler's error; it refuses an
# unknown option before any package is looked at or installed; with
# --no-install it never runs apt-get. apt-get, sudo and dpkg-query are
# stand-ins on PATH here, so nothing is ever installed.
#   test_setup.sh SOURCE_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
tmp=$(mktemp -d /tmp/sluice-setup-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
tree=$tmp/tree
mkdir -p "$tree" "$tmp/shim"

fail() { echo "test_setup: FAIL: $*" >&2; exit 1; }

# The tree without build folders or data: the files git knows (tracked and
# new, as they are now), or everything but build*/ and .git without git.
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z --cached --others --exclude-standard -- . ':!data' |
     while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
     tar --null -T - -cf -) | tar -xf - -C "$tree"
else
  tar -C "$src" --exclude=./.git --exclude='./build*' --exclude=./data -cf - . | tar -xf - -C "$tree"
fi
[ -x "$tree/scripts/setup" ] || fail "the copy has no scripts/setup"

# Stand-ins: apt-get and sudo record that they ran and fail; dpkg-query
# answers as the real one does, or says every package is missing.
for p in apt-get sudo; do
  printf '#!/bin/sh\necho "%s $*" >>"%s/ran"\nexit 1\n' "$p" "$tmp" >"$tmp/shim/$p"
done
real_dpkg_query=$(command -v dpkg-query || true)
cat >"$tmp/shim/dpkg-query" <<SH
#!/bin/sh
[ -n "\${SETUP_TEST_ALL_MISSING:-}" ] && exit 1
exec ${real_dpkg_query:-false} "\$@"
SH
chmod +x "$tmp/shim/"*
export PATH="$tmp/shim:$PATH"

# 1. An unknown option: exit 2 before anything is installed.
rc=0; SETUP_TEST_ALL_MISSING=1 "$tree/scripts/setup" --no-such-option >"$tmp/out1" 2>&1 || rc=$?
[ $rc -eq 2 ] || { cat "$tmp/out1"; fail "unknown option: exit $rc, not 2"; }
grep -q "unknown option --no-such-option" "$tmp/out1" || fail "unknown option: no message"
[ ! -e "$tmp/ran" ] || fail "unknown option: ran $(cat "$tmp/ran")"

# 2. --no-install with packages missing: an error naming them, no apt-get.
rc=0; SETUP_TEST_ALL_MISSING=1 "$tree/scripts/setup" --no-install >"$tmp/out2" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "--no-install with missing packages: exit 0"
grep -q "missing Debian packages.*libcmocka-dev" "$tmp/out2" || { cat "$tmp/out2"; fail "--no-install: no list"; }
[ ! -e "$tmp/ran" ] || fail "--no-install: ran $(cat "$tmp/ran")"

# 3. A broken source file in the first library built (so the build stops
# early): non-zero, with the compiler's error on the output.
echo '#error "setup-test: broken on purpose"' >>"$tree/common/sl_status.c"
rc=0
(cd "$tree" && scripts/setup --no-install) >"$tmp/out3" 2>&1 || rc=$?
cat "$tmp/out3"
[ $rc -ne 0 ] || fail "a broken build: setup exited 0"
grep -q "sl_status.c:[0-9]*:[0-9]*: error: #error \"setup-test: broken on purpose\"" "$tmp/out3" ||
  fail "a broken build: the compiler's error is not in setup's output"
grep -q "build ready" "$tmp/out3" && fail "a broken build: setup still says the build is ready"
[ ! -e "$tmp/ran" ] || fail "a broken build: ran $(cat "$tmp/ran")"
echo "test_setup: ok (exit $rc on the broken build)"
