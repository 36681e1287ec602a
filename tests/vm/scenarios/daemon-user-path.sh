# daemon-user-path: migration paths chosen by the user, which the kernel's own demotion
# cannot express: node 0 demotes straight to node 2, skipping node 1, and node 1 is terminal
# (`[paths] source` = a graph file). Zram swap on, 600 MiB bound to node 0 (512 MiB) with a
# 64 MiB hot part, as in daemon-pressure; the kernel alone first (the swap reference). With
# tierd, the kernel's demotion is its backstop, and the kernel demotes node 0 to node 1: a
# node no user path reaches. tierd says so (`tierd status`: placement repair) and moves
# what lands there on to node 2. Checks: swap-outs at most 1% of the reference; after the
# load, no page of node 0's workload left on node 1 within 60 s (placement), node 0's cold
# pages on node 2; tierd's per-edge counters show 0 -> 2 and no 0 -> 1, 1 -> 2 only as
# repairs (metrics and `tierd status` agree); every checksum holds; `tierd path show` over
# the socket prints the user's table.
# vm-timeout-s: 400

daemon_setup
LOAD="tierd-memload run --size-mib 600 --bind 0 --hot-pct 11 --fill-mib-per-s 32 --duration-s 15"

reference_run $LOAD
ref=$REF

cat >/tmp/paths.toml <<GRAPH
version = 1
[node.0]
target = 2
[node.1]
target = -1
[node.2]
target = -1
GRAPH
tierd_config /tmp/paths.toml </dev/null
TIERD_LOG=info,tierd=debug tierd_up
step "the user's paths"
shown=$(tierd path show --state /tmp/tierd/paths.toml) || fail "tierd path show"
echo "$shown"
# The node table of `tierd status` is filled by the first loop.
i=0
until tierd status --json --socket /tmp/tierd/control.sock | grep -q '"node": 0'; do
	i=$((i + 1))
	[ $i -gt 100 ] && fail "tierd status shows no nodes after 10 s"
	usleep 100000
done
tierd status --socket /tmp/tierd/control.sock || fail "tierd status"
st=$(tierd status --json --socket /tmp/tierd/control.sock)
t0=$(echo "$st" | tr -d ' \n' | sed -n 's/.*"node":0,[^}]*"target":\([0-9a-z]*\).*/\1/p')
t1=$(echo "$st" | tr -d ' \n' | sed -n 's/.*"node":1,[^}]*"target":\([0-9a-z]*\).*/\1/p')
expect_eq "$t0" 2 "node 0's target in tierd status"
expect_eq "$t1" null "node 1's target in tierd status (terminal)"
expect_eq "$(tierd_backstop)" kernel-demotion "the backstop in tierd status"
echo "$st" | grep -q 'pages on node 1 move on to 2' || fail "tierd status does not name the placement repair of node 1"

step "600 MiB on node 0"
kdem0=$(($(vmstat pgdemote_kswapd) + $(vmstat pgdemote_direct)))
out=$($LOAD --settle-off-node 1 --settle-max-s 60)
rc=$?
echo "$out"
[ $rc = 0 ] || fail "tierd-memload exited $rc"
sleep 1
tierd status --socket /tmp/tierd/control.sock
st=$(tierd status --json --socket /tmp/tierd/control.sock | tr -d ' \n')
metrics=$(http_get 9877 /metrics)
echo "$metrics" | grep -E '^tierd_(demoted|promoted|repaired)_pages_total|^tierd_move_failures|^tierd_backstop'
reap tierd || fail "tierd run exited non-zero on SIGTERM"

# Pages moved per edge, from the metrics (demoted and promoted) and from the status.
edge() { echo "$metrics" | awk -v f="from=\"$1\"" -v t="to=\"$2\"" '/^tierd_(demoted|promoted)_pages_total/ && index($0, f) && index($0, t) { s += $2 } END { print s + 0 }'; }
sedge() { v=$(echo "$st" | sed -n "s/.*\"$1->$2\":\([0-9]*\).*/\1/p"); echo "${v:-0}"; }
end=$(echo "$out" | grep 'memload: placement at=end')
sum=$(echo "$out" | grep 'memload: checksum')
repaired() { echo "$metrics" | awk -v f="from=\"$1\"" -v t="to=\"$2\"" '/^tierd_repaired_pages_total/ && index($0, f) && index($0, t) { s += $2 } END { print s + 0 }'; }
d=$(echo "$out" | grep 'memload: vmstat-delta')
settle=$(echo "$out" | grep 'memload: settle')
pswpout=$(kv pswpout "$d")
figure moved_0to2 "$(edge 0 2)"
figure moved_0to1 "$(edge 0 1)"
figure moved_1to2 "$(edge 1 2)"
figure repaired_1to2 "$(repaired 1 2)"
figure kernel_demoted "$(($(vmstat pgdemote_kswapd) + $(vmstat pgdemote_direct) - kdem0))"
figure on_node1_after_load "$(kv at_start "$settle")"
figure settled_s "$(kv seconds "$settle")"
figure on_node1 "$(kv node1 "$end")"
figure on_node2 "$(kv node2 "$end")"
figure pswpout "$pswpout"
expect_eq "$(kv bad "$sum")" 0 "pages with bad content"
expect_le "$pswpout" "$((ref / 100))" "swap-outs with tierd (at most 1% of the kernel-alone reference $ref)"
expect_eq "$(kv node1 "$end")" 0 "pages on node 1 (60 s after the load at most)"
expect_ge "$(kv node2 "$end")" 10000 "cold pages on node 2"
expect_eq "$(edge 0 1)" 0 "tierd's 0 -> 1 moves (metrics)"
expect_eq "$(edge 1 2)" 0 "tierd's 1 -> 2 demotions or promotions (metrics; repairs are counted apart)"
expect_eq "$(edge 2 1)" 0 "tierd's 2 -> 1 moves (metrics)"
expect_ge "$(edge 0 2)" 10000 "tierd's 0 -> 2 moves (metrics)"
expect_eq "$(sedge 0 2)" "$(edge 0 2)" "0 -> 2 in tierd status and in the metrics"
expect_eq "$(sedge 0 1)" 0 "0 -> 1 in tierd status"
expect_eq "$(sedge 1 2)" "$(repaired 1 2)" "1 -> 2 in tierd status and the repairs in the metrics"
expect_ge "$(kv node2 "$end")" "$(($(edge 0 2) - $(edge 2 0) - $(kv node2 "$end") / 100))" "pages on node 2 vs tierd's net 0 -> 2 moves"
