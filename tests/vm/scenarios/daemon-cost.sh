# daemon-cost: what tierd's userspace loop costs in CPU against the kernel threads that do
# the same work, in the same boot (compare ratios: TCG slows everything alike).
#  1. Demotion: the daemon-pressure load (600 MiB bound to node 0, 32 MiB/s) with the
#     kernel's demotion alone: kswapd0's CPU per page it demoted (pgdemote_kswapd). Then the
#     same load with tierd alone ([daemon] backstop = "off", so every page is tierd's): tierd's
#     CPU per page it moved. Target: tierd at most 2x kswapd.
#  2. Tracking: 300 MiB on node 0, 1% of it touched 1000 times a second, for 15 s: tierd's
#     CPU per GiB tracked per minute against the kdamond thread's (the kernel side of the
#     same DAMON context), with 200 ms loops and with the default 1000 ms. Target: tierd at
#     most kdamond.
# The figures are printed, and kept in the README; only sanity is checked here (each side
# did the work), because the targets are what the project works towards, not a gate.
# Under the thp variant (THP `always`) the same loads run mostly in 2 MiB pages: tierd's
# figure is per base page it moved, a huge page counted as its 512.
# vm-timeout-s: 240

daemon_setup
LOAD="tierd-memload run --size-mib 600 --bind 0 --hot-pct 11 --fill-mib-per-s 32 --duration-s 15"

step "the kernel's demotion alone"
echo true >/sys/kernel/mm/numa/demotion_enabled
kswapd=$(thread_pid kswapd0) || fail "no kswapd0 thread"
k0=$(cpu_ticks "$kswapd")
dem0=$(vmstat pgdemote_kswapd)
out=$($LOAD) || fail "tierd-memload (kernel demotion) failed"
echo "$out" | grep -E 'vmstat-delta|checksum'
k_ticks=$(($(cpu_ticks "$kswapd") - k0))
k_pages=$(($(vmstat pgdemote_kswapd) - dem0))
expect_ge "$k_pages" 10000 "pages kswapd demoted"
echo false >/sys/kernel/mm/numa/demotion_enabled
sync
echo 3 >/proc/sys/vm/drop_caches
swapoff /dev/zram0 && swapon /dev/zram0

step "tierd alone (backstop off)"
echo 'backstop = "off"' | tierd_config auto
tierd_up
tpid=$(cat /tmp/tierd.pid)
t0=$(cpu_ticks "$tpid")
out=$($LOAD) || fail "tierd-memload (tierd) failed"
echo "$out" | grep -E 'vmstat-delta|checksum'
t_ticks=$(($(cpu_ticks "$tpid") - t0))
metrics=$(http_get 9877 /metrics)
t_pages=$(echo "$metrics" | awk '/^tierd_(demoted|promoted|repaired)_pages_total/ { s += $2 } END { print s + 0 }')
expect_ge "$t_pages" 10000 "pages tierd moved"
figure kswapd_us_per_page "$(per_item_us "$k_ticks" "$k_pages")"
figure tierd_us_per_page "$(per_item_us "$t_ticks" "$t_pages")"
figure demotion_cpu_ratio_pct "$((t_ticks * k_pages * 100 / (k_ticks * t_pages + 1)))"

# The idle phase runs twice: with the test bed's 200 ms loops, and with the default
# [daemon] interval_ms (1000 ms): tierd reads DAMON's regions once per loop, while kdamond
# samples every 5 ms whatever tierd does.
reap tierd || fail "tierd run exited non-zero on SIGTERM"
wait_for_line() {
	i=0
	until grep -q "$2" "$1"; do
		i=$((i + 1))
		[ $i -gt 600 ] && fail "no '$2' in $1 within 60 s"
		usleep 100000
	done
}
for interval in 200 1000; do
	step "tracking an idle workload, ${interval} ms loops"
	echo 'backstop = "off"' | tierd_config auto
	sed -i "s/^interval_ms = 200$/interval_ms = $interval/" /tmp/tierd.toml
	tierd_up
	tpid=$(cat /tmp/tierd.pid)
	spawn idle tierd-memload run --size-mib 300 --bind 0 --hot-pct 1 --rate 1000 --duration-s 25
	wait_for_line /tmp/idle.log 'memload: placement at=filled'
	# The tracker takes the process in after a second and DAMON starts its thread then.
	sleep 3
	kd=$(thread_pid kdamond.0) || fail "no kdamond.0 thread while tierd tracks the workload"
	t0=$(cpu_ticks "$tpid")
	d0=$(cpu_ticks "$kd")
	sleep 15
	t_ticks=$(($(cpu_ticks "$tpid") - t0))
	d_ticks=$(($(cpu_ticks "$kd") - d0))
	tracked=$(tierd status --json --socket /tmp/tierd/control.sock | sed -n 's/.*"tracked_mib": *\([0-9]*\).*/\1/p')
	# The workload ends on its own (25 s in all); then its report.
	wait "$(cat /tmp/idle.pid)"
	cat /tmp/idle.log
	grep -q 'memload: checksum pages=76800 bad=0' /tmp/idle.log || fail "the idle workload's checksums"
	reap tierd || fail "tierd run exited non-zero on SIGTERM"
	expect_ge "${tracked:-0}" 200 "MiB tierd tracked"
	# ms per GiB per minute over 15 s: ticks * 10 ms / (tracked / 1024 GiB * 0.25 min).
	figure "tracked_mib_${interval}ms" "$tracked"
	figure "tierd_idle_ms_per_gib_minute_${interval}ms" "$((t_ticks * 10 * 1024 * 4 / tracked))"
	figure "kdamond_idle_ms_per_gib_minute_${interval}ms" "$((d_ticks * 10 * 1024 * 4 / tracked))"
	figure "tracking_cpu_ratio_pct_${interval}ms" "$((t_ticks * 100 / (d_ticks + 1)))"
done
