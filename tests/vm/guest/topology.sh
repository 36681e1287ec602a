# Checks for the `topologies` scenarios (busybox sh), sourced after lib.sh: tierd's view of
# the booted machine against the kernel's own in the same boot, and a capture of the sysfs
# files tierd reads, which the harness compares with (or writes to) the scenario's fixture.

# The kernel log without timestamps.
kernel_log() { dmesg | sed 's/^\[[^]]*\] //'; }

# The last N lines of the kernel log that start with TEXT: kernel_last TEXT N. The kernel
# prints its demotion targets again whenever they change, and the zonelists again on memory
# hotplug: the last block is the one in force.
kernel_last() { kernel_log | grep "^$1" | sed 's/ *$//' | tail -n "$2"; }

# Prints FILE to the console for the harness under the fixture path REL:
# capture_as FILE REL. Lines are prefixed so that kernel messages in between do no harm.
capture_as() {
	[ -f "$1" ] || return 0
	echo "TIERD-VM: FILE $2"
	sed 's/^/TIERD-VM: | /' "$1"
	echo "TIERD-VM: END"
}

# Captures every file tierd's topology reader takes (and each node's cpulist), under the
# names a fixture tree uses (`sys/...`, `proc/...`).
capture_tree() {
	for f in /sys/devices/system/node/possible /sys/devices/system/node/online \
		/sys/devices/system/node/has_cpu /sys/devices/system/node/has_memory \
		/sys/devices/system/node/has_normal_memory /sys/devices/system/node/node[0-9]*/distance \
		/sys/devices/system/node/node[0-9]*/cpulist /sys/devices/system/node/node[0-9]*/meminfo \
		/sys/devices/system/node/node[0-9]*/access[01]/initiators/*_* \
		/sys/devices/virtual/memory_tiering/memory_tier*/nodelist \
		/sys/kernel/mm/numa/demotion_enabled /proc/sys/kernel/numa_balancing; do
		capture_as "$f" "${f#/}"
	done
}

# The HMAT figure F (read_latency, ...) of every memory node from the class tierd reads
# (access1, else access0), space-separated, or "-" for a node without one.
kernel_hmat() {
	for d in /sys/devices/system/node/node[0-9]*; do
		v=-
		for c in 1 0; do
			[ -f "$d/access$c/initiators/$1" ] && { v=$(cat "$d/access$c/initiators/$1"); break; }
		done
		printf '%s ' "$v"
	done
}

