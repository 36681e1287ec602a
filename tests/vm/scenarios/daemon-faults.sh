# daemon-faults: tierd keeps running through three faults, logs each once and loses nothing.
# Zram swap on, the kernel's demotion off, auto paths (0 -> 1 -> 2), the FUSE tree mounted
# by the daemon (`[daemon] mount`), demotion capped at 64 MiB/s in calls of 1024 pages so
# that a batch is spread over many calls. A small workload (64 MiB on node 0, half of it
# hot) survives all three:
#   (a) a 560 MiB workload bound to node 0 is killed (SIGKILL) while tierd demotes it;
#   (b) node 0's path is changed through the FUSE tree (`echo 2 > node0/migration_path`):
#       the next demotions, of a new 560 MiB workload, go 0 -> 2 and none 0 -> 1, and
#       what the backstop demotes to node 1 is repaired onto node 2 within 60 s;
#   (c) while that workload is demoted, the config is replaced by a broken one and SIGHUP
#       sent: the old config stays, then a good one is reloaded.
# Checks: `tierd status` answers after each fault and its loop and moved-page counters keep
# growing; the log has exactly one line for the reload error, one for the path change, one
# for the good reload, one for the killed workload's exit; the FUSE path survives
# the reload; both surviving workloads' checksums hold; tierd exits 0 on SIGQUIT, with its
# socket removed, the tree unmounted and the kernel's demotion put back. The thp variant runs
# the same story with THP `always`.
# vm-timeout-s: 300

zram_swap_on 1G
thp_setting
echo false >/sys/kernel/mm/numa/demotion_enabled
echo 0 >/proc/sys/kernel/numa_balancing
SOCK=/tmp/tierd/control.sock

mkdir -p /tmp/tree
tierd_config auto <<CONF
mount = "/tmp/tree"
[mover]
max_mib_per_s = 64
pages_per_call = 1024
CONF
cp /tmp/tierd.toml /tmp/tierd.good.toml
tierd_up /tmp/tree/node0/migration_path
tierd_pid=$(cat /tmp/tierd.pid)
tierd status --socket $SOCK || fail "tierd status"

# Status figures: json KEY (a top-level number), edge FROM TO (pages moved, 0 if none).
json() { tierd status --json --socket $SOCK | tr -d ' \n' | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }
edge() {
	v=$(tierd status --json --socket $SOCK | tr -d ' \n' | sed -n "s/.*\"$1->$2\":\([0-9]*\).*/\1/p")
	echo "${v:-0}"
}
alive() {
	kill -0 "$tierd_pid" 2>/dev/null || { cat /tmp/tierd.log; fail "tierd died ($1)"; }
	tierd status --socket $SOCK >/dev/null || { cat /tmp/tierd.log; fail "tierd status does not answer ($1)"; }
}
# Waits up to SECS for edge FROM TO to reach at least N pages: wait_edge FROM TO N SECS.
wait_edge() {
	i=0
	while [ "$(edge "$1" "$2")" -lt "$3" ]; do
		i=$((i + 1))
		[ $i -gt $(($4 * 5)) ] && return 1
		usleep 200000
	done
}
# Waits up to SECS for tierd's loop counter to reach N (a loop that demotes a large batch
# takes seconds under TCG): wait_loops N SECS.
wait_loops() {
	i=0
	while v=$(json loops) && [ "${v:-0}" -lt "$1" ]; do
		i=$((i + 1))
		[ $i -gt $(($2 * 5)) ] && return 1
		usleep 200000
	done
}

step "a survivor: 64 MiB on node 0, half hot"
spawn survivor tierd-memload run --size-mib 64 --bind 0 --hot-pct 50 --rate 2000 --duration-s 60

step "(a) a workload killed while tierd demotes it"
spawn victim tierd-memload run --size-mib 560 --bind 0 --hot-pct 1 --rate 2000 --duration-s 120
victim=$(cat /tmp/victim.pid)
base01=$(edge 0 1)
wait_edge 0 1 $((base01 + 4096)) 60 || { cat /tmp/tierd.log /tmp/victim.log; fail "tierd did not demote the victim 0 -> 1"; }
before_kill=$(edge 0 1)
kill -KILL "$victim"
wait "$victim" 2>/dev/null
after_kill=$(edge 0 1)
figure a_moved_0to1_at_kill "$before_kill..$after_kill"
loops=$(json loops)
sleep 2
alive "after the kill"
wait_loops $((loops + 2)) 15 || fail "tierd's loops after the kill: $(json loops), want >= $((loops + 2)) within 15 s"
tierd status --socket $SOCK
# The victim's pages tierd had ranked or was moving when it died: gone, not lost.
gone=$(tierd status --json --socket $SOCK | tr -d ' \n' | sed -n 's/.*"ENOENT":\([0-9]*\).*/\1/p')
figure a_gone_pages "${gone:-0}"
exits=$(grep -c "exited.*pid=$victim\$" /tmp/tierd.log)
figure a_exit_log_lines "$exits"
expect_eq "$exits" 1 "log lines about the killed workload's exit"

