#!/usr/bin/env bash
# tierd's real-kernel test bed: boots Debian's Linux 6.12 with three NUMA nodes and HMAT
# under QEMU (TCG) and runs scenarios in the guest, one boot per scenario.
#
#   tests/vm/run.sh                 all scenarios in tests/vm/scenarios/ and topologies/
#   tests/vm/run.sh migrate ...     the named ones (scenarios/, topologies/, selftest/, pending/);
#                                   NAME+hog runs NAME with two CPU-bound guest processes,
#                                   NAME+thp with transparent huge pages `always`
#   tests/vm/run.sh --shell         a root shell in the guest on this terminal
#   tests/vm/run.sh --list          the scenario names
#
# Prints one `vm: NAME PASS|FAIL (secs) ...` line per scenario and `vm: N passed, M failed`;
# exits 1 when any scenario fails, the guest panics or a scenario times out, 2 on a setup
# error. Console logs: target/vm/logs/NAME.log. See tests/vm/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
VM=$ROOT/target/vm
CACHE=$VM/cache
LOGS=$VM/logs
BUILD=$ROOT/target/vm-build
TRIPLE=x86_64-unknown-linux-gnu
# Which scenarios may take how long: a `# vm-timeout-s: N` line in the scenario overrides.
DEFAULT_TIMEOUT_S=${TIERD_VM_TIMEOUT_S:-120}
JOBS=${CARGO_BUILD_JOBS:-2}

say() { printf 'vm: %s\n' "$*"; }
die() { printf 'vm: error: %s\n' "$*" >&2; exit 2; }

