# control-tree: `tierd mount` serves the sysfs-compatible tree inside the guest, and
# echo/cat on nodeN/migration_path follow the seed RFC's semantics against the real
# topology (nodes 0-2 online; node 3 does not exist, so storing 3 is EINVAL).
# vm-timeout-s: 60

M=/tmp/tree
S=/tmp/paths.toml
mkdir -p $M
tierd mount $M --state $S >/tmp/mount.log 2>&1 &
pid=$!
wait_for $M/node0/migration_path 15 || {
	cat /tmp/mount.log
	fail "tierd mount did not serve $M/node0/migration_path within 15 s"
}
grep " $M " /proc/mounts

# write VALUE FILE: one write(2) of VALUE and a newline, as the shell's echo does; prints
# "ok" or the error text.
write() { (echo "$1" >"$2") 2>&1 && echo ok; }
# store NODE VALUE WANT: WANT is "ok" or the error text expected.
store() {
	got=$(write "$2" "$M/node$1/migration_path")
	case "$got" in
	*"$3"*) echo "echo $2 > node$1/migration_path: $got" ;;
	*) fail "echo $2 > node$1/migration_path: got '$got', want '$3'" ;;
	esac
}
show() { cat "$M/node$1/migration_path"; }

step "the tree"
ls -l $M $M/node0
expect_eq "$(cat $M/online)" "0-2" "online"
expect_eq "$(cat $M/possible)" "0-2" "possible"
expect_eq "$(show 0)" "-1" "node0/migration_path before any store"
expect_eq "$(stat -c %a $M/node0/migration_path)" 644 "mode of node0/migration_path"
[ -e $M/node3 ] && fail "node3 exists in the tree of a 3-node machine"

step "stores with the seed's semantics"
store 0 2 ok
expect_eq "$(show 0)" 2 "node0 after echo 2"
store 0 3 "Invalid argument"
expect_eq "$(show 0)" 2 "node0 after the rejected echo 3"
store 0 1024 "Invalid argument"
store 0 0 "Invalid argument"
store 2 0 "Invalid argument"
expect_eq "$(show 2)" "-1" "node2 after the rejected cycle 2 -> 0 -> 2"
store 0 0x1 ok
store 1 2 ok
store 2 0 "Invalid argument"
store 1 " 2" "Invalid argument"
store 1 -5 ok
expect_eq "$(show 1)" "-1" "node1 after echo -5 (any negative is terminal)"
store 1 02 ok
expect_eq "$(show 0) $(show 1) $(show 2)" "1 2 -1" "table after the stores"

step "the state and tierd path show agree"
tierd path show --state $S || fail "tierd path show exited $?"
shown=$(tierd path show --state $S --json) || fail "tierd path show --json exited $?"
echo "$shown"
flat=$(printf '%s' "$shown" | tr -d ' \n\t')
for e in '"node":0,"online":true,"stored":1' '"node":1,"online":true,"stored":2' '"node":2,"online":true,"stored":-1'; do
	case "$flat" in *"$e"*) ;; *) fail "tierd path show --json lacks $e" ;; esac
done
cat $S

step "unmount on SIGTERM"
kill -TERM $pid
wait_exit $pid 10 "tierd mount after SIGTERM"
rc=$?
cat /tmp/mount.log
expect_eq "$rc" 0 "exit status of tierd mount after SIGTERM"
grep -q " $M " /proc/mounts && fail "$M still mounted after SIGTERM"
grep -q 'target = 2' $S || fail "state file $S lacks node 1's target 2"

step "a new mount serves the saved table"
tierd mount $M --state $S >/tmp/mount2.log 2>&1 &
pid=$!
wait_for $M/node0/migration_path 15 || fail "second tierd mount did not come up"
expect_eq "$(show 0) $(show 1) $(show 2)" "1 2 -1" "table served after a restart"
kill -TERM $pid
wait $pid
figure stores_checked 13
