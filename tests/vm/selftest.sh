#!/usr/bin/env bash
# Self-test of the test-bed harness (issue 3): breaking the guest on purpose must fail
# tests/vm/run.sh with a clear message, and a passing scenario must pass.
#
#   tests/vm/selftest.sh        about 40 s; prints `vm-selftest: N passed, M failed`
#
# Each case runs the harness on one deliberately written scenario from tests/vm/selftest/
# and checks its exit status and the reason it prints.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RUN=$HERE/run.sh
passed=0
failed=0
build=()

# check NAME WANT_STATUS WANT_REGEX: runs the harness on NAME, checks its exit status and
# that one line of its output matches WANT_REGEX (grep -E).
check() {
	local name=$1 want_rc=$2 want=$3 out rc=0
	out=$("$RUN" "${build[@]}" "$name" 2>&1) || rc=$?
	build=(--no-build)
	if [[ $rc != "$want_rc" ]]; then
		echo "vm-selftest: $name FAIL: harness exited $rc, want $want_rc"
	elif ! grep -qE -- "$want" <<<"$out"; then
		echo "vm-selftest: $name FAIL: harness output lacks '$want'"
	else
		echo "vm-selftest: $name ok (exit $rc): $(grep -m1 -E -- "$want" <<<"$out")"
		passed=$((passed + 1))
		return 0
	fi
	tail -n 25 <<<"$out" | sed 's/^/    | /'
	failed=$((failed + 1))
}

check pass 0 '^vm: pass PASS \([0-9.]+s\) answer=42$'
check fail-exit 1 '^vm: fail-exit FAIL \([0-9.]+s\): scenario failed \(rc=3\)$'
check fail-panic 1 '^vm: fail-panic FAIL \([0-9.]+s\): guest kernel panic: sysrq triggered crash'
check fail-hang 1 '^vm: fail-hang FAIL \([0-9.]+s\): timeout: no result within 15s'
check no-such-scenario 2 "unknown scenario 'no-such-scenario'"
echo "vm-selftest: $passed passed, $failed failed"
[[ $failed == 0 ]]