usage() {
	sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# NAME+VARIANT: scenario NAME under a variant the guest's init knows: `hog` (two CPU-bound
# guest processes) or `thp` (transparent huge pages `always` where the scenario sets THP).
VARIANTS=(hog thp)

scenario_file() {
	local name=${1%%+*} f
	if [[ $1 == *+* ]]; then
		local v=${1#*+} ok=0 k
		for k in "${VARIANTS[@]}"; do [[ $v == "$k" ]] && ok=1; done
		[[ $ok == 1 ]] || return 1
	fi
	for f in "$HERE/scenarios/$name.sh" "$HERE/topologies/$name.sh" "$HERE/selftest/$name.sh" \
		"$HERE/pending/$name.sh"; do
		[[ -f $f ]] && { printf '%s\n' "$f"; return 0; }
	done
	return 1
}

# Every scenario, then the variants listed in tests/vm/scenarios/variants.list.
default_scenarios() {
	local f
	for f in "$HERE"/scenarios/*.sh "$HERE"/topologies/*.sh; do
		basename "$f" .sh
	done
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$HERE/scenarios/variants.list"
}

# --- host packages -------------------------------------------------------------------

apt_updated=0
apt_update_once() {
	if [[ $apt_updated == 0 ]]; then
		say "apt-get update"
		apt-get update -q >"$VM/apt-update.log" 2>&1 || die "apt-get update failed: see $VM/apt-update.log"
		apt_updated=1
	fi
}

ensure_packages() {
	local missing=()
	command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
	dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' ||
		missing+=(busybox-static)
	command -v xz >/dev/null || missing+=(xz-utils)
	[[ ${#missing[@]} == 0 ]] && return 0
	[[ $(id -u) == 0 ]] || die "missing packages ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
	say "installing ${missing[*]}"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$VM/apt-install.log" 2>&1; then
		apt_update_once
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$VM/apt-install.log" 2>&1 ||
			die "apt-get install ${missing[*]} failed: see $VM/apt-install.log"
	fi
}

# --- the guest kernel ----------------------------------------------------------------

newest_kernel_package() {
	apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$' 2>/dev/null |
		awk '{print $1}' | sort -V | tail -n1
}

# Sets KDIR to an unpacked linux-image-6.12 package under $CACHE, downloading the newest
# one when it is not there yet. With no package index and a cached kernel, uses the cache.
fetch_kernel() {
	local pkg ver
	pkg=$(newest_kernel_package)
	if [[ -z $pkg ]]; then
		apt_update_once
		pkg=$(newest_kernel_package)
	fi
	if [[ -z $pkg ]]; then
		KDIR=$(find "$CACHE" -maxdepth 2 -name .complete -printf '%h\n' 2>/dev/null | sort -V | tail -n1)
		[[ -n $KDIR ]] || die "no linux-image-6.12.*+deb12-amd64-unsigned package known to apt and none cached in $CACHE"
		say "kernel: no package index, using cached $(basename "$KDIR")"
		return 0
	fi
	ver=${pkg#linux-image-}
	ver=${ver%-unsigned}
	KDIR=$CACHE/$ver
	if [[ ! -f $KDIR/.complete ]]; then
		say "kernel: downloading $pkg"
		rm -rf "$KDIR" "$CACHE/dl"
		mkdir -p "$CACHE/dl"
		(cd "$CACHE/dl" && apt-get download -q "$pkg" >"$VM/apt-download.log" 2>&1) ||
			die "apt-get download $pkg failed: see $VM/apt-download.log"
		dpkg-deb -x "$CACHE"/dl/*.deb "$KDIR"
		rm -rf "$CACHE/dl"
		touch "$KDIR/.complete"
	fi
	KVER=$(basename "$(find "$KDIR/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)")
	VMLINUZ=$KDIR/boot/vmlinuz-$KVER
	[[ -f $VMLINUZ ]] || die "no $VMLINUZ in the cached package"
}

# --- the guest binaries --------------------------------------------------------------

build_guest_tools() {
	say "building tierd, tierd-memload and the track example (static, profile vm)"
	local log=$VM/build.log
	if ! RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --profile vm -j "$JOBS" \
		--manifest-path "$ROOT/Cargo.toml" --target "$TRIPLE" --target-dir "$BUILD" \
		-p tierd -p tierd-memload -p tierd-linux --bins --example track >"$log" 2>&1; then
		cat "$log" >&2
		die "static build failed"
	fi
}

# --- the initramfs -------------------------------------------------------------------

# Prints the module file of NAME (modprobe treats dashes and underscores alike).
module_file() {
	local f
	f=$(find "$KDIR/lib/modules/$KVER/kernel" \( -name "$1.ko*" -o -name "${1//_/-}.ko*" \) -print -quit)
	[[ -n $f ]] && printf '%s\n' "$f"
}

module_bytes() {
	case $1 in
	*.xz) xz -dc "$1" ;;
	*.zst) zstd -dcq "$1" ;;
	*.gz) gzip -dc "$1" ;;
	*) cat "$1" ;;
	esac
}

# Appends NAME and, first, its dependencies to the initramfs's load order, unless built in.
declare -A MOD_DONE=()
add_module() {
	local name=${1//-/_} f deps d
	[[ -n ${MOD_DONE[$name]:-} ]] && return 0
	MOD_DONE[$name]=1
	if grep -qE "/${name//_/[-_]}\.ko\$" "$KDIR/lib/modules/$KVER/modules.builtin"; then
		return 0
	fi
	f=$(module_file "$name") || die "kernel module $name not found in $KDIR"
	deps=$(module_bytes "$f" | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n1)
	for d in ${deps//,/ }; do
		add_module "$d"
	done
	module_bytes "$f" >"$INITRD_DIR/lib/modules/$name.ko"
	printf '%s\n' "$name" >>"$INITRD_DIR/lib/modules/order"
}

build_initramfs() {
	INITRD_DIR=$VM/initramfs
	INITRD=$VM/initramfs.cpio
	rm -rf "$INITRD_DIR"
	mkdir -p "$INITRD_DIR"/{bin,sbin,etc,proc,sys,dev,tmp,run,mnt,lib/modules,scenarios}
	cp /bin/busybox "$INITRD_DIR/bin/busybox"
	ln -s busybox "$INITRD_DIR/bin/sh"
	cp "$BUILD/$TRIPLE/vm/tierd" "$BUILD/$TRIPLE/vm/tierd-memload" "$INITRD_DIR/bin/"
	cp "$BUILD/$TRIPLE/vm/examples/track" "$INITRD_DIR/bin/"
	cp "$HERE/guest/init" "$INITRD_DIR/init"
	cp "$HERE/guest/lib.sh" "$INITRD_DIR/lib/tierd-vm.sh"
	cp "$HERE/guest/topology.sh" "$INITRD_DIR/lib/tierd-topology.sh"
	chmod 755 "$INITRD_DIR/init"
	: >"$INITRD_DIR/lib/modules/order"
	local m
	for m in zram fuse; do
		add_module "$m"
	done
	local name
	for name in "$@"; do
		if [[ $name == shell ]]; then
			cp "$HERE"/scenarios/*.sh "$HERE"/topologies/*.sh "$HERE"/selftest/*.sh "$INITRD_DIR/scenarios/"
			continue
		fi
		cp "$(scenario_file "$name")" "$INITRD_DIR/scenarios/${name%%+*}.sh"
	done
	(cd "$INITRD_DIR" && find . | LC_ALL=C sort | busybox cpio -o -H newc -R 0:0 2>/dev/null) >"$INITRD"
}

# --- boot and judge ------------------------------------------------------------------

# The default machine: three 512 MiB nodes, CPUs on node 0, distances
# 10/20/30, HMAT latencies 80/180/350 ns and bandwidths 20/8/4 GB/s. A scenario declares
# its own with `# vm-machine: ARGS` lines (joined, split on blanks): everything from
# `-machine` to the last `-numa`, replacing the default's.
default_machine() {
	MACHINE=(-machine pc,hmat=on -m 1536M -smp 2)
	local n lat=(80 180 350) bw=(20G 8G 4G)
	for n in 0 1 2; do
		MACHINE+=(-object "memory-backend-ram,size=512M,id=m$n")
	done
	# shellcheck disable=SC2054 # QEMU options are comma-separated by design
	MACHINE+=(-numa node,nodeid=0,cpus=0-1,memdev=m0
		-numa node,nodeid=1,memdev=m1,initiator=0
		-numa node,nodeid=2,memdev=m2,initiator=0
		-numa dist,src=0,dst=1,val=20 -numa dist,src=0,dst=2,val=30 -numa dist,src=1,dst=2,val=20)
	for n in 0 1 2; do
		MACHINE+=(-numa "hmat-lb,initiator=0,target=$n,hierarchy=memory,data-type=access-latency,latency=${lat[n]}"
			-numa "hmat-lb,initiator=0,target=$n,hierarchy=memory,data-type=access-bandwidth,bandwidth=${bw[n]}")
	done
}

# The `# vm-machine:` arguments of scenario NAME, one per line; nothing for the default.
scenario_machine() {
	sed -n 's/^# vm-machine: *//p' "$(scenario_file "$1")" | tr ' \t' '\n\n' | sed '/^$/d'
}

# Sets QEMU to the command line that boots scenario NAME's machine (the default for shell).
# One TCG thread for all vCPUs by default: with thread=multi the 6.12 guest sometimes dies
# early in boot with "Oops: int3" in hrtimer_start_range_ns (a vCPU running a static-key
# site while another live-patches it), and it is no faster here, where the host's two
# cores are shared. TIERD_VM_TCG_THREAD=multi brings it back.
qemu_args() {
	local custom=()
	[[ $1 == shell ]] || mapfile -t custom < <(scenario_machine "$1")
	if [[ ${#custom[@]} == 0 ]]; then
		default_machine
	else
		MACHINE=("${custom[@]}")
	fi
	QEMU=(qemu-system-x86_64 -accel "tcg,thread=${TIERD_VM_TCG_THREAD:-single}" -cpu max
		-nodefaults -no-reboot -display none "${MACHINE[@]}" -kernel "$VMLINUZ" -initrd "$INITRD")
}

CMDLINE_BASE="console=ttyS0 panic=-1 oops=panic loglevel=4 rdinit=/init"

# A variant (the hog) slows the guest's own work: half as long again.
scenario_timeout() {
	local t
	t=$(sed -n 's/^# vm-timeout-s: *\([0-9]\+\).*/\1/p' "$(scenario_file "$1")" | head -n1)
	t=${t:-$DEFAULT_TIMEOUT_S}
	[[ $1 == *+* ]] && t=$((t * 3 / 2))
	printf '%s\n' "$t"
}

# The files a scenario printed with `capture_as` (guest/topology.sh), written under
# target/vm/captures/NAME/ as a fixture tree.
extract_capture() {
	local dir=$VM/captures/$1
	rm -rf "$dir"
	grep -q 'TIERD-VM: FILE ' "$2" || return 1
	mkdir -p "$dir"
	tr -d '\r' <"$2" | awk -v dir="$dir" '
		index($0, "TIERD-VM: FILE ") { f = dir "/" substr($0, index($0, "TIERD-VM: FILE ") + 15)
			d = f; sub(/\/[^\/]*$/, "", d); system("mkdir -p \"" d "\""); printf "" > f; next }
		f != "" && index($0, "TIERD-VM: | ") { print substr($0, index($0, "TIERD-VM: | ") + 12) >> f; next }
		index($0, "TIERD-VM: END") { if (f != "") close(f); f = "" }'
}

# Compares scenario NAME's capture with the fixture its `# vm-fixture: DIR` line names, and
# prints what differs (nothing when it matches). Node meminfo is left out of the comparison
# (free memory differs from boot to boot). With TIERD_VM_BLESS=1 the capture replaces the
# fixture's sys/, proc/, dev/ and expected/kernel-log.txt instead.
check_capture() {
	local name=$1 fixture dir want have f
	fixture=$(sed -n 's/^# vm-fixture: *\([^ ]*\).*/\1/p' "$(scenario_file "$name")" | head -n1)
	extract_capture "$name" "$2" || { [[ -z $fixture ]] || echo "no capture in the console log"; return 0; }
	[[ -n $fixture ]] || return 0
	dir=$VM/captures/$name
	want=$ROOT/fixtures/$fixture
	if [[ ${TIERD_VM_BLESS:-0} == 1 ]]; then
		rm -rf "$want/sys" "$want/proc" "$want/dev"
		mkdir -p "$want/expected"
		cp -r "$dir/sys" "$dir/proc" "$want/"
		[[ ! -d $dir/dev ]] || cp -r "$dir/dev" "$want/"
		cp "$dir/expected/kernel-log.txt" "$want/expected/"
		return 0
	fi
	have=$( (cd "$dir" && find . -type f ! -name meminfo | LC_ALL=C sort) )
	[[ $have == "$( (cd "$want" 2>/dev/null && find sys proc dev expected/kernel-log.txt -type f ! -name meminfo 2>/dev/null | sed 's|^|./|' | LC_ALL=C sort) )" ]] ||
		{ echo "the captured files differ from fixtures/$fixture's (TIERD_VM_BLESS=1 rewrites them)"; return 0; }
	for f in $have; do
		cmp -s "$dir/$f" "$want/$f" ||
			{ echo "captured ${f#./} differs from fixtures/$fixture/${f#./} (TIERD_VM_BLESS=1 rewrites it)"; return 0; }
	done
}

PASSED=0
FAILED=0
FAILED_NAMES=()

run_scenario() {
	local name=$1 log=$LOGS/$1.log timeout rc=0 start secs reason="" figures
	timeout=$(scenario_timeout "$name")
	qemu_args "$name"
	start=$(date +%s.%N)
	rm -f "$log" # a QEMU that fails to start must not leave the last run's verdict behind
	timeout -k 5 "$timeout" "${QEMU[@]}" -serial "file:$log" \
		-append "$CMDLINE_BASE tierd.scenario=$name" </dev/null >"$LOGS/$name.qemu.log" 2>&1 || rc=$?
	secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e-s}')
	figures=$(sed -n 's/^.*TIERD-VM: FIGURE //p' "$log" | tr -d '\r' | tr '\n' ' ')
	if grep -q 'Kernel panic - not syncing' "$log"; then
		reason="guest kernel panic: $(grep -m1 'Kernel panic - not syncing' "$log" | tr -d '\r' | sed 's/^.*Kernel panic - not syncing: *//')"
	elif [[ $rc == 124 || $rc == 137 ]]; then
		reason="timeout: no result within ${timeout}s (hung guest?)"
	elif grep -q "TIERD-VM: RESULT $name FAIL" "$log"; then
		reason="scenario failed ($(grep -m1 "TIERD-VM: RESULT $name FAIL" "$log" | tr -d '\r' | sed 's/^.*FAIL *//'))"
		local why
		why=$(sed -n 's/^.*TIERD-VM: FAIL-REASON //p' "$log" | tr -d '\r' | head -n3 | paste -sd';' -)
		[[ -n $why ]] && reason="$reason: $why"
	elif grep -q "TIERD-VM: RESULT $name PASS" "$log"; then
		# Only a passing boot's capture is compared with (or blessed into) its fixture.
		reason=$(check_capture "$name" "$log")
	elif [[ $rc != 0 ]]; then
		reason="qemu exited $rc: see $LOGS/$name.qemu.log"
	else
		reason="guest stopped without a result"
	fi
	if [[ -z $reason ]]; then
		PASSED=$((PASSED + 1))
		say "$name PASS (${secs}s) ${figures% }"
	else
		FAILED=$((FAILED + 1))
		FAILED_NAMES+=("$name")
		say "$name FAIL (${secs}s): $reason"
		[[ -n $figures ]] && say "$name figures: ${figures% }"
		say "$name console (last 15 lines of ${log#"$ROOT"/}):"
		tail -n 15 "$log" | tr -d '\r' | sed 's/^/    | /'
	fi
}

# --- main ----------------------------------------------------------------------------

main() {
	local shell=0 build=1 names=() n
	while [[ $# -gt 0 ]]; do
		case $1 in
		-h | --help) usage; exit 0 ;;
		--list) default_scenarios; exit 0 ;;
		--shell) shell=1 ;;
		--no-build) build=0 ;;
		-*) die "unknown option $1 (see --help)" ;;
		*) names+=("$1") ;;
		esac
		shift
	done
	[[ $shell == 1 ]] && names=(shell)
	if [[ ${#names[@]} == 0 ]]; then
		mapfile -t names < <(default_scenarios)
	fi
	for n in "${names[@]}"; do
		[[ $n == shell ]] || scenario_file "$n" >/dev/null ||
			die "unknown scenario '$n' (known: $(default_scenarios | paste -sd' ' -); self-tests: $(find "$HERE/selftest" -name '*.sh' -printf '%f\n' | sed 's|\.sh$||' | sort | paste -sd' ' -))"
	done
	mkdir -p "$CACHE" "$LOGS"
	local t0=$SECONDS
	ensure_packages
	fetch_kernel
	[[ $build == 1 ]] && build_guest_tools
	build_initramfs "${names[@]}"
	say "kernel $KVER, $((SECONDS - t0))s to prepare; scenarios: ${names[*]}"
	if [[ $shell == 1 ]]; then
		qemu_args shell
		exec "${QEMU[@]}" -serial mon:stdio -append "$CMDLINE_BASE tierd.scenario=shell"
	fi
	local t1=$SECONDS
	for n in "${names[@]}"; do
		run_scenario "$n"
	done
	say "boots took $((SECONDS - t1))s"
	[[ $FAILED == 0 ]] || say "failed: ${FAILED_NAMES[*]} (console logs in ${LOGS#"$ROOT"/}/)"
	say "$PASSED passed, $FAILED failed"
	[[ $FAILED == 0 ]]
}

main "$@"
