#!/usr/bin/env bash
# Fuzzing with cargo-fuzz on the stable toolchain (`-s none`: no sanitizer).
#   scripts/fuzz.sh build              build every target (CI does this)
#   scripts/fuzz.sh run TARGET RUNS    run TARGET for RUNS executions on its corpus
# Targets: dogstatsd, ssf, framing, hll, forward, otlp. Corpora live in fuzz/corpus/<target>.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi
case "${1:-build}" in
    build)
        cargo fuzz build -s none --release ;;
    run)
        target=$2; runs=${3:-10000000}
        mkdir -p "fuzz/corpus/$target"
        cargo fuzz run -s none --release "$target" "fuzz/corpus/$target" -- \
            -runs="$runs" -max_len=4096 -print_final_stats=1 ;;
    *) echo "usage: scripts/fuzz.sh build | run TARGET RUNS" >&2; exit 2 ;;
esac
