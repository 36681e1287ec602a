# Helpers for test-bed scenarios (busybox sh), sourced before each scenario.
# A scenario fails by exiting non-zero; `fail` also says why, and the harness prints it.

# Prints a figure for the harness's PASS/FAIL line: figure NAME VALUE.
figure() { echo "TIERD-VM: FIGURE $1=$2"; }

# Fails the scenario with a reason: fail MESSAGE...
fail() {
	echo "TIERD-VM: FAIL-REASON $*"
	exit 1
}

# Prints a step header in the console log.
step() { echo "--- $*"; }

# The value of KEY in a `key=value ...` line: kv KEY LINE. Absent keys are 0.
kv() {
	v=$(printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n1)
	echo "${v:-0}"
}

# The value of a /proc/vmstat counter: vmstat KEY.
vmstat() { awk -v k="$1" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' /proc/vmstat; }

# Checks: expect_eq ACTUAL EXPECTED WHAT, expect_ge ACTUAL MIN WHAT, expect_le ACTUAL MAX WHAT.
expect_eq() { [ "$1" = "$2" ] || fail "$3: got '$1', want '$2'"; }
expect_ge() { [ "$1" -ge "$2" ] || fail "$3: got $1, want >= $2"; }
expect_le() { [ "$1" -le "$2" ] || fail "$3: got $1, want <= $2"; }

# Loads the initramfs's kernel modules (zram and fuse with their dependencies) in order.
load_modules() {
	while read -r m; do
		grep -q "^$m " /proc/modules || insmod "/lib/modules/$m.ko" || fail "insmod $m"
	done </lib/modules/order
}

# Turns on zram swap of SIZE (for example 1G).
zram_swap_on() {
	load_modules
	[ -e /sys/block/zram0 ] || fail "no zram0 after loading zram"
	echo "$1" >/sys/block/zram0/disksize || fail "zram disksize $1"
	mkswap /dev/zram0 >/dev/null || fail "mkswap /dev/zram0"
	swapon /dev/zram0 || fail "swapon /dev/zram0"
}

# Waits up to SECS seconds for a file to exist: wait_for FILE SECS.
wait_for() {
	i=0
	while [ ! -e "$1" ]; do
		i=$((i + 1))
		[ $i -gt $(($2 * 10)) ] && return 1
		usleep 100000
	done
}
