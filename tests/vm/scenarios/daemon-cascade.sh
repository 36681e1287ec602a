# daemon-cascade: node 1 is already nearly full when node 0 comes under pressure. A first
# workload bound to node 1 holds 440 of its 512 MiB, almost all cold; then 600 MiB bound to
# node 0 with a 64 MiB hot part, as in daemon-pressure (zram swap on, auto paths
# 0 -> 1 -> 2, the kernel's demotion as tierd's backstop). tierd keeps both headrooms: node
# 1's cold pages continue to node 2 while node 0's go to node 1. Checks: at least 10k pages
# moved 1 -> 2 and 0 -> 1 (tierd's moves, plus the backstop's demotions from that node when
# a starved loop left them to it), at least 10k pages of the two workloads are on node 2
# at the end, node 0's swap-outs are at most 1% of the kernel's alone (measured first, in
# the same boot and under the same variant), at least 90% of node 0's hot part is on node
# 0, and every checksum of both workloads holds.
# vm-timeout-s: 300

daemon_setup
LOAD="tierd-memload run --size-mib 600 --bind 0 --hot-pct 11 --fill-mib-per-s 32 --duration-s 15"

reference_run $LOAD
ref=$REF
kdem0=$(($(vmstat pgdemote_kswapd) + $(vmstat pgdemote_direct)))
# The kernel's demotions from node N alone (per-node vmstat counts them on the source
# node): node_demoted N. Kernels without per-node demotion counters: the global ones.
node_demoted() {
	f=/sys/devices/system/node/node$1/vmstat
	grep -q '^pgdemote_kswapd ' $f || f=/proc/vmstat
	awk '$1 == "pgdemote_kswapd" || $1 == "pgdemote_direct" { s += $2 } END { print s + 0 }' $f
}
k0dem0=$(node_demoted 0)
k1dem0=$(node_demoted 1)

step "with tierd run"
tierd_config auto </dev/null
TIERD_LOG=info,tierd=debug tierd_up
tierd status --socket /tmp/tierd/control.sock || fail "tierd status"

step "node 1 nearly full: 440 MiB bound to node 1, cold (1% touched 100 times a second)"
spawn node1load tierd-memload run --size-mib 440 --bind 1 --hot-pct 1 --rate 100 --duration-s 50
i=0
until grep -q 'memload: placement at=filled' /tmp/node1load.log; do
	i=$((i + 1))
	[ $i -gt 600 ] && fail "the node 1 workload did not fill within 60 s"
	usleep 100000
done
cat /tmp/node1load.log
echo "node1 free after the fill: $(awk '/MemFree/ {print $4}' /sys/devices/system/node/node1/meminfo) kB"

step "600 MiB on node 0"
sampled_run 2 'echo "t=$(cut -d" " -f1 /proc/uptime) pswpout=$(vmstat pswpout) node0_free_kb=$(awk "/MemFree/ {print \$4}" /sys/devices/system/node/node0/meminfo) node1_free_kb=$(awk "/MemFree/ {print \$4}" /sys/devices/system/node/node1/meminfo) node2_free_kb=$(awk "/MemFree/ {print \$4}" /sys/devices/system/node/node2/meminfo)"' $LOAD
out=$OUT
[ $RC = 0 ] || fail "tierd-memload (node 0) exited $RC"
# The node 1 workload ends on its own (its duration) with its report.
wait_exit "$(cat /tmp/node1load.pid)" 90 "the node 1 workload"
rc1=$?
cat /tmp/node1load.log
[ $rc1 = 0 ] || fail "tierd-memload (node 1) exited $rc1"
tierd status --socket /tmp/tierd/control.sock
metrics=$(http_get 9877 /metrics)
echo "$metrics" | grep -E '^tierd_(demoted|promoted)_pages_total|^tierd_move_failures|^tierd_housekeeping'
echo "$metrics" | grep -q '^tierd_housekeeping_backlog_pages [0-9]' || fail "no tierd_housekeeping_backlog_pages in /metrics"
reap tierd || fail "tierd run exited non-zero on SIGTERM"

edge() { echo "$metrics" | awk -v f="from=\"$1\"" -v t="to=\"$2\"" '/^tierd_(demoted|promoted)_pages_total/ && index($0, f) && index($0, t) { s += $2 } END { print s + 0 }'; }
d=$(echo "$out" | grep 'memload: vmstat-delta')
end0=$(echo "$out" | grep 'memload: placement at=end')
hot=$(echo "$out" | grep 'memload: placement-hot at=end')
end1=$(grep 'memload: placement at=end' /tmp/node1load.log)
pswpout=$(kv pswpout "$d")
hot_total=$(($(kv node0 "$hot") + $(kv node1 "$hot") + $(kv node2 "$hot") + $(kv absent "$hot")))
on2=$(($(kv node2 "$end0") + $(kv node2 "$end1")))
figure pswpout "$pswpout"
kdem=$(($(vmstat pgdemote_kswapd) + $(vmstat pgdemote_direct) - kdem0))
k0dem=$(($(node_demoted 0) - k0dem0))
k1dem=$(($(node_demoted 1) - k1dem0))
figure kernel_demoted "$kdem"
figure kernel_demoted_from_node0 "$k0dem"
figure kernel_demoted_from_node1 "$k1dem"
figure moved_0to1 "$(edge 0 1)"
figure moved_1to2 "$(edge 1 2)"
figure moved_0to2 "$(edge 0 2)"
figure node1load_on_node2 "$(kv node2 "$end1")"
figure node0load_on_node1 "$(kv node1 "$end0")"
figure node0load_on_node2 "$(kv node2 "$end0")"
figure hot_on_node0 "$(kv node0 "$hot")/$hot_total"
expect_eq "$(kv bad "$(echo "$out" | grep 'memload: checksum')")" 0 "node 0 workload: pages with bad content"
expect_eq "$(kv bad "$(grep 'memload: checksum' /tmp/node1load.log)")" 0 "node 1 workload: pages with bad content"
# Node 1's cold pages go on to node 2 in the same way: tierd's demotions, and under a
# starved loop also the backstop's from node 1 (one run with the hog and a busy host:
# tierd 8 754, the backstop 7 056).
expect_ge "$(($(edge 1 2) + k1dem))" 10000 "1 -> 2 demotions, tierd's ($(edge 1 2)) and the kernel backstop's from node 1 ($k1dem)"
# Node 0's cold pages go to node 1: tierd's demotions, and under a starved loop also the
# kernel's backstop (it demotes node 0 to node 1, its preferred target), which then does
# part of tierd's work (one run with the hog: tierd 6 401, the backstop 29 654).
expect_ge "$(($(edge 0 1) + k0dem))" 10000 "0 -> 1 demotions, tierd's ($(edge 0 1)) and the kernel backstop's from node 0 ($k0dem)"
expect_ge "$on2" 10000 "pages of the two workloads on node 2"
expect_le "$pswpout" "$((ref / 100))" "swap-outs with tierd (at most 1% of the kernel-alone reference $ref)"
hot_on_node0_check "$(kv node0 "$hot")" "$hot_total"
