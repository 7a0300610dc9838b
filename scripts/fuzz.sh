#!/usr/bin/env bash
# Build every fuzz target with libFuzzer coverage instrumentation on the stable
# toolchain (no cargo-fuzz needed) and run each for a while.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
# Crashes are written to fuzz/artifacts/TARGET/; the corpus grows in fuzz/corpus/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-30}"; shift || true
export RUSTFLAGS="${RUSTFLAGS:-} --cfg fuzzing -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
# An explicit --target keeps RUSTFLAGS away from build scripts and proc macros.
host="$(rustc -vV | sed -n "s/^host: //p")"
cargo build --release --bins --quiet --target "$host"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
fi
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  echo "== fuzz $t for ${secs}s"
  "$CARGO_TARGET_DIR/$host/release/$t" -max_total_time="$secs" -print_final_stats=1 \
     -artifact_prefix="artifacts/$t/" "corpus/$t" 2>&1 | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|==|.*ERROR|.*panicked|SUMMARY)' || true
  if [ -n "$(ls -A "artifacts/$t")" ]; then
    echo "fuzz target $t found a crash: $(ls "artifacts/$t")" >&2
    exit 1
  fi
done
