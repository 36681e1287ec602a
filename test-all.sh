#!/usr/bin/env bash
# Runs every test tierd has, cheapest failure first: formatting, lints, docs, the unit,
# property, contract, golden and FUSE tests, the loom model of the path table, a short run
# of every fuzz target (cargo-fuzz, installed when missing), and the real-kernel scenarios
# in QEMU (tests/vm/run.sh installs QEMU and fetches the guest kernel
# itself). Run it as root: the FUSE and VM tests need it, and under CI=true they fail rather
# than skip when they can't run.
set -euo pipefail
cd "$(dirname "$0")"
jobs=${TIERD_JOBS:-2}

step() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null; then
  echo "test-all: cargo is missing; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done
if ! command -v setpriv >/dev/null && [ "$(id -u)" = 0 ]; then
  # The FUSE test checks that a non-root writer gets EACCES, through util-linux's setpriv.
  apt-get update -qq && apt-get install -y -qq util-linux >/dev/null
fi

step "format"
cargo fmt --all -- --check

step "clippy"
cargo clippy -j"$jobs" --workspace --all-targets -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc -j"$jobs" --workspace --no-deps --quiet

step "tests (unit, property, contract, golden, FUSE)"
cargo test -j"$jobs" --workspace

step "loom model of the path table"
RUSTFLAGS="--cfg loom -D warnings" cargo test -j"$jobs" -p tierd-core --release --target-dir target/loom --lib loom

step "fuzz targets, ${TIERD_FUZZ_SECONDS:-15} s each (longer: TIERD_FUZZ_SECONDS=600 ./test-all.sh)"
if ! command -v cargo-fuzz >/dev/null; then
  cargo install --locked -j"$jobs" cargo-fuzz
fi
CARGO_BUILD_JOBS="$jobs" fuzz/run.sh "${TIERD_FUZZ_SECONDS:-15}"

step "real-kernel test bed: harness self-test (a failing scenario, a panic, a hang)"
tests/vm/selftest.sh

step "real-kernel scenarios (QEMU)"
tests/vm/run.sh
