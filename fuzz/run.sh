#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 60); fails on the first crash.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); RUSTC_BOOTSTRAP lets the stable toolchain
# build with the sanitizer flags cargo-fuzz passes. Corpora stay in fuzz/corpus/<target>.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
targets=$(cargo fuzz list)
# Seeds: the repository's own examples, so the structured targets start from valid input.
seed() {
    local t=$1
    shift
    mkdir -p "corpus/$t"
    cp "$@" "corpus/$t/"
}
seed scenario ../scenarios/*.toml
seed config ../tierd.example.toml
mkdir -p corpus/graph_toml
printf '[node.0]\ntarget = 1\nfallback = "2"\n[node.1]\ntarget = 2\n' >corpus/graph_toml/seed
mkdir -p corpus/state_file && cp corpus/graph_toml/seed corpus/state_file/seed
mkdir -p corpus/control_protocol
printf '{"op":"store","node":0,"value":[49,10]}' >corpus/control_protocol/store
printf '{"op":"apply","graph":"[node.0]\\ntarget = 1\\n","dry_run":false}' >corpus/control_protocol/apply
mkdir -p corpus/trace_text && printf '0x1000 R\n0x1fff W\n\n7\n# c\n' >corpus/trace_text/seed
cargo fuzz build
for t in $targets; do
    mkdir -p "corpus/$t"
    log="${TMPDIR:-/tmp}/tierd-fuzz-$t.log"
    echo "== $t: ${secs} s"
    # -timeout: an input taking over 10 s is a hang; libFuzzer exits non-zero on any crash.
    set +e
    cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    grep -E "^stat::number_of_executed_units|^SUMMARY|panicked at" "$log" || true
    if [ "$rc" -ne 0 ]; then
        tail -40 "$log" >&2
        echo "fuzz target $t failed (exit $rc); see $log and fuzz/artifacts/$t" >&2
        exit 1
    fi
done
echo "all fuzz targets ran ${secs} s each without a crash"