step "(b) node 0's path changed through the FUSE tree: 0 -> 2"
echo 2 >/tmp/tree/node0/migration_path || fail "echo 2 > /tmp/tree/node0/migration_path"
expect_eq "$(cat /tmp/tree/node0/migration_path)" 2 "node0/migration_path after the write"
tierd path show --state /tmp/tierd/paths.toml || fail "tierd path show"
sleep 1
alive "after the path change"
e01=$(edge 0 1)
e02=$(edge 0 2)
# The kernel's demotion (tierd's backstop) still sends node 0's pages to node 1, which no
# path reaches now: tierd's placement repair moves them on, and the workload waits for
# that, 60 s at most, before it reports where its pages are.
spawn second tierd-memload run --size-mib 560 --bind 0 --hot-pct 5 --fill-mib-per-s 48 --duration-s 25 \
	--settle-off-node 1 --settle-max-s 60
wait_edge 0 2 $((e02 + 4096)) 60 || { cat /tmp/tierd.log /tmp/second.log; fail "tierd did not demote 0 -> 2 after the path change"; }

step "(c) a broken config reloaded while tierd demotes"
printf '[daemon]\ninterval_ms = "fast"\n' >/tmp/tierd.toml
loops=$(json loops)
moved=$(edge 0 2)
kill -HUP "$tierd_pid"
sleep 3
alive "after the broken reload"
wait_loops $((loops + 2)) 15 || fail "tierd's loops after the broken reload: $(json loops), want >= $((loops + 2)) within 15 s"
moved_after=$(edge 0 2)
figure c_moved_0to2_around_reload "$moved..$moved_after"
expect_ge "$moved_after" $((moved + 1)) "tierd's 0 -> 2 moves after the broken reload"
cp /tmp/tierd.good.toml /tmp/tierd.toml
kill -HUP "$tierd_pid"
sleep 1
alive "after the good reload"
expect_eq "$(cat /tmp/tree/node0/migration_path)" 2 "node0/migration_path after the good reload"

step "the workloads end"
for w in second survivor; do
	wait_exit "$(cat /tmp/$w.pid)" 120 "$w" || { cat /tmp/$w.log; fail "$w exited non-zero"; }
	cat /tmp/$w.log
done
tierd status --socket $SOCK
e01_end=$(edge 0 1)
e02_end=$(edge 0 2)
# SIGQUIT (Ctrl-\ in a terminal) stops it as cleanly as SIGTERM: socket removed, tree
# unmounted, the kernel's demotion put back to what tierd found (off).
REAP_SIG=QUIT reap tierd || fail "tierd run exited non-zero on SIGQUIT"
expect_eq "$(cat /sys/kernel/mm/numa/demotion_enabled)" false "demotion_enabled after tierd stopped"
[ -e $SOCK ] && fail "tierd left its control socket $SOCK behind"
[ -e /tmp/tree/node0 ] && fail "tierd left the FUSE tree mounted on /tmp/tree"

figure b_moved_0to1 "$e01..$e01_end"
figure b_moved_0to2 "$e02..$e02_end"
expect_eq "$e01_end" "$e01" "tierd's 0 -> 1 moves after the path change"
expect_ge "$e02_end" $((e02 + 10000)) "tierd's 0 -> 2 moves after the path change"
second_end=$(grep 'memload: placement at=end' /tmp/second.log)
second_settle=$(grep 'memload: settle' /tmp/second.log)
figure b_second_on_node1_node2 "$(kv node1 "$second_end")/$(kv node2 "$second_end")"
figure b_second_on_node1_after_load "$(kv at_start "$second_settle")"
figure b_second_settled_s "$(kv seconds "$second_settle")"
expect_eq "$(kv node1 "$second_end")" 0 "pages of the second workload on node 1 (60 s after its load at most)"
n_err=$(grep -c 'config reload failed' /tmp/tierd.log)
n_ok=$(grep -c 'config reloaded' /tmp/tierd.log)
n_paths=$(grep -c 'migration paths changed' /tmp/tierd.log)
figure c_reload_error_lines "$n_err"
expect_eq "$n_err" 1 "log lines for the reload error"
expect_eq "$n_ok" 1 "log lines for the good reload"
expect_eq "$n_paths" 1 "log lines for the path change"
expect_eq "$(grep -c 'panicked' /tmp/tierd.log)" 0 "panics in tierd's log"
for w in second survivor; do
	expect_eq "$(kv bad "$(grep 'memload: checksum' /tmp/$w.log)")" 0 "$w: pages with bad content"
done
