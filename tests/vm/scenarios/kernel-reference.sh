# kernel-reference: the kernel's own behaviour under memory pressure, the peer figures the
# daemon is held against. zram swap on; 600 MiB bound to node 0 (512 MiB), once with
# demotion_enabled=false (expect swap-outs, no demotion) and once true (expect demotions to
# node 1, no swap-outs). Prints the pswpout, pgdemote_* and pgmigrate_success deltas.
# vm-timeout-s: 180

zram_swap_on 1G
for demote in false true; do
	step "600 MiB bound to node 0, demotion_enabled=$demote"
	echo $demote >/sys/kernel/mm/numa/demotion_enabled
	sync
	echo 3 >/proc/sys/vm/drop_caches
	out=$(tierd-memload run --size-mib 600 --bind 0)
	rc=$?
	echo "$out"
	[ $rc = 0 ] || fail "tierd-memload run (demotion $demote) exited $rc"
	d=$(echo "$out" | grep 'memload: vmstat-delta')
	end=$(echo "$out" | grep 'memload: placement at=end')
	sum=$(echo "$out" | grep 'memload: checksum')
	pswpout=$(kv pswpout "$d")
	demoted=$(($(kv pgdemote_kswapd "$d") + $(kv pgdemote_direct "$d")))
	migrated=$(kv pgmigrate_success "$d")
	figure "demotion_${demote}_pswpout" "$pswpout"
	figure "demotion_${demote}_pgdemote_kswapd" "$(kv pgdemote_kswapd "$d")"
	figure "demotion_${demote}_pgdemote_direct" "$(kv pgdemote_direct "$d")"
	figure "demotion_${demote}_pgmigrate_success" "$migrated"
	figure "demotion_${demote}_on_node1" "$(kv node1 "$end")"
	expect_eq "$(kv bad "$sum")" 0 "pages with bad content (demotion $demote)"
	if [ $demote = false ]; then
		expect_ge "$pswpout" 10000 "pswpout with demotion off"
		expect_eq "$demoted" 0 "pages demoted with demotion off"
	else
		expect_ge "$demoted" 10000 "pages demoted with demotion on"
		expect_ge "$(kv node1 "$end")" 10000 "pages on node 1 with demotion on"
		expect_eq "$pswpout" 0 "pswpout with demotion on"
	fi
done
