#!/usr/bin/env bash
# 1 GiB between two shoal nodes on loopback: over iroh (QUIC, by ticket) against plain HTTP
# over TCP, measured in the same run, alternating, the median of each. Prints the throughput of
# each and iroh's as a fraction of TCP's (the target is at least 0.5).
#
#   bash bench/iroh.sh             # builds target/release/shoal first
#   bash bench/iroh.sh --no-build  # uses target/release/shoal (or $SHOAL_BIN) as it is
#   SIZE_MIB=256 REPS=5 bash bench/iroh.sh
#
# Everything stays on this machine: the nodes run with --local-only (no relay, no look-up, no
# port mapping, no mDNS), the endpoint is bound to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
REPS=${REPS:-3}
[ "${1:-}" = "--no-build" ] || cargo build --release -p shoal >&2
BIN=${SHOAL_BIN:-target/release/shoal}
export SHOAL_LOCAL_ONLY=1
work=$(mktemp -d /tmp/shoal-iroh-bench.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

mkdir -p "$work/share"
head -c $((SIZE_MIB << 20)) /dev/urandom > "$work/share/big.bin"
timeout 60 "$BIN" serve --dir "$work/share" --state "$work/state" --listen 127.0.0.1:0 \
  --iroh-listen 127.0.0.1:0 > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do grep -q '^ticket ' "$work/serve.log" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$work/serve.log")
ticket=$(sed -n 's/^ticket //p' "$work/serve.log")
[ -n "$ticket" ] || { cat "$work/serve.log" >&2; exit 1; }
# The node hashes the file before it shares it; wait (bounded) until it lists it.
for _ in $(seq 1 600); do "$BIN" ls --node "$url" 2>/dev/null | grep -q big.bin && break; sleep 0.1; done

one() { # one <label> <peer> [flags]: prints seconds
  local label=$1 peer=$2; shift 2
  rm -rf "$work/out" "$work/get-state"; mkdir -p "$work/out"
  local t0 t1
  t0=$(date +%s.%N)
  timeout 300 "$BIN" get big.bin --peer "$peer" --state "$work/get-state" -o "$work/out/" -q "$@"
  t1=$(date +%s.%N)
  cmp -s "$work/share/big.bin" "$work/out/big.bin" || { echo "$label: the copy differs" >&2; exit 1; }
  echo "$t1 - $t0" | bc
}
tcp=(); quic=()
for rep in $(seq 1 "$REPS"); do
  if [ $((rep % 2)) -eq 1 ]; then
    tcp+=("$(one tcp "$url" --no-iroh)"); quic+=("$(one iroh "$ticket")")
  else
    quic+=("$(one iroh "$ticket")"); tcp+=("$(one tcp "$url" --no-iroh)")
  fi
  echo "rep $rep: tcp ${tcp[-1]} s, iroh ${quic[-1]} s" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mt=$(median "${tcp[@]}"); mq=$(median "${quic[@]}")
echo "| transport | median s | MiB/s | runs |"
echo "| --- | --- | --- | --- |"
echo "| TCP (http://) | $mt | $(echo "scale=1; $SIZE_MIB / $mt" | bc) | ${tcp[*]} |"
echo "| iroh (ticket) | $mq | $(echo "scale=1; $SIZE_MIB / $mq" | bc) | ${quic[*]} |"
echo
echo "iroh throughput / TCP throughput: $(echo "scale=3; $mt / $mq" | bc) (target >= 0.5)"