# The whole comparison: topology_check. Fails on the first difference.
topology_check() {
	step "tierd topology"
	tierd topology --state /tmp/paths.toml || fail "tierd topology exited $?"
	json=$(tierd topology --json --state /tmp/paths.toml) || fail "tierd topology --json exited $?"
	flat=$(printf '%s' "$json" | tr -d ' \n\t')

	step "nodes, distances and HMAT: tierd vs sysfs"
	expect_eq "$(printf '%s' "$flat" | sed -n 's/.*"online":"\([^"]*\)".*/\1/p' | head -n1)" \
		"$(cat /sys/devices/system/node/online)" "online nodes"
	for d in /sys/devices/system/node/node[0-9]*; do
		n=${d##*node}
		row=$(tr ' ' ',' <"$d/distance" | sed 's/,*$//')
		mine=$(printf '%s' "$flat" |
			grep -o "\"id\":$n,\"online\":true,\"has_cpu\":[a-z]*,\"has_memory\":[a-z]*,\"distance\":\[[0-9,]*\]" |
			sed 's/.*\[//; s/\]//')
		expect_eq "$mine" "$row" "node $n's distance row in tierd topology --json"
	done
	for f in read_latency write_latency read_bandwidth write_bandwidth; do
		unit=ns
		case $f in *bandwidth) unit=mbps ;; esac
		mine=$(printf '%s' "$flat" | sed 's/"hmat":null/"hmat":{"'"${f}_$unit"'":-}/g' |
			grep -o "\"${f}_$unit\":[-0-9]*" | sed 's/.*://' | tr '\n' ' ')
		expect_eq "$mine" "$(kernel_hmat $f)" "tierd's $f vs the kernel's access1/access0 files"
	done

	step "tiers: tierd vs /sys/devices/virtual/memory_tiering"
	sysfs_tiers=$(for d in /sys/devices/virtual/memory_tiering/memory_tier*; do
		echo "${d##*memory_tier}:$(cat "$d/nodelist")"
	done | sort -n | tr '\n' '|')
	read_tiers=$(printf '%s' "$flat" | sed -n 's/.*"kernel_tiers":\[\([^]]*\)\].*/\1/p' |
		sed 's/{"id":\([0-9]*\),"nodes":"\([^"]*\)"}/\1:\2/g; s/,\([0-9]*:\)/|\1/g')"|"
	expect_eq "$read_tiers" "$sysfs_tiers" "tierd's reading of the kernel tiers"
	auto_tiers=$(printf '%s' "$flat" | sed -n 's/.*"auto":{"source":"[^"]*","tiers":\[\([^]]*\)\].*/\1/p' |
		sed 's/"id":\([0-9]*\),"adistance":[0-9]*,"nodes":"\([^"]*\)"/\n\1:\2\n/g' | grep '^[0-9]' | tr '\n' '|')
	source=$(printf '%s' "$flat" | sed -n 's/.*"auto":{"source":"\([^"]*\)".*/\1/p')
	echo "kernel tiers: $sysfs_tiers tierd ($source): $auto_tiers"
	expect_eq "$auto_tiers" "$sysfs_tiers" "tierd's derived tiers (id:nodes, source $source) vs the kernel's"
	figure tiers "$(echo "$sysfs_tiers" | sed 's/[0-9]*://g; s/|$//')"
	figure source "$(echo "$source" | tr ' ' '_')"

	step "tierd path auto vs the kernel's log"
	auto=$(tierd path auto --state /tmp/paths.toml) || fail "tierd path auto exited $?"
	echo "$auto"
	mine=$(echo "$auto" | grep '^Demotion targets')
	nodes=$(echo "$mine" | wc -l)
	kernel=$(kernel_last 'Demotion targets' "$nodes")
	echo "kernel:"
	echo "$kernel"
	expect_eq "$mine" "$kernel" "tierd path auto vs the kernel's Demotion targets lines"
	mine=$(echo "$auto" | sed -n 's/^  \(Fallback order .*\)/\1/p')
	kernel_zl=$(kernel_last 'Fallback order' "$(echo "$mine" | wc -l)")
	echo "$kernel_zl"
	expect_eq "$mine" "$kernel_zl" "tierd's boot zonelists vs the kernel's Fallback order lines"
	figure demotion_lines "$nodes"

	step "capture"
	kernel_log | grep -E '^(Demotion targets|Fallback order)' | sed 's/ *$//' >/tmp/kernel-log.txt
	capture_as /tmp/kernel-log.txt expected/kernel-log.txt
	capture_tree
}

# Captures the kernel log's zonelist builds as `dev/kmsg` (records in /dev/kmsg's format),
# for a machine whose zonelists were rebuilt after boot, which no replay of the boot can know.
capture_kmsg() {
	# "Built N zonelists" without the rest: its page count changes from boot to boot.
	kernel_log | grep -E '^(Fallback order for Node|Built [0-9]+ zonelists)' |
		sed 's/^\(Built [0-9]* zonelists\).*/\1/; s/^/6,0,0,-;/' >/tmp/kmsg.txt
	capture_as /tmp/kmsg.txt dev/kmsg
}

# Fails unless the kernel's last demotion targets include LINE exactly: want_kernel_line LINE.
# Each machine says what it is for, so that a kernel that no longer builds it that way is
# noticed even when tierd follows it.
want_kernel_line() {
	kernel_last 'Demotion targets' 64 | grep -qxF "$1" || fail "the kernel did not print '$1'"
}
