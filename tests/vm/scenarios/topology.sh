# topology: `tierd topology --json` in the guest shows the test bed as the kernel sees it
# (3 nodes, the distance matrix, the HMAT figures, 3 kernel memory tiers), and
# `tierd path auto` prints exactly the demotion targets the kernel printed in dmesg.
# vm-timeout-s: 60

step "tierd topology --json"
json=$(tierd topology --json --state /tmp/paths.toml) || fail "tierd topology --json exited $?"
echo "$json"
tierd topology --state /tmp/paths.toml || fail "tierd topology exited $?"
flat=$(printf '%s' "$json" | tr -d ' \n\t')
has() {
	case "$flat" in
	*"$1"*) ;;
	*) fail "tierd topology --json lacks $1" ;;
	esac
}
has '"possible":"0-2"'
has '"online":"0-2"'
expect_eq "$(printf '%s' "$flat" | grep -o '"has_cpu":' | wc -l)" 3 "nodes in tierd topology --json"
has '"id":0,"online":true,"has_cpu":true,"has_memory":true,"distance":[10,20,30]'
has '"id":1,"online":true,"has_cpu":false,"has_memory":true,"distance":[20,10,20]'
has '"id":2,"online":true,"has_cpu":false,"has_memory":true,"distance":[30,20,10]'

# HMAT: what QEMU was told (latency in ns), and the kernel's own files for all four figures.
list() { printf '%s' "$flat" | grep -o "\"$1\":[0-9]*" | sed 's/.*://' | tr '\n' ' '; }
expect_eq "$(list read_latency_ns)" "80 180 350 " "HMAT read latencies (ns) of nodes 0 1 2"
for f in read_latency write_latency read_bandwidth write_bandwidth; do
	k=$(for n in 0 1 2; do cat /sys/devices/system/node/node$n/access0/initiators/$f; done | tr '\n' ' ')
	unit=ns
	case $f in *bandwidth) unit=mbps ;; esac
	expect_eq "$(list ${f}_$unit)" "$k" "tierd's $f vs the kernel's access0 files"
done
figure hmat_read_latency_ns "$(list read_latency_ns | tr ' ' '/' | sed 's|/$||')"
figure hmat_read_bandwidth_mbps "$(list read_bandwidth_mbps | tr ' ' '/' | sed 's|/$||')"

# Kernel tiers: the order tierd reports must be the kernel's memory_tierN order.
kt=$(printf '%s' "$flat" | sed -n 's/.*"kernel_tiers":\[\([^]]*\)\].*/\1/p' | grep -o '"nodes":"[^"]*"' | sed 's/.*:"//; s/"$//' | tr '\n' '|')
expect_eq "$kt" "0|1|2|" "kernel memory tiers in tierd topology --json"
sysfs_tiers=$(for d in /sys/devices/virtual/memory_tiering/memory_tier*; do
	echo "${d##*memory_tier} $(cat "$d/nodelist")"
done | sort -n | awk '{ printf "%s|", $2 }')
expect_eq "$kt" "$sysfs_tiers" "tierd's kernel tiers vs /sys/devices/virtual/memory_tiering"
figure kernel_tiers "${kt%|}"
# tierd's own derivation (from HMAT) must give the kernel's tiers, ids included.
sysfs_ids=$(for d in /sys/devices/virtual/memory_tiering/memory_tier*; do
	echo "${d##*memory_tier}:$(cat "$d/nodelist")"
done | sort -n | tr '\n' '|')
auto_ids=$(printf '%s' "$flat" | sed -n 's/.*"auto":{"source":"\([a-z_-]*\)","tiers":\[\([^]]*\)\].*/\2/p' |
	sed 's/"id":\([0-9]*\),"adistance":[0-9]*,"nodes":"\([^"]*\)"/\n\1:\2\n/g' | grep '^[0-9]' | tr '\n' '|')
expect_eq "$auto_ids" "$sysfs_ids" "tierd's derived tiers (id:nodes) vs the kernel's"
has '"auto":{"source":"hmat"'

step "tierd path auto vs the kernel's demotion targets"
auto=$(tierd path auto --state /tmp/paths.toml) || fail "tierd path auto exited $?"
echo "$auto"
mine=$(echo "$auto" | grep '^Demotion targets')
nodes=$(echo "$mine" | wc -l)
kernel=$(dmesg | sed 's/^\[[^]]*\] //' | grep '^Demotion targets' | tail -n "$nodes")
echo "kernel (dmesg):"
echo "$kernel"
expect_eq "$nodes" 3 "Demotion targets lines from tierd path auto"
expect_eq "$mine" "$kernel" "tierd path auto vs dmesg"
figure node0_targets "$(echo "$kernel" | sed -n 's/^Demotion targets for Node 0: //p' | tr -d ' ')"
