#!/usr/bin/env bash
# Download benchmarks of shoal, as ratios against curl and aria2c measured in the same run.
#
#   bash bench/download.sh [--quick] [--reps N] [--no-build] [--only CASE]
#
# Builds shoal (release), makes random test files in a temporary directory under /tmp, runs the
# five cases below, cleans up (nodes, nginx, files) and prints a Markdown table on stdout; the
# log of what it does goes to stderr. See bench/README.md for what each case measures and why.
#   1. one source, big file, loopback, to disk: shoal from one node vs curl from nginx
#      (1b: the same into tmpfs, /dev/shm)
#   2. four throttled HTTP mirrors (25 MiB/s each): shoal vs aria2c -s4 -x4 -k1M
#   3. four shoal peers with --max-upload-rate 25M: % of the 100 MiB/s they allow together
#   4. peak RSS of shoal get on a 4 GiB file (curl and aria2c for reference)
#   5. bytes fetched again after SIGKILL half way and a rerun
#   6. a folder of 2,004 files (2,000 x 16 KiB nested + 4 x 8 MiB) from one shoal node vs
#      aria2c -j16 -x1 -i LIST from nginx, and shoal's peak RSS
#   7. one server capping each connection at 10 MiB/s, 8 allowed: shoal vs aria2c -x8 -s8 -k1M
#   8. four https mirrors (25 MiB/s each): shoal vs aria2c -s4 -x4 -k1M --ca-certificate
# --quick shrinks the files (256 MiB / 50 MiB / 512 MiB) and does one repetition; --no-build uses
# the shoal binary already in target/release (or $SHOAL_BIN); --only runs one case (a number
# 1-8 or a name: one, mirrors, peers, rss, resume, folder, one-server, https; repeatable).
# Case 7 is over https when ONE_SERVER_SCHEME=https (the certificate is made by the script).
set -euo pipefail
# Nothing leaves this machine: no public relays, look-ups, port mapping or mDNS.
export SHOAL_LOCAL_ONLY=1

usage() { sed -n '2,22p' "$0" >&2; }

ARGS="$*"
QUICK=0
REPS=3
BUILD=1
ONLY=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; REPS=1 ;;
    --reps) REPS=$2; shift ;;
    --no-build) BUILD=0 ;;
    --only)
      case "$2" in
        1|one) ONLY+=(1) ;; 2|mirrors) ONLY+=(2) ;; 3|peers) ONLY+=(3) ;; 4|rss) ONLY+=(4) ;;
        5|resume) ONLY+=(5) ;; 6|folder) ONLY+=(6) ;; 7|one-server) ONLY+=(7) ;; 8|https) ONLY+=(8) ;;
        *) usage; exit 2 ;;
      esac
      shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage; exit 2 ;;
  esac
  shift
done

# Case 7's server: http, or https with ONE_SERVER_SCHEME=https (the script's own CA signs it
# unless ONE_SERVER_CERT, _KEY and _CA name PEM files); both tools are told to trust the CA.
ONE_SERVER_SCHEME=${ONE_SERVER_SCHEME:-http}
ONE_SERVER_CERT=${ONE_SERVER_CERT:-}
ONE_SERVER_KEY=${ONE_SERVER_KEY:-}
ONE_SERVER_CA=${ONE_SERVER_CA:-}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
SHOAL=${SHOAL_BIN:-$root/target/release/shoal}
MIRRORS=$here/mirrors.sh

if [ "$QUICK" = 1 ]; then
  BIG_MIB=256; MULTI_MIB=50; HUGE_MIB=512; RESUME_RATE=12m
else
  BIG_MIB=1024; MULTI_MIB=200; HUGE_MIB=4096; RESUME_RATE=50m
fi
PIECE=$((1 << 20))
MIB=$((1 << 20))

