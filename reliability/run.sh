#!/usr/bin/env bash
# The whole reliability and security suite, and docs/RELIABILITY.md from its results.
#   reliability/run.sh            every part (about 15 minutes on 2 cores)
#   ROUNDS=5 FUZZ_SECONDS=10 SCALE_SIZES=64 reliability/run.sh   a shorter run
# The fast part (hostile input, engine faults, SIGKILL resume, full disk) is in `cargo test`
# and runs in CI; this script runs it again in release mode along with the long part: the
# seeded fault rounds, load, scale simulation and fuzzing.
set -uo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d /tmp/shoal-reliability.XXXXXX)"
rounds="${ROUNDS:-20}"
fuzz_seconds="${FUZZ_SECONDS:-60}"
read -r -a scale_sizes <<< "${SCALE_SIZES:-64 256}"
echo "results go to $out"

cargo build --release -p shoal -p shoal-bench -p reliability || exit 2

echo "== tests: hostile input and peers, guards, engine faults, interop, layers, multi-process get and security"
cargo test --release -p shoal-node --test bad_input --test engine --test interop --test hostile --test guard --test layers --test stranger_limits > "$out/tests-node.txt" 2>&1
cargo test --release -p shoal --test get > "$out/tests-get.txt" 2>&1
cargo test --release -p shoal --test security > "$out/tests-security.txt" 2>&1

echo "== strangers: hostile peers and freshness"
target/release/strangers --json "$out/strangers.json" | tee "$out/strangers.txt"

echo "== fault rounds ($rounds)"
target/release/faults --rounds "$rounds" --json "$out/faults.json" | tee "$out/faults.txt"

echo "== load"
target/release/load --json "$out/load.json" | tee "$out/load.txt"

echo "== scale (${scale_sizes[*]} nodes)"
target/release/scale "${scale_sizes[@]}" --json "$out/scale.json" | tee "$out/scale.txt"

echo "== fuzzing (${fuzz_seconds} s per target)"
if command -v cargo-fuzz >/dev/null; then
    fuzz/run.sh "$fuzz_seconds" > "$out/fuzz.txt" 2>&1
    echo $? > "$out/fuzz.rc"
else
    echo "cargo-fuzz is not installed (cargo install cargo-fuzz)" > "$out/fuzz.txt"
fi

python3 reliability/report.py "$out" "rounds=$rounds fuzz_seconds=$fuzz_seconds scale=${scale_sizes[*]}" > docs/RELIABILITY.md
echo "wrote docs/RELIABILITY.md"
