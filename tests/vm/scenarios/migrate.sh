# migrate: tierd's move_pages wrapper moves a workload's pages 0 -> 1 -> 2 -> 0; every
# per-page status must be the target node, a query must find every page there, and every
# page's content must be intact after each step. Run twice: with transparent huge pages off
# (strict: no status other than the target) and on (a THP may report -EBUSY for one 4 KiB
# entry although it moved, so the query alone decides).
# vm-timeout-s: 120

for thp in never always; do
	step "migrate with THP $thp"
	echo $thp >/sys/kernel/mm/transparent_hugepage/enabled
	strict=""
	[ $thp = never ] && strict=--strict
	out=$(tierd-memload migrate --size-mib 64 --bind 0 --path 1,2,0 $strict)
	rc=$?
	echo "$out"
	[ $rc = 0 ] || fail "tierd-memload migrate (THP $thp) exited $rc: $(echo "$out" | grep error= | head -n1)"
	for to in 1 2 0; do
		line=$(echo "$out" | grep "memload: migrate to=$to ")
		pages=$(kv pages "$line")
		expect_ge "$pages" 16384 "pages moved to node $to"
		placed=$(echo "$out" | grep "at=after-move-to-$to ")
		expect_eq "$(kv node$to "$placed")" "$pages" "pages on node $to by query (THP $thp)"
		sum=$(echo "$out" | grep "after=move-to-$to ")
		expect_eq "$(kv bad "$sum")" 0 "pages with bad content after the move to node $to (THP $thp)"
		[ $thp = never ] && expect_eq "$(kv moved "$line")" "$pages" "status = node $to for every page"
		figure "thp_${thp}_to${to}_pages_per_s" "$(kv pages_per_s "$line")"
		[ $thp = always ] && figure "thp_always_to${to}_busy_entries" "$(kv busy "$line")"
	done
done