log() { echo "[bench $(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in nginx curl aria2c; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install nginx-light curl aria2)"
done
[ -x /usr/bin/time ] || die "/usr/bin/time is missing (apt-get install time)"

# ---------------------------------------------------------------------------------------------
# Scratch space and cleanup: every process we start is recorded and killed by its pid.

TMP=$(mktemp -d /tmp/shoal-bench.XXXXXX)
export MIRRORS_STATE=$TMP/mirrors
PIDS=()
ROWS=$TMP/rows.md
NOTES=$TMP/notes.md
: > "$ROWS"; : > "$NOTES"

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -9 "$pid" 2>/dev/null || true; done
  "$MIRRORS" stop >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Whether case N runs (all of them without --only).
wanted() { [ "${#ONLY[@]}" = 0 ] || printf '%s\n' "${ONLY[@]}" | grep -qx "$1"; }
wanted 1 || BIG_MIB=0
wanted 4 || HUGE_MIB=0
{ wanted 2 || wanted 3 || wanted 5 || wanted 7 || wanted 8; } || MULTI_MIB=0

# Space: the big file and its copy, the 4 GiB file and its copy, and a few 200 MiB files.
need_mib=$((2 * HUGE_MIB + 2 * BIG_MIB + 8 * MULTI_MIB + 1024))
avail_mib=$(($(df -Pk "$TMP" | awk 'NR == 2 { print $4 }') / 1024))
if [ "$avail_mib" -lt "$need_mib" ]; then
  wanted 4 && HUGE_MIB=$(( (avail_mib - 2 * BIG_MIB - 8 * MULTI_MIB - 1024) / 2 ))
  [ "$HUGE_MIB" -ge 256 ] || HUGE_MIB=0
  echo "- Only ${avail_mib} MiB free under /tmp: case 4 uses ${HUGE_MIB} MiB (0 = skipped)." >> "$NOTES"
fi

# ---------------------------------------------------------------------------------------------
# Helpers

row() { echo "| $* |" >> "$ROWS"; }
note() { echo "- $*" >> "$NOTES"; log "note: $*"; }

# median of the arguments
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# arithmetic on decimals: calc 'a / b' → printed with %.3f unless a format is given
calc() { awk "BEGIN { printf \"${2:-%.3f}\", ($1) }"; }
file_size() { stat -c %s "$1"; }

make_file() { # PATH MIB
  log "making $2 MiB of random data: $1"
  mkdir -p "$(dirname "$1")"
  head -c "$(($2 * MIB))" /dev/urandom > "$1"
}

# Runs a command, timed, under a timeout; sets SECS and RSS_KB. stdout and stderr go to $TMP/last.*
# The timeout wraps /usr/bin/time so that RSS is the tool's own.
run_timed() { # TIMEOUT_SECONDS CMD...
  local limit=$1; shift
  sync
  local t0 t1 rc=0
  t0=$(date +%s%N)
  timeout "$limit" /usr/bin/time -f %M -o "$TMP/last.rss" "$@" > "$TMP/last.out" 2> "$TMP/last.err" || rc=$?
  t1=$(date +%s%N)
  SECS=$(calc "($t1 - $t0) / 1e9" %.4f)
  RSS_KB=$(tail -1 "$TMP/last.rss" 2>/dev/null || echo 0)
  if [ "$rc" != 0 ]; then
    log "command failed (exit $rc, ${SECS}s): $*"
    sed 's/^/    /' "$TMP/last.err" | tail -5 >&2
    return "$rc"
  fi
}

# Times an fsync of one file (coreutils `sync FILE`), without the global sync run_timed does
# first (which would have flushed the file already); sets SECS.
time_fsync() { # FILE
  local t0 t1
  t0=$(date +%s%N)
  timeout 600 sync "$1" || return 1
  t1=$(date +%s%N)
  SECS=$(calc "($t1 - $t0) / 1e9" %.4f)
}

# Starts `shoal serve` on 127.0.0.1:0 and waits until it serves NAME; sets NODE_URL.
start_node() { # DIR STATE NAME [EXTRA ARGS...]
  local dir=$1 state=$2 name=$3; shift 3
  local logf="$state.log" i
  mkdir -p "$state"
  timeout 7200 "$SHOAL" serve --dir "$dir" --state "$state" --listen 127.0.0.1:0 "$@" > "$logf" 2>&1 &
  PIDS+=($!)
  local pid=$!
  NODE_URL=
  for i in $(seq 1 1200); do
    kill -0 "$pid" 2>/dev/null || { cat "$logf" >&2; die "shoal serve exited early (log above)"; }
    NODE_URL=$(sed -n 's/^node URL \(http[^ ]*\).*/\1/p' "$logf" 2>/dev/null | head -1)
    if [ -n "$NODE_URL" ] && curl -sf -r 0-0 -o /dev/null "$NODE_URL/files/$name"; then
      return 0
    fi
    sleep 0.25
  done
  die "shoal serve did not serve $name within 300 s"
}

stop_nodes() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -9 "$pid" 2>/dev/null || true; done
  PIDS=()
}

