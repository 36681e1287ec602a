# daemon-pressure: zram swap on, the kernel's own demotion off, 600 MiB bound to node 0
# (512 MiB) with a 64 MiB hot part touched continuously. First the kernel alone (the
# reference: it swaps), then the same workload with `tierd run` (auto paths): tierd keeps
# node 0's headroom by demoting its coldest pages to node 1, so the kernel has nothing to
# swap. Checks: swap-outs at most 1% of the reference, at least 90% of the hot part on
# node 0 at the end, cold pages on node 1, every checksum holds, and tierd's moved pages
# (demoted plus promoted: pgmigrate_success counts every migration, and DAMON's region-level
# heat makes tierd promote 0-16 k pages here, varying from run to run) equal the kernel's
# pgmigrate_success delta within 1%.
# vm-timeout-s: 300

zram_swap_on 1G
# Base pages only: move_pages of one 4 KiB entry of a transparent huge page moves the whole
# huge page, which pgmigrate_success counts and tierd (counting the entries it asked for and
# saw move) does not, so the 1% comparison below needs THP off.
echo never >/sys/kernel/mm/transparent_hugepage/enabled
# Proactive compaction migrates whole pageblocks (512 pages) and pgmigrate_success counts
# them too: off, so that the counter below is tierd's moves alone.
echo 0 >/proc/sys/vm/compaction_proactiveness
echo false >/sys/kernel/mm/numa/demotion_enabled
echo 0 >/proc/sys/kernel/numa_balancing
LOAD="tierd-memload run --size-mib 600 --bind 0 --hot-pct 11 --fill-mib-per-s 32 --duration-s 15"

step "reference: the kernel alone"
out=$($LOAD)
echo "$out"
d=$(echo "$out" | grep 'memload: vmstat-delta')
ref=$(kv pswpout "$d")
figure reference_pswpout "$ref"
expect_ge "$ref" 5000 "the reference swaps (pswpout)"
sync
echo 3 >/proc/sys/vm/drop_caches
swapoff /dev/zram0 && swapon /dev/zram0

step "with tierd run"
tierd_config auto </dev/null
mig0=$(vmstat pgmigrate_success)
tierd_up
tierd status --socket /tmp/tierd/control.sock || fail "tierd status"
( while :; do echo "t=$(cut -d' ' -f1 /proc/uptime) pswpout=$(vmstat pswpout) pgmigrate_success=$(vmstat pgmigrate_success) node0_free_kb=$(awk '/MemFree/ {print $4}' /sys/devices/system/node/node0/meminfo)"; sleep 1; done ) &
sampler=$!
out=$($LOAD)
rc=$?
echo "$out"
kill $sampler
[ $rc = 0 ] || fail "tierd-memload exited $rc"
# The workload is gone: tierd has nothing left to move. Read both counters together.
sleep 1
tierd status --socket /tmp/tierd/control.sock
metrics=$(http_get 9877 /metrics)
echo "$metrics" | grep -E '^tierd_(demoted|promoted)_pages_total|^tierd_move_failures'
demoted=$(echo "$metrics" | awk '/^tierd_demoted_pages_total/ { s += $2 } END { print s + 0 }')
promoted=$(echo "$metrics" | awk '/^tierd_promoted_pages_total/ { s += $2 } END { print s + 0 }')
mig1=$(vmstat pgmigrate_success)
cost=$(tierd status --socket /tmp/tierd/control.sock --json | sed -n 's/.*"cpu_ms_per_gib_minute": *\([0-9.]*\).*/\1/p')
figure cpu_ms_per_gib_minute "${cost:-unknown}"
reap tierd || fail "tierd run exited non-zero on SIGTERM"

d=$(echo "$out" | grep 'memload: vmstat-delta')
end=$(echo "$out" | grep 'memload: placement at=end')
hot=$(echo "$out" | grep 'memload: placement-hot at=end')
sum=$(echo "$out" | grep 'memload: checksum')
pswpout=$(kv pswpout "$d")
hot_total=$(($(kv node0 "$hot") + $(kv node1 "$hot") + $(kv node2 "$hot") + $(kv absent "$hot")))
migrated=$((mig1 - mig0))
figure pswpout "$pswpout"
figure demoted "$demoted"
figure promoted "$promoted"
figure pgmigrate_success "$migrated"
figure hot_on_node0 "$(kv node0 "$hot")/$hot_total"
figure on_node1 "$(kv node1 "$end")"
expect_eq "$(kv bad "$sum")" 0 "pages with bad content"
expect_le "$pswpout" "$((ref / 100))" "swap-outs with tierd (at most 1% of the kernel-alone reference $ref)"
expect_ge "$(($(kv node0 "$hot") * 10))" "$((hot_total * 9))" "hot pages on node 0 (at least 90%)"
expect_ge "$(kv node1 "$end")" 10000 "cold pages on node 1"
moves=$((demoted + promoted))
diff=$((moves > migrated ? moves - migrated : migrated - moves))
expect_le "$((diff * 100))" "$migrated" "tierd's moved pages ($moves) vs the kernel's pgmigrate_success ($migrated), within 1%"
