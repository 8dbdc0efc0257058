#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: `fuzz/run.sh` gives each 60 s, `fuzz/run.sh 10` 10 s.
# Works on a stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags
# (-Zsanitizer=address and friends). Set SANITIZER=none to build without AddressSanitizer.
# The committed seeds in fuzz/corpus/<target>/ are read but not added to (new inputs go to a
# scratch directory); a crash is saved in fuzz/artifacts/<target>/ and makes this exit non-zero.
set -euo pipefail

seconds="${1:-60}"
sanitizer="${SANITIZER:-address}"
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2; exit 2; }

export RUSTC_BOOTSTRAP=1
targets=(xmlrpc_decode range_parse name_check resume_record)
cargo fuzz build -O --sanitizer "$sanitizer"

failed=()
for target in "${targets[@]}"; do
    echo "== $target: ${seconds} s"
    mkdir -p "corpus/$target"
    # A scratch corpus directory first, so the committed seeds stay as they are; the committed
    # seeds are read as a second corpus directory.
    scratch="$(mktemp -d)"
    if ! cargo fuzz run -O --sanitizer "$sanitizer" "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>"$scratch.log"; then
        failed+=("$target")
        tail -n 40 "$scratch.log" >&2
    else
        grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|Done [0-9]+ runs)' "$scratch.log" || tail -n 3 "$scratch.log"
    fi
    rm -rf "$scratch" "$scratch.log"
done

if ((${#failed[@]})); then
    echo "crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "all targets ran ${seconds} s without a crash"
