# daemon-promote: pages tierd demoted earlier turn hot and come back. 600 MiB bound to node 0
# (512 MiB) with a 36 MiB hot part (zram swap on, the kernel's demotion off, auto paths):
# tierd demotes the coldest pages to node 1 while the buffer fills. 12 s into the touching,
# the workload moves its hot part onto pages tierd had demoted (`--hot-after-s 12
# --hot-to-node 1`: the 36 MiB run with the most pages on node 1) and the first ones turn
# cold. Checks: at the switch at least 16 MiB of the new hot part is off node 0; at least 90%
# of it is back on node 0 within 10 s; promotion stays within `[promotion] max_mib_per_s`
# (tierd's promoted-pages counter sampled every half second: over every window of 2 s or
# more, at most the rate plus two loops' budget, which the policy may carry over); no
# watched page (both hot parts, placed by a query every second by the workload) changes node
# twice within `min_residence_ms` (less 1.5 s: the workload's reports can be that far
# apart); every checksum holds.
# The policy's budget is per loop, computed for `interval_ms` (200 ms); under TCG a loop
# takes 500-800 ms (DAMON's sample alone waits 200-340 ms), so tierd promotes at about a
# quarter of the cap (peak 16-17 MiB/s at 64 MiB/s): the cap is set high enough for the
# 10 s, and the rate check holds all the more.
# vm-timeout-s: 240

zram_swap_on 1G
thp_setting
echo false >/sys/kernel/mm/numa/demotion_enabled
echo 0 >/proc/sys/kernel/numa_balancing
RATE=64          # [promotion] max_mib_per_s
RESIDENCE=3000   # [promotion] min_residence_ms
INTERVAL=200     # [daemon] interval_ms, as tierd_config writes it

tierd_config auto <<CONF
[promotion]
enabled = true
max_mib_per_s = $RATE
min_residence_ms = $RESIDENCE
CONF
tierd_up
tierd status --socket /tmp/tierd/control.sock || fail "tierd status"

promoted_now() { http_get 9877 /metrics | awk '/^tierd_promoted_pages_total/ { s += $2 } END { print s + 0 }'; }
( while :; do echo "$(cut -d' ' -f1 /proc/uptime) $(promoted_now)"; usleep 500000; done ) >/tmp/promoted.samples &
sampler=$!

step "600 MiB on node 0; the hot part moves after 10 s"
out=$(tierd-memload run --size-mib 600 --bind 0 --hot-pct 6 --fill-mib-per-s 32 --duration-s 30 \
	--report-every-s 1 --hot-after-s 12 --hot-to-node 1)
rc=$?
echo "$out"
kill $sampler
[ $rc = 0 ] || fail "tierd-memload exited $rc"
tierd status --socket /tmp/tierd/control.sock
metrics=$(http_get 9877 /metrics)
echo "$metrics" | grep -E '^tierd_(demoted|promoted)_pages_total|^tierd_move_failures'
reap tierd || fail "tierd run exited non-zero on SIGTERM"

sw=$(echo "$out" | grep 'memload: placement-hot at=switch')
t_switch=$(echo "$out" | sed -n 's/^memload: hot-switch at=\([0-9.]*\)s.*/\1/p')
[ -n "$sw" ] && [ -n "$t_switch" ] || fail "the workload did not report its hot-part switch"
hot_total=$(($(kv node0 "$sw") + $(kv node1 "$sw") + $(kv node2 "$sw") + $(kv absent "$sw")))
off0=$((hot_total - $(kv node0 "$sw")))
figure new_hot_demoted_at_switch "$off0/$hot_total"
expect_ge "$off0" 4096 "pages of the new hot part off node 0 at the switch (tierd demoted them)"

# The first report after the switch with at least 90% of the new hot part on node 0.
back=$(echo "$out" | awk -v sw="$t_switch" '
	/^memload: placement-hot at=[0-9.]+s / {
		t = $3; sub(/^at=/, "", t); sub(/s$/, "", t); t += 0
		if (t <= sw) next
		n0 = 0; tot = 0
		for (i = 4; i <= NF; i++) { split($i, kvp, "="); if (kvp[1] == "node0") n0 = kvp[2]; tot += kvp[2] }
		if (n0 * 10 >= tot * 9) { printf "%.1f\n", t - sw; exit }
	}')
figure back_on_node0_after_s "${back:-never}"
[ -n "$back" ] || fail "the new hot part never reached 90% on node 0"
expect_le "$(echo "$back" | cut -d. -f1)" 9 "seconds until 90% of the new hot part is back on node 0 (within 10 s)"
hot_end=$(echo "$out" | grep 'memload: placement-hot at=end')
figure hot_on_node0_end "$(kv node0 "$hot_end")/$hot_total"

# The rate: over every window of at least 2 s between two samples, promoted pages at most
# RATE MiB/s over the window plus two loops' budget (the policy carries one loop's unused
# budget over).
cat /tmp/promoted.samples | tr '\n' ' '
echo
rate=$(awk -v rate="$RATE" -v iv="$INTERVAL" '
	{ t[NR] = $1; p[NR] = $2 }
	END {
		burst = 2 * rate * iv / 1000 * 256
		worst = 0; peak = 0; bad = 0
		for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++) {
			dt = t[j] - t[i]
			if (dt < 2) continue
			d = p[j] - p[i]
			r = d / 256 / dt
			if (r > peak) peak = r
			if (d > rate * dt * 256 + burst) bad++
		}
		printf "peak_mib_per_s=%.1f over_limit_windows=%d\n", peak, bad
	}' /tmp/promoted.samples)
echo "promotion rate: $rate"
figure promote_peak_mib_per_s "$(kv peak_mib_per_s "$rate")"
figure promote_limit_mib_per_s "$RATE"
promoted=$(echo "$metrics" | awk '/^tierd_promoted_pages_total/ { s += $2 } END { print s + 0 }')
figure promoted "$promoted"
expect_ge "$promoted" "$((off0 * 9 / 10))" "pages tierd promoted (at least 90% of the demoted new hot part)"
expect_eq "$(kv over_limit_windows "$rate")" 0 "windows of 2 s or more above the promotion rate limit"

mv=$(echo "$out" | grep 'memload: moves')
figure watched_changes "$(kv changes "$mv")"
figure changed_again "$(kv changed_again "$mv")"
figure min_gap_ms "$(kv min_gap_ms "$mv")"
gap=$(kv min_gap_ms "$mv")
[ "$gap" = -1 ] || expect_ge "$gap" "$((RESIDENCE - 1500))" "shortest time between two node changes of one watched page, ms"
expect_eq "$(kv bad "$(echo "$out" | grep 'memload: checksum')")" 0 "pages with bad content"
