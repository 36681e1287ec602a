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

# Starts CMD... in the background with its output in /tmp/NAME.log: spawn NAME CMD...
spawn() {
	name=$1
	shift
	"$@" >"/tmp/$name.log" 2>&1 &
	echo $! >"/tmp/$name.pid"
}

# Stops what spawn NAME started (SIGTERM, or the signal named in REAP_SIG, then SIGKILL
# after SECS, default 10), prints its log, and returns its exit status: reap NAME [SECS].
reap() {
	pid=$(cat "/tmp/$1.pid")
	kill -"${REAP_SIG:-TERM}" "$pid" 2>/dev/null
	i=0
	while kill -0 "$pid" 2>/dev/null; do
		i=$((i + 1))
		if [ $i -gt $((${2:-10} * 10)) ]; then
			echo "$1 (pid $pid) ignored SIG${REAP_SIG:-TERM} for ${2:-10} s: SIGKILL"
			kill -KILL "$pid"
		fi
		usleep 100000
	done
	wait "$pid"
	rc=$?
	echo "--- log of $1 (exit $rc)"
	cat "/tmp/$1.log"
	return $rc
}

# Waits up to SECS for PID, a child of this shell, to end and returns its exit status; fails
# the scenario, naming WHAT, when it does not end in time: wait_exit PID SECS WHAT.
wait_exit() {
	i=0
	while kill -0 "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -gt $(($2 * 10)) ] && fail "$3 did not end within $2 s"
		usleep 100000
	done
	wait "$1"
}

# Runs CMD... while the shell command SAMPLE prints a line every SECS seconds into the
# console; sets OUT to CMD's output (also printed) and RC to its exit status:
# sampled_run SECS SAMPLE CMD...
sampled_run() {
	secs=$1
	sample=$2
	shift 2
	(while :; do eval "$sample"; sleep "$secs"; done) &
	sampler=$!
	OUT=$("$@")
	RC=$?
	echo "$OUT"
	kill $sampler
}

# The setting of the daemon scenarios that compare with the kernel alone: zram swap of 1 GiB,
# THP as the variant says (thp_setting), NUMA balancing off: daemon_setup.
daemon_setup() {
	zram_swap_on 1G
	thp_setting
	echo 0 >/proc/sys/kernel/numa_balancing
}

# Prints an HTTP resource on the guest's loopback: http_get PORT PATH.
http_get() { wget -q -O - "http://127.0.0.1:$1$2"; }

# The daemon scenarios' tierd configuration, written to /tmp/tierd.toml: paths from SOURCE
# ("auto" or a graph file) saved in /tmp/tierd/paths.toml, 10% headroom, 200 ms loops, the
# control socket /tmp/tierd/control.sock, metrics on 127.0.0.1:9877, an unthrottled mover
# and promotion held 2 s. TOML on standard input is appended: lines before its first table
# header go into [daemon] (for example `mount = ...`), and a [mover] or [promotion] table
# there replaces the default one: tierd_config SOURCE <<TOML ... TOML (or </dev/null).
tierd_config() {
	extra=$(cat)
	mkdir -p /tmp/tierd
	{
		printf '[paths]\nsource = "%s"\nstate = "/tmp/tierd/paths.toml"\n' "$1"
		printf '[headroom]\ndefault_pct = 10.0\n'
		echo "$extra" | grep -q '^\[mover\]' || printf '[mover]\nmax_mib_per_s = 0\n'
		echo "$extra" | grep -q '^\[promotion\]' || printf '[promotion]\nmin_residence_ms = 2000\n'
		printf '[daemon]\ninterval_ms = 200\nsocket = "/tmp/tierd/control.sock"\n'
		printf 'metrics_addr = "127.0.0.1:9877"\n'
		[ -z "$extra" ] || echo "$extra"
	} >/tmp/tierd.toml
}

# Starts `tierd run --config /tmp/tierd.toml` (spawn name tierd, so /tmp/tierd.log; TIERD_LOG
# from the environment, else info) and waits up to 30 s for its control socket, then up to
# 10 s for FILE if given: tierd_up [FILE].
tierd_up() {
	spawn tierd env TIERD_LOG="${TIERD_LOG:-info}" tierd run --config /tmp/tierd.toml
	if ! wait_for /tmp/tierd/control.sock 30 || { [ -n "$1" ] && ! wait_for "$1" 10; }; then
		cat /tmp/tierd.log
		fail "tierd run did not open its control socket${1:+ and $1} in time"
	fi
}

# The kernel-alone reference of a daemon scenario, measured first in the same boot (and under
# the same variant, the hog included): runs CMD... with the kernel's demotion off and no
# tierd, prints its output, sets REF to its swap-outs (figure reference_pswpout) and fails
# when it does not swap; then drops the page cache and empties the swap for the next phase.
# reference_run CMD...
reference_run() {
	step "reference: the kernel alone"
	echo false >/sys/kernel/mm/numa/demotion_enabled
	ref_out=$("$@")
	echo "$ref_out"
	REF=$(kv pswpout "$(echo "$ref_out" | grep 'memload: vmstat-delta')")
	figure reference_pswpout "$REF"
	expect_ge "$REF" 5000 "the reference swaps (pswpout)"
	sync
	echo 3 >/proc/sys/vm/drop_caches
	swapoff /dev/zram0 && swapon /dev/zram0
}