start_mirrors() { # DIR RATE... ; sets MIRROR_URLS (array)
  mapfile -t MIRROR_URLS < <(timeout 30 "$MIRRORS" start "$@")
  [ "${#MIRROR_URLS[@]}" -eq $(($# - 1)) ] || die "mirrors did not start"
}
stop_mirrors() { timeout 30 "$MIRRORS" stop >/dev/null 2>&1 || true; }

access_log() { echo "$MIRRORS_STATE/access.log"; }
clear_access_log() { sleep 0.3; : > "$(access_log)"; }
# Sums of the access log since it was cleared: "BYTES COUNT_503 REQUESTS"
access_sums() {
  sleep 0.5 # nginx logs a response when it ends; give a just-closed connection a moment
  awk '{ b += $3; n++; if ($2 == 503) e++ } END { printf "%d %d %d\n", b, e, n }' "$(access_log)"
}

check_size() { # PATH EXPECTED
  local got
  got=$(file_size "$1" 2>/dev/null || echo missing)
  [ "$got" = "$2" ] || { log "$1 has size $got, expected $2"; return 1; }
}

# ---------------------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
  log "building shoal (release)"
  (cd "$root" && timeout 1800 cargo build --release -p shoal) >&2 || die "cargo build failed"
fi
[ -x "$SHOAL" ] || die "$SHOAL is missing after the build"

# ---------------------------------------------------------------------------------------------
case1() {
  local dir=$TMP/c1/share name=big.bin size
  make_file "$dir/$name" "$BIG_MIB"; size=$(file_size "$dir/$name"); sync
  start_mirrors "$dir" 0
  start_node "$dir" "$TMP/c1/node-state" "$name"
  # This case is the noisiest (page cache writeback): two more repetitions in a full run.
  local reps=$REPS
  [ "$QUICK" = 1 ] || [ "$reps" -ge 5 ] || reps=5
  case1_runs "$TMP/c1" disk "$reps" "${MIRROR_URLS[0]}" "$NODE_URL" "$dir" "$name" "$size" || return 1
  # 1b: the same into tmpfs, where the virtual disk's write budget plays no part: the engine and
  # the network path alone. Skipped when /dev/shm lacks room for the file.
  local shm; shm=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }')
  if [ -n "$shm" ] && [ "$shm" -gt $((BIG_MIB * 1024 * 3 / 2)) ]; then
    local t; t=$(mktemp -d /dev/shm/shoal-bench.XXXXXX)
    case1_runs "$t" tmpfs "$reps" "${MIRROR_URLS[0]}" "$NODE_URL" "$dir" "$name" "$size" || { rm -rf "$t"; return 1; }
    rm -rf "$t"
  else
    note "case 1b skipped: /dev/shm has less than 1.5x the file free"
  fi
  stop_nodes; stop_mirrors
  rm -rf "$TMP/c1"
}

# One series of case 1 into OUT_DIR (on disk, or tmpfs): REPS alternating curl and shoal runs.
case1_runs() { # OUT_DIR WHERE REPS MIRROR_URL NODE_URL SHARE NAME SIZE
  local odir=$1 where=$2 reps=$3 murl=$4 nurl=$5 dir=$6 name=$7 size=$8
  local out=$odir/out.bin st=$odir/get-state label=1 target=1.1
  [ "$where" = disk ] || { label=1b; target=1.0; }
  local curl_t=() curlsync_t=() shoal_t=() rep order tool shoal_rss=() curl_rss=()
  for rep in $(seq 1 "$reps"); do
    if [ $((rep % 2)) = 1 ]; then order="curl shoal"; else order="shoal curl"; fi
    for tool in $order; do
      rm -rf "$out" "$st"
      if [ "$tool" = curl ]; then
        run_timed 600 curl -s -o "$out" "$murl/$name" || return 1
        check_size "$out" "$size" || return 1
        curl_t+=("$SECS"); curl_rss+=("$RSS_KB")
        log "case $label rep $rep curl: ${SECS}s"
        # shoal fsyncs the file before it renames it; curl does not. Time that step for curl too.
        local t=$SECS; time_fsync "$out" || return 1
        curlsync_t+=("$(calc "$t + $SECS" %.4f)")
      else
        run_timed 600 "$SHOAL" get "$name" --peer "$nurl" -o "$out" --state "$st" --quiet || return 1
        check_size "$out" "$size" || return 1
        shoal_t+=("$SECS"); shoal_rss+=("$RSS_KB")
        log "case $label rep $rep shoal: ${SECS}s"
      fi
    done
  done
  cmp -s "$out" "$dir/$name" || note "case $label: the last download differs from the source"
  rm -rf "$out" "$st"
  local s c cs; s=$(median "${shoal_t[@]}"); c=$(median "${curl_t[@]}"); cs=$(median "${curlsync_t[@]}")
  local ratio; ratio=$(calc "$s / $c")
  row "${label}. one source, ${BIG_MIB} MiB, loopback, to ${where} | shoal ${s} s ($(calc "$size / $MIB / $s" %.0f) MiB/s) | curl from nginx ${c} s ($(calc "$size / $MIB / $c" %.0f) MiB/s); curl + fsync ${cs} s | **time ratio ${ratio}** (vs curl + fsync: $(calc "$s / $cs")) | ≤ ${target} | $(calc "$ratio <= $target" %d | sed 's/1/yes/;s/0/NO/')"
  note "case $label runs (s): shoal ${shoal_t[*]}; curl ${curl_t[*]}; curl + fsync ${curlsync_t[*]}; peak RSS (KiB): shoal ${shoal_rss[*]}; curl ${curl_rss[*]}"
}

# ---------------------------------------------------------------------------------------------
MULTI_DIR=$TMP/multi
MULTI_NAME=multi.bin
MULTI_ID=

case2() {
  local dir=$MULTI_DIR name=$MULTI_NAME size out=$TMP/c2/out st=$TMP/c2/get-state
  mkdir -p "$TMP/c2/out"
  size=$(file_size "$dir/$name")
  start_mirrors "$dir" 25m 25m 25m 25m
  local urls=() u
  for u in "${MIRROR_URLS[@]}"; do urls+=("$u/$name"); done
  local ideal; ideal=$(calc "$size / (100 * $MIB)" %.3f)

  # A first run with --json tells the content id (for --hash) and which mirrors contributed.
  clear_access_log
  run_timed 300 "$SHOAL" get "${urls[@]}" -o "$out/$name" --state "$st" --json || return 1
  MULTI_ID=$(grep '"event":"done"' "$TMP/last.out" | grep -o '"id":"[0-9a-f]*"' | cut -d'"' -f4)
  read -r b e n < <(access_sums)
  note "case 2 first run (--json, no --hash): ${SECS}s, ${e} responses 503 of ${n}, $(calc "$b / $MIB" %.1f) MiB sent by nginx; per source: $(grep '"event":"done"' "$TMP/last.out" | grep -o '"bytes":[0-9]*' | cut -d: -f2 | awk '{ printf "%.1f ", $1 / 1048576 }')MiB"
  local hash=(); [ -n "$MULTI_ID" ] && hash=(--hash "$MULTI_ID")

  local shoal_t=() aria_t=() shoal_503=0 aria_503=0 shoal_bytes=() rep order tool
  for rep in $(seq 1 "$REPS"); do
    if [ $((rep % 2)) = 1 ]; then order="aria2c shoal"; else order="shoal aria2c"; fi
    for tool in $order; do
      rm -rf "$out" "$st"; mkdir -p "$out"
      clear_access_log
      if [ "$tool" = aria2c ]; then
        run_timed 300 aria2c -s4 -x4 -k1M -d "$out" -o "$name" "${urls[@]}" --allow-overwrite=true --file-allocation=none || return 1
        check_size "$out/$name" "$size" || return 1
        aria_t+=("$SECS")
        read -r b e n < <(access_sums); aria_503=$((aria_503 + e))
      else
        run_timed 300 "$SHOAL" get "${urls[@]}" -o "$out/$name" --state "$st" --quiet "${hash[@]}" || return 1
        check_size "$out/$name" "$size" || return 1
        shoal_t+=("$SECS")
        read -r b e n < <(access_sums); shoal_503=$((shoal_503 + e)); shoal_bytes+=("$(calc "$b / $MIB" %.1f)")
      fi
      log "case 2 rep $rep $tool: ${SECS}s (503s: $e of $n responses)"
    done
  done
  rm -rf "$TMP/c2"
  stop_mirrors
  local s a; s=$(median "${shoal_t[@]}"); a=$(median "${aria_t[@]}")
  local pct ratio; pct=$(calc "100 * $ideal / $s" %.1f); ratio=$(calc "$s / $a")
  row "2a. 4 mirrors × 25 MiB/s, ${MULTI_MIB} MiB | shoal ${s} s | ideal ${ideal} s (100 MiB/s) | **${pct}% of 100 MiB/s** | ≥ 97% | $(calc "$pct >= 97" %d | sed 's/1/yes/;s/0/NO/')"
  row "2b. same | shoal ${s} s | aria2c -s4 -x4 -k1M ${a} s ($(calc "100 * $ideal / $a" %.1f)%) | **time ratio ${ratio}** | ≤ 1.0 | $(calc "$ratio <= 1.0" %d | sed 's/1/yes/;s/0/NO/')"
  note "case 2 runs (s): shoal ${shoal_t[*]}; aria2c ${aria_t[*]}; 503 responses in timed runs: shoal ${shoal_503}, aria2c ${aria_503}; MiB nginx sent per shoal run: ${shoal_bytes[*]} (file: $(calc "$size / $MIB" %.1f))"
}

# ---------------------------------------------------------------------------------------------
case3() {
  local name=$MULTI_NAME size out=$TMP/c3/out.bin st=$TMP/c3/get-state i peers=()
  size=$(file_size "$MULTI_DIR/$name")
  for i in 1 2 3 4; do
    mkdir -p "$TMP/c3/p$i"
    ln "$MULTI_DIR/$name" "$TMP/c3/p$i/$name"
    start_node "$TMP/c3/p$i" "$TMP/c3/p$i-state" "$name" --max-upload-rate 25M
    peers+=(--peer "$NODE_URL")
  done
  local ideal; ideal=$(calc "$size / (100 * $MIB)" %.3f)
  # One untimed run with --json shows how the peers shared the work.
  rm -rf "$out" "$st"
  run_timed 300 "$SHOAL" get "$name" "${peers[@]}" -o "$out" --state "$st" --json || return 1
  note "case 3 first run (--json): ${SECS}s; MiB per peer: $(grep '"event":"done"' "$TMP/last.out" | grep -o '"bytes":[0-9]*' | cut -d: -f2 | awk '{ printf "%.1f ", $1 / 1048576 }')"
  local shoal_t=() rep
  for rep in $(seq 1 "$REPS"); do
    rm -rf "$out" "$st"
    run_timed 300 "$SHOAL" get "$name" "${peers[@]}" -o "$out" --state "$st" --quiet || return 1
    check_size "$out" "$size" || return 1
    shoal_t+=("$SECS")
    log "case 3 rep $rep: ${SECS}s"
  done
  cmp -s "$out" "$MULTI_DIR/$name" || note "case 3: the download differs from the source"
  stop_nodes
  rm -rf "$TMP/c3"
  local s pct; s=$(median "${shoal_t[@]}"); pct=$(calc "100 * $ideal / $s" %.1f)
  row "3. 4 shoal peers × --max-upload-rate 25M, ${MULTI_MIB} MiB | shoal ${s} s | ideal ${ideal} s (100 MiB/s) | **${pct}% of 100 MiB/s** | ≥ 95% | $(calc "$pct >= 95" %d | sed 's/1/yes/;s/0/NO/')"
  note "case 3 runs (s): ${shoal_t[*]}"
}

# ---------------------------------------------------------------------------------------------
case4() {
  if [ "$HUGE_MIB" = 0 ]; then row "4. peak RSS | skipped: not enough space under /tmp | | | ≤ 64 MiB | -"; return 0; fi
  local dir=$TMP/c4/share name=huge.bin size out=$TMP/c4/out st=$TMP/c4/get-state
  make_file "$dir/$name" "$HUGE_MIB"; size=$(file_size "$dir/$name"); sync
  start_node "$dir" "$TMP/c4/node-state" "$name"
  start_mirrors "$dir" 0
  mkdir -p "$out"
  run_timed 1200 "$SHOAL" get "$name" --peer "$NODE_URL" -o "$out/$name" --state "$st" --quiet || return 1
  check_size "$out/$name" "$size" || return 1
  local s_rss=$RSS_KB s_t=$SECS
  rm -rf "$out"; mkdir -p "$out"
  run_timed 1200 curl -s -o "$out/$name" "${MIRROR_URLS[0]}/$name" || return 1
  local c_rss=$RSS_KB c_t=$SECS
  time_fsync "$out/$name" || return 1
  local cs_t; cs_t=$(calc "$c_t + $SECS" %.2f)
  rm -rf "$out"; mkdir -p "$out"
  run_timed 1200 aria2c -d "$out" -o "$name" "${MIRROR_URLS[0]}/$name" --allow-overwrite=true --file-allocation=none || return 1
  local a_rss=$RSS_KB a_t=$SECS
  stop_nodes; stop_mirrors
  rm -rf "$TMP/c4"
  local mib; mib=$(calc "$s_rss / 1024" %.1f)
  row "4. peak RSS, ${HUGE_MIB} MiB from one node | shoal get ${mib} MiB (${s_t} s) | curl $(calc "$c_rss / 1024" %.1f) MiB (${c_t} s; ${cs_t} s with fsync), aria2c $(calc "$a_rss / 1024" %.1f) MiB (${a_t} s) | **${mib} MiB** | ≤ 64 MiB | $(calc "$mib <= 64" %d | sed 's/1/yes/;s/0/NO/')"
}

# ---------------------------------------------------------------------------------------------
case5() {
  local dir=$MULTI_DIR name=$MULTI_NAME size out=$TMP/c5/out.bin st=$TMP/c5/get-state
  size=$(file_size "$dir/$name")
  mkdir -p "$TMP/c5"
  start_mirrors "$dir" "$RESUME_RATE"
  local url=${MIRROR_URLS[0]}/$name
  local hash=(); [ -n "$MULTI_ID" ] && hash=(--hash "$MULTI_ID")
  clear_access_log

  # First run: in the background, killed with SIGKILL once its progress says half is done.
  "$SHOAL" get "$url" -o "$out" --state "$st" --json "${hash[@]}" > "$TMP/c5/run1.jsonl" 2> "$TMP/c5/run1.err" &
  local pid=$! deadline=$((SECONDS + 300)) done_at=0 killed=0 line
  while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
    line=$(grep '"event":"progress"' "$TMP/c5/run1.jsonl" 2>/dev/null | tail -1 || true)
    if [ -n "$line" ]; then
      local d t
      d=$(echo "$line" | grep -o '"done":[0-9]*' | cut -d: -f2)
      t=$(echo "$line" | grep -o '"total":[0-9]*' | cut -d: -f2)
      if [ "${t:-0}" -gt 0 ] && [ $((2 * d)) -ge "$t" ]; then
        kill -9 "$pid"; killed=1; done_at=$d; break
      fi
    fi
    sleep 0.05
  done
  wait "$pid" 2>/dev/null || true
  if [ -e "$out" ]; then
    row "5. refetch after SIGKILL | failed: the first run finished before it was killed (progress said $(calc "$done_at / $MIB" %.1f) MiB) | | | | NO"
    stop_mirrors; return 1
  fi
  if [ "$killed" != 1 ]; then
    kill -9 "$pid" 2>/dev/null || true
    row "5. refetch after SIGKILL | failed: the first run ended before half way (or hung) | | | | NO"
    stop_mirrors; return 1
  fi
  local b1 e1 n1; read -r b1 e1 n1 < <(access_sums)
  clear_access_log

  # Second run: the same command, to completion.
  run_timed 300 "$SHOAL" get "$url" -o "$out" --state "$st" --json "${hash[@]}" || return 1
  check_size "$out" "$size" || return 1
  cmp -s "$out" "$dir/$name" || note "case 5: the resumed file differs from the source"
  local b2 e2 n2; read -r b2 e2 n2 < <(access_sums)
  stop_mirrors
  local extra=$((b1 + b2 - size)) kept=$((size - b2))
  local extra_mib; extra_mib=$(calc "$extra / $MIB" %.2f)
  row "5. refetch after SIGKILL at ≥ 50%, ${MULTI_MIB} MiB, 1 mirror at ${RESUME_RATE/m/ MiB}/s | **${extra_mib} MiB fetched twice** ($(calc "$extra / $PIECE" %.1f) pieces of 1 MiB) | run 1: killed when progress said $(calc "$done_at / $MIB" %.1f) MiB ($(calc "100 * $done_at / $size" %.0f)%), nginx had sent $(calc "$b1 / $MIB" %.1f) MiB; run 2 fetched $(calc "$b2 / $MIB" %.1f) MiB | kept from run 1: $(calc "$kept / $MIB" %.1f) MiB; lost in flight: $(calc "($b1 - $kept) / $MIB" %.1f) MiB | - | -"
  note "case 5: requests run 1: ${n1} (503: ${e1}); run 2: ${n2} (503: ${e2}); second run took ${SECS}s; byte counts include response headers"
  rm -rf "$TMP/c5"
}

# ---------------------------------------------------------------------------------------------
# 6. Many small files: a nested folder of 2,000 x 16 KiB and 4 x 8 MiB from one shoal node
# (`shoal get DIR/`), against aria2c -j16 -x1 -i LIST from nginx serving the same files.
FOLDER_SMALL=2000
FOLDER_BIG=4
FOLDER_BIG_MIB=8

case6() {
  local share=$TMP/c6/share dir=tree out=$TMP/c6/out st=$TMP/c6/get-state list=$TMP/c6/list.txt
  local files=$((FOLDER_SMALL + FOLDER_BIG))
  log "making the folder: $FOLDER_SMALL x 16 KiB in nested directories and $FOLDER_BIG x $FOLDER_BIG_MIB MiB"
  python3 - "$share/$dir" "$FOLDER_SMALL" "$FOLDER_BIG" "$FOLDER_BIG_MIB" <<'PY' || return 1
import os, sys
root, small, big, big_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for i in range(small):
    # 20 top directories of 10 subdirectories of 10 files: three levels, like a photo library.
    d = os.path.join(root, f"d{i // 100:02}", f"s{i // 10 % 10}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:04}.dat"), "wb") as f:
        f.write(os.urandom(16 << 10))
os.makedirs(os.path.join(root, "big"), exist_ok=True)
for i in range(big):
    with open(os.path.join(root, "big", f"b{i}.bin"), "wb") as f:
        f.write(os.urandom(big_mib << 20))
PY
  sync
  local total; total=$(du -sb "$share/$dir" | cut -f1)
  # An unthrottled nginx with no connection limit: aria2c -j16 would get 503s from the one-
  # connection mirrors of the other cases.
  MIRRORS_CONNS=0 start_mirrors "$share" 0
  local murl=${MIRROR_URLS[0]}
  start_node "$share" "$TMP/c6/node-state" "$dir/big/b0.bin"
  local nurl=$NODE_URL i
  # The node scans its share at start: wait (bounded) until it indexed every file.
  for i in $(seq 1 600); do
    local n
    n=$(curl -s -H 'Content-Type: text/xml' --data '<?xml version="1.0"?><methodCall><methodName>shoal.stats</methodName><params></params></methodCall>' "$nurl/" \
      | tr -d '\n ' | sed -n 's/.*<name>files<\/name><value><[a-z0-9]*>\([0-9]*\)<.*/\1/p')
    [ "${n:-0}" -ge "$files" ] && break
    sleep 0.25
  done
  # aria2c's input file: one URL a line (the brief's `aria2c -j16 -x1 -i LIST`). The file names
  # are unique, so aria2c puts them all in one directory (-d), which spares it the directories.
  # One untimed run of the form that keeps the layout (a `dir=` line under each URL) is reported
  # in the notes; aria2c's times vary a lot from run to run on a shared machine (2 s to 30 s
  # were seen for either form), shoal's much less.
  (cd "$share" && find "$dir" -type f | sort) | sed "s|^|$murl/|" > "$list"
  (cd "$share" && find "$dir" -type f | sort) | while read -r rel; do
    printf '%s/%s\n  dir=%s\n' "$murl" "$rel" "$out/$(dirname "$rel")"
  done > "$list.layout"
  rm -rf "$out"; mkdir -p "$out"
  if run_timed 600 aria2c -j16 -x1 -i "$list.layout" --allow-overwrite=true --file-allocation=none --console-log-level=warn --summary-interval=0 --download-result=hide; then
    note "case 6: aria2c keeping the layout (a dir= line under each URL), untimed for the table: ${SECS}s"
  fi
  local shoal_t=() aria_t=() shoal_rss=() aria_rss=() rep order tool got
  for rep in $(seq 1 "$REPS"); do
    if [ $((rep % 2)) = 1 ]; then order="aria2c shoal"; else order="shoal aria2c"; fi
    for tool in $order; do
      rm -rf "$out" "$st"; mkdir -p "$out"
      if [ "$tool" = aria2c ]; then
        run_timed 600 aria2c -j16 -x1 -i "$list" -d "$out/$dir" --allow-overwrite=true --file-allocation=none --console-log-level=warn --summary-interval=0 --download-result=hide || return 1
        aria_t+=("$SECS"); aria_rss+=("$RSS_KB")
      else
        run_timed 600 "$SHOAL" get "$dir/" --peer "$nurl" -o "$out" --state "$st" --quiet || return 1
        shoal_t+=("$SECS"); shoal_rss+=("$RSS_KB")
      fi
      got=$(find "$out/$dir" -type f | wc -l) # (aria2c: flat; shoal: the folder's layout)
      [ "$got" = "$files" ] || { log "$tool fetched $got files, expected $files"; return 1; }
      log "case 6 rep $rep $tool: ${SECS}s, peak RSS $(calc "$RSS_KB / 1024" %.1f) MiB"
    done
  done
  if [ "$tool" = shoal ]; then
    diff -r "$out/$dir" "$share/$dir" > /dev/null || note "case 6: shoal's last download differs from the source"
  fi
  stop_nodes
  stop_mirrors
  rm -rf "$TMP/c6"
  local s a ratio rss; s=$(median "${shoal_t[@]}"); a=$(median "${aria_t[@]}"); ratio=$(calc "$s / $a")
  rss=$(calc "$(printf '%s\n' "${shoal_rss[@]}" | sort -g | tail -1) / 1024" %.1f)
  row "6a. folder of $files files ($(calc "$total / $MIB" %.0f) MiB, nested), one source | shoal get DIR/ ${s} s | aria2c -j16 -x1 -i LIST -d DIR from nginx ${a} s | **time ratio ${ratio}** | ≤ 1.0 | $(calc "$ratio <= 1.0" %d | sed 's/1/yes/;s/0/NO/')"
  row "6b. same, peak RSS | shoal get ${rss} MiB (largest of the runs) | aria2c $(calc "$(printf '%s\n' "${aria_rss[@]}" | sort -g | tail -1) / 1024" %.1f) MiB | **${rss} MiB** | ≤ 64 MiB | $(calc "$rss <= 64" %d | sed 's/1/yes/;s/0/NO/')"
  note "case 6 runs (s): shoal ${shoal_t[*]}; aria2c ${aria_t[*]}; peak RSS (KiB): shoal ${shoal_rss[*]}; aria2c ${aria_rss[*]}"
}

# "CONNECTIONS COUNT_503 REQUESTS" of the mirrors' log since it was cleared (the generator's
# fourth field is the connection serial).
conn_sums() {
  sleep 0.5
  awk '{ c[$4] = 1; n++; if ($2 == 503) e++ } END { printf "%d %d %d\n", length(c), e, n }' "$(access_log)"
}

case7() {
  local dir=$MULTI_DIR name=$MULTI_NAME size out=$TMP/c7/out st=$TMP/c7/get-state
  size=$(file_size "$dir/$name")
  if [ "$ONE_SERVER_SCHEME" = https ] && [ -z "$ONE_SERVER_CERT" ]; then
    make_tls || return 1
    ONE_SERVER_CERT=$TLS_CERT ONE_SERVER_KEY=$TLS_KEY ONE_SERVER_CA=$TLS_CA
  fi
  local tls_env=()
  [ "$ONE_SERVER_SCHEME" = https ] && tls_env=(MIRRORS_TLS_CERT="$ONE_SERVER_CERT" MIRRORS_TLS_KEY="$ONE_SERVER_KEY")
  env "${tls_env[@]}" MIRRORS_CONNS=8 "$MIRRORS" start "$dir" 10m > "$TMP/one-url" || return 1
  local url; url=$(head -1 "$TMP/one-url")/$name
  local shoal_tls=() aria_tls=()
  if [ "$ONE_SERVER_SCHEME" = https ]; then
    shoal_tls=(--ca-cert "$ONE_SERVER_CA"); aria_tls=(--ca-certificate "$ONE_SERVER_CA")
  fi
  local hash=(); [ -n "$MULTI_ID" ] && hash=(--hash "$MULTI_ID")
  local shoal_t=() aria_t=() rep order tool c e n shoal_conns=() aria_conns=() shoal_503=0 aria_503=0
  for rep in $(seq 1 "$REPS"); do
    if [ $((rep % 2)) = 1 ]; then order="aria2c shoal"; else order="shoal aria2c"; fi
    for tool in $order; do
      rm -rf "$out" "$st"; mkdir -p "$out"
      clear_access_log
      if [ "$tool" = aria2c ]; then
        run_timed 300 aria2c -x8 -s8 -k1M "${aria_tls[@]}" -d "$out" -o "$name" "$url" --allow-overwrite=true --file-allocation=none || return 1
        check_size "$out/$name" "$size" || return 1
        aria_t+=("$SECS")
        read -r c e n < <(conn_sums); aria_conns+=("$c"); aria_503=$((aria_503 + e))
      else
        run_timed 300 "$SHOAL" get "$url" "${shoal_tls[@]}" -o "$out/$name" --state "$st" --quiet "${hash[@]}" || return 1
        check_size "$out/$name" "$size" || return 1
        shoal_t+=("$SECS")
        read -r c e n < <(conn_sums); shoal_conns+=("$c"); shoal_503=$((shoal_503 + e))
      fi
      log "case 7 rep $rep $tool: ${SECS}s ($c connections, $e of $n responses 503)"
    done
  done
  cmp -s "$out/$name" "$dir/$name" || note "case 7: the last download differs from the source"
  rm -rf "$TMP/c7"
  stop_mirrors
  local s a ratio; s=$(median "${shoal_t[@]}"); a=$(median "${aria_t[@]}"); ratio=$(calc "$s / $a")
  row "7. one $ONE_SERVER_SCHEME server, 10 MiB/s per connection, 8 allowed, ${MULTI_MIB} MiB | shoal (defaults) ${s} s ($(calc "$size / $MIB / $s" %.0f) MiB/s) | aria2c -x8 -s8 -k1M ${a} s ($(calc "$size / $MIB / $a" %.0f) MiB/s) | **time ratio ${ratio}** | ≤ 1.05 | $(calc "$ratio <= 1.05" %d | sed 's/1/yes/;s/0/NO/')"
  note "case 7 runs (s): shoal ${shoal_t[*]}; aria2c ${aria_t[*]}; connections nginx saw per run: shoal ${shoal_conns[*]}, aria2c ${aria_conns[*]}; 503 responses in timed runs: shoal ${shoal_503}, aria2c ${aria_503}"
}

# ---------------------------------------------------------------------------------------------
# TLS for cases 7 (with ONE_SERVER_SCHEME=https) and 8: a CA and a certificate for localhost and
# 127.0.0.1, made once with openssl; sets TLS_CA, TLS_CERT, TLS_KEY.
make_tls() {
  [ -n "${TLS_CA:-}" ] && return 0
  local d=$TMP/tls
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/ca.key" -out "$d/ca.pem" \
    -days 2 -subj "/CN=shoal bench CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || return 1
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/server.key" -out "$d/server.csr" \
    -subj /CN=localhost 2>/dev/null || return 1
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$d/ext.cnf"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -out "$d/server.pem" \
    -days 2 -extfile "$d/ext.cnf" 2>/dev/null || return 1
  TLS_CA=$d/ca.pem TLS_CERT=$d/server.pem TLS_KEY=$d/server.key
}

# 8. The four mirrors of case 2 over https (rustls in shoal, aria2c's own TLS), both told to
# trust the same CA.
case8() {
  local dir=$MULTI_DIR name=$MULTI_NAME size out=$TMP/c8/out st=$TMP/c8/get-state
  make_tls || return 1
  size=$(file_size "$dir/$name")
  MIRRORS_TLS_CERT=$TLS_CERT MIRRORS_TLS_KEY=$TLS_KEY start_mirrors "$dir" 25m 25m 25m 25m
  local urls=() u
  for u in "${MIRROR_URLS[@]}"; do urls+=("$u/$name"); done
  local hash=(); [ -n "$MULTI_ID" ] && hash=(--hash "$MULTI_ID")
  local shoal_t=() aria_t=() shoal_503=0 aria_503=0 rep order tool b e n
  for rep in $(seq 1 "$REPS"); do
    if [ $((rep % 2)) = 1 ]; then order="aria2c shoal"; else order="shoal aria2c"; fi
    for tool in $order; do
      rm -rf "$out" "$st"; mkdir -p "$out"
      clear_access_log
      if [ "$tool" = aria2c ]; then
        run_timed 300 aria2c -s4 -x4 -k1M --ca-certificate="$TLS_CA" -d "$out" -o "$name" "${urls[@]}" --allow-overwrite=true --file-allocation=none || return 1
        check_size "$out/$name" "$size" || return 1
        aria_t+=("$SECS")
        read -r b e n < <(access_sums); aria_503=$((aria_503 + e))
      else
        run_timed 300 "$SHOAL" get "${urls[@]}" --ca-cert "$TLS_CA" -o "$out/$name" --state "$st" --quiet "${hash[@]}" || return 1
        check_size "$out/$name" "$size" || return 1
        shoal_t+=("$SECS")
        read -r b e n < <(access_sums); shoal_503=$((shoal_503 + e))
      fi
      log "case 8 rep $rep $tool: ${SECS}s (503s: $e of $n responses)"
    done
  done
  cmp -s "$out/$name" "$dir/$name" || note "case 8: the last download differs from the source"
  rm -rf "$TMP/c8"
  stop_mirrors
  local s a ratio; s=$(median "${shoal_t[@]}"); a=$(median "${aria_t[@]}"); ratio=$(calc "$s / $a")
  row "8. 4 https mirrors × 25 MiB/s, ${MULTI_MIB} MiB | shoal --ca-cert ${s} s | aria2c -s4 -x4 -k1M --ca-certificate ${a} s | **time ratio ${ratio}** | ≤ 1.02 | $(calc "$ratio <= 1.02" %d | sed 's/1/yes/;s/0/NO/')"
  note "case 8 runs (s): shoal ${shoal_t[*]}; aria2c ${aria_t[*]}; 503 responses in timed runs: shoal ${shoal_503}, aria2c ${aria_503}"
}

# ---------------------------------------------------------------------------------------------
[ "$MULTI_MIB" = 0 ] || { make_file "$MULTI_DIR/$MULTI_NAME" "$MULTI_MIB"; sync; }

failed=0
if wanted 1; then case1 || { failed=1; row "1. one source, loopback | failed (see log) | | | ≤ 1.1 | NO"; stop_nodes; stop_mirrors; }; fi
if wanted 2; then case2 || { failed=1; row "2. 4 mirrors | failed (see log) | | | | NO"; stop_mirrors; }; fi
if wanted 3; then case3 || { failed=1; row "3. 4 peers | failed (see log) | | | ≥ 95% | NO"; stop_nodes; }; fi
if wanted 4; then case4 || { failed=1; row "4. peak RSS | failed (see log) | | | ≤ 64 MiB | NO"; stop_nodes; stop_mirrors; }; fi
if wanted 5; then case5 || { failed=1; stop_mirrors; }; fi
if wanted 6; then case6 || { failed=1; row "6. folder | failed (see log) | | | ≤ 1.0 | NO"; stop_nodes; stop_mirrors; }; fi
if wanted 7; then case7 || { failed=1; row "7. one server | failed (see log) | | | ≤ 1.05 | NO"; stop_mirrors; }; fi
if wanted 8; then case8 || { failed=1; row "8. 4 https mirrors | failed (see log) | | | ≤ 1.02 | NO"; stop_mirrors; }; fi

{
  echo "## shoal download benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $([ "$QUICK" = 1 ] && echo quick || echo full), median of $REPS)"
  echo
  echo "| case | shoal | reference (same run) | figure | target | met |"
  echo "| --- | --- | --- | --- | --- | --- |"
  cat "$ROWS"
  echo
  cat "$NOTES"
  if [ "${MIRRORS_OWN:-0}" != 1 ] && [ -x "$root/../shared/bench/mirrors.sh" ]; then
    echo "- Mirrors: the shared anchor script ../shared/bench/mirrors.sh (through bench/mirrors.sh) for cases 2 and 5; bench/mirrors.sh's own nginx config for cases 6-8 (connection limits, TLS)."
  else
    echo "- Mirrors: bench/mirrors.sh's own nginx config."
  fi
  echo "- shoal: $(cd "$root" && git describe --always --dirty 2>/dev/null || echo unknown); command: bash bench/download.sh${ARGS:+ $ARGS}"
} 
exit "$failed"
