#!/usr/bin/env bash
# The systemd units' command lines as systemd would run them: Environment=
# defaults expanded into ExecStart's ${VAR}s, %S and %H/%i specifiers
# replaced, the installed path swapped for this build's. Each program must
# accept them (--print-config parses everything and exits), and the
# scheduler's must come out as the production setting: learned with admission.
#   test_units.sh UNIT_DIR BIN_DIR
set -euo pipefail
units=$1 bin=$2
fail() { echo "FAIL: $*"; exit 1; }

# command_of UNIT: its ExecStart, expanded.
command_of() {
  local unit=$1 line env
  line=$(sed -n 's/^ExecStart=//p' "$unit")
  [ -n "$line" ] || fail "$unit has no ExecStart"
  for env in $(sed -n 's/^Environment=//p' "$unit"); do
    line=${line//\$\{${env%%=*}\}/${env#*=}}
  done
  line=${line//%S/\/var\/lib}
  line=${line//%H/testhost}
  line=${line//%i/0}
  [[ $line != *'${'* ]] || fail "$unit: ExecStart uses a variable no Environment= line sets: $line"
  echo "${line//\/usr\/local\/bin\//$bin/}"
}

for unit in "$units"/*.service; do
  cmd=$(command_of "$unit")
  echo "$(basename "$unit"): $cmd"
  # Only the unit's own settings: none of the caller's SLUICE_* variables.
  config=$(env $(env | sed -n 's/^\(SLUICE_[A-Z_]*\)=.*/-u \1/p') $cmd --print-config) ||
    fail "$(basename "$unit"): its ExecStart is refused"
  case "$(basename "$unit")" in
    sluice-scheduler.service)
      grep -qx 'policy = learned' <<<"$config" || fail "the scheduler unit does not run learned"
      grep -qx 'admission = true' <<<"$config" || fail "the scheduler unit runs without admission"
      grep -qx 'state-file = /var/lib/sluice/scheduler.state' <<<"$config" ||
        fail "the scheduler unit keeps no state file in its StateDirectory"
      grep -qx 'StateDirectory=sluice' "$unit" || fail "the scheduler unit has no StateDirectory" ;;
  esac
done
echo PASS