# CPU time of a process or thread so far, clock ticks (utime + stime): cpu_ticks PID.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# The pid of the kernel thread (or process) named NAME: thread_pid NAME.
thread_pid() {
	for d in /proc/[0-9]*; do
		[ "$(cat "$d/comm" 2>/dev/null)" = "$1" ] && { echo "${d#/proc/}"; return 0; }
	done
	return 1
}

# Microseconds per item: per_item_us TICKS ITEMS (clock ticks of 1/100 s; "-" for no items).
per_item_us() {
	if [ "$2" -gt 0 ]; then echo $(($1 * 10000 / $2)); else echo -; fi
}

# The backstop tierd reports (mechanism), from `tierd status --json`: tierd_backstop.
tierd_backstop() {
	tierd status --json --socket /tmp/tierd/control.sock | sed -n 's/.*"backstop": *"\([^"]*\)".*/\1/p'
}

# The sum of the series of a metric family in a /metrics text: metric_sum FAMILY TEXT.
metric_sum() { echo "$2" | awk -v f="$1" 'index($0, f) == 1 && substr($0, length(f) + 1, 1) ~ /[{ ]/ { s += $NF } END { print s + 0 }'; }

# A kernel counter as tierd mirrored it in a /metrics text: mirrored COUNTER TEXT.
mirrored() { echo "$2" | awk -v c="counter=\"$1\"" '/^tierd_kernel_vmstat\{/ && index($0, c) { print $NF; f = 1 } END { if (!f) print 0 }'; }

# From one /metrics snapshot, two numbers: tierd's moved pages (demoted, promoted, repaired)
# and the kernel's migrations less its own demotions, as of the same loop: moves_and_kernel TEXT.
moves_and_kernel() {
	t=$(($(metric_sum tierd_demoted_pages_total "$1") + $(metric_sum tierd_promoted_pages_total "$1") + $(metric_sum tierd_repaired_pages_total "$1")))
	k=$(($(mirrored pgmigrate_success "$1") - $(mirrored pgdemote_kswapd "$1") - $(mirrored pgdemote_direct "$1") - $(mirrored pgdemote_khugepaged "$1")))
	echo "$t $k"
}

# The THP setting a scenario runs under: `always` under the thp variant (Debian's default),
# else `never`; thp_setting also writes it: thp_setting.
thp_setting() {
	mode=never
	[ "$TIERD_VM_VARIANT" = thp ] && mode=always
	echo $mode >/sys/kernel/mm/transparent_hugepage/enabled
	echo "THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled)"
}

# The hot-part check of the daemon scenarios: at least 90% of the workload's hot part on
# node 0 at the end: hot_on_node0_check ON_NODE0 TOTAL. Under the hog variant it is a figure
# and a note, not a failure: a workload starved by the hogs touches its hot part so slowly
# (a 64 MiB part about once in 8 s) that DAMON's 100 ms windows see it as cold, so pages
# the kernel's backstop demoted from it come back only slowly. The no-swap promise, the
# user's path and the checksums stay checks under the hog.
hot_on_node0_check() {
	if [ "$TIERD_VM_VARIANT" = hog ]; then
		[ $(($1 * 10)) -ge $(($2 * 9)) ] ||
			echo "TIERD-VM: NOTE hot pages on node 0 under the hog: $1 of $2 (below 90%; a figure here, not a check)"
		return 0
	fi
	expect_ge "$(($1 * 10))" "$(($2 * 9))" "hot pages on node 0 (at least 90%)"
}

# The kernel's own count of pages migrated by move_pages(2) and friends (reason
# syscall_or_cpuset), from the migrate:mm_migrate_pages tracepoint: an exact reference for
# tierd's counters, which pgmigrate_success is not (it also counts compaction and
# demotion). trace_migrations_on before; trace_migrations_off after sets SYSCALL_MIGRATED,
# and fails the scenario when the trace buffer lost events.
TRACING=/sys/kernel/debug/tracing
trace_migrations_on() {
	[ -d $TRACING/events/migrate/mm_migrate_pages ] || fail "no migrate:mm_migrate_pages tracepoint in $TRACING"
	echo 16384 >$TRACING/buffer_size_kb
	echo >$TRACING/trace
	echo 1 >$TRACING/events/migrate/mm_migrate_pages/enable
}
trace_migrations_off() {
	echo 0 >$TRACING/events/migrate/mm_migrate_pages/enable
	counts=$(sed -n 's/^# entries-in-buffer\/entries-written: \([0-9]*\)\/\([0-9]*\).*/\1 \2/p' $TRACING/trace | head -n1)
	[ -n "$counts" ] || fail "no entries-in-buffer line in $TRACING/trace"
	[ "${counts% *}" = "${counts#* }" ] || fail "the migration trace buffer lost events (in buffer/written: $counts)"
	SYSCALL_MIGRATED=$(awk '/mm_migrate_pages:/ && / reason=syscall_or_cpuset/ { for (i = 1; i <= NF; i++) if ($i ~ /^nr_succeeded=/) { split($i, a, "="); s += a[2] } } END { print s + 0 }' $TRACING/trace)
}
