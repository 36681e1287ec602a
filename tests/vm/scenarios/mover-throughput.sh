# mover-throughput: tierd's mover (time-bounded batches, per-page status handling,
# placement verified by query after every batch) against a raw move_pages loop of the same
# batch size, on the same 256 MiB moved 0 -> 1 -> 0, in the same boot. Issue 5: at least 90%
# of the raw loop's pages/s.
# vm-timeout-s: 180

echo never >/sys/kernel/mm/transparent_hugepage/enabled
echo 0 >/proc/sys/kernel/numa_balancing
rate() { echo "$1" | grep "memload: migrate to=$2 " | sed -n 's/.*pages_per_s=\([0-9]*\).*/\1/p'; }
total_raw=0
total_mover=0
for round in 1 2; do
	for via in raw mover; do
		flag=""
		[ $via = mover ] && flag="--mover"
		out=$(tierd-memload migrate --size-mib 256 --bind 0 --path 1,0 --strict $flag)
		rc=$?
		echo "$out"
		[ $rc = 0 ] || fail "memload migrate via $via exited $rc"
		r=$(($(rate "$out" 1) + $(rate "$out" 0)))
		figure "round${round}_${via}_pages_per_s" "$((r / 2))"
		if [ $via = raw ]; then total_raw=$((total_raw + r)); else total_mover=$((total_mover + r)); fi
	done
done
figure mover_pct_of_raw "$((total_mover * 100 / total_raw))"
expect_ge "$((total_mover * 10))" "$((total_raw * 9))" "mover pages/s vs the raw loop's (at least 90%)"
