# daemon-user-path: migration paths chosen by the user, which the kernel's own demotion
# cannot express: node 0 demotes straight to node 2, skipping node 1, and node 1 is terminal
# (`[paths] source` = a graph file). Zram swap on, the kernel's demotion off, 600 MiB bound
# to node 0 (512 MiB) with a 64 MiB hot part, as in daemon-pressure. Checks: node 0's cold
# pages are on node 2 and none on node 1 (placement), tierd's per-edge counters show 0 -> 2
# and no 0 -> 1 (metrics and `tierd status` agree), every checksum holds, and `tierd path
# show` over the socket prints the user's table.
# vm-timeout-s: 240

zram_swap_on 1G
echo never >/sys/kernel/mm/transparent_hugepage/enabled
echo false >/sys/kernel/mm/numa/demotion_enabled
echo 0 >/proc/sys/kernel/numa_balancing
LOAD="tierd-memload run --size-mib 600 --bind 0 --hot-pct 11 --fill-mib-per-s 32 --duration-s 15"

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
tierd_up
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

step "600 MiB on node 0"
out=$($LOAD)
rc=$?
echo "$out"
[ $rc = 0 ] || fail "tierd-memload exited $rc"
sleep 1
tierd status --socket /tmp/tierd/control.sock
st=$(tierd status --json --socket /tmp/tierd/control.sock | tr -d ' \n')
metrics=$(http_get 9877 /metrics)
echo "$metrics" | grep -E '^tierd_(demoted|promoted)_pages_total|^tierd_move_failures'
reap tierd || fail "tierd run exited non-zero on SIGTERM"

# Pages moved per edge, from the metrics (demoted and promoted) and from the status.
edge() { echo "$metrics" | awk -v f="from=\"$1\"" -v t="to=\"$2\"" '/^tierd_(demoted|promoted)_pages_total/ && index($0, f) && index($0, t) { s += $2 } END { print s + 0 }'; }
sedge() { v=$(echo "$st" | sed -n "s/.*\"$1->$2\":\([0-9]*\).*/\1/p"); echo "${v:-0}"; }
end=$(echo "$out" | grep 'memload: placement at=end')
sum=$(echo "$out" | grep 'memload: checksum')
d=$(echo "$out" | grep 'memload: vmstat-delta')
figure moved_0to2 "$(edge 0 2)"
figure moved_0to1 "$(edge 0 1)"
figure moved_1to2 "$(edge 1 2)"
figure on_node1 "$(kv node1 "$end")"
figure on_node2 "$(kv node2 "$end")"
figure pswpout "$(kv pswpout "$d")"
expect_eq "$(kv bad "$sum")" 0 "pages with bad content"
expect_eq "$(kv node1 "$end")" 0 "pages on node 1"
expect_ge "$(kv node2 "$end")" 10000 "cold pages on node 2"
expect_eq "$(edge 0 1)" 0 "tierd's 0 -> 1 moves (metrics)"
expect_eq "$(edge 1 2)" 0 "tierd's 1 -> 2 moves (metrics)"
expect_eq "$(edge 2 1)" 0 "tierd's 2 -> 1 moves (metrics)"
expect_ge "$(edge 0 2)" 10000 "tierd's 0 -> 2 moves (metrics)"
expect_eq "$(sedge 0 2)" "$(edge 0 2)" "0 -> 2 in tierd status and in the metrics"
expect_eq "$(sedge 0 1)" 0 "0 -> 1 in tierd status"
expect_ge "$(kv node2 "$end")" "$(($(edge 0 2) - $(edge 2 0) - $(kv node2 "$end") / 100))" "pages on node 2 vs tierd's net 0 -> 2 moves"
