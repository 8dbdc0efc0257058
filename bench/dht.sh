#!/usr/bin/env bash
# DHT benchmarks of shoal (the Mainline DHT node, `mainline` 8): lookups, the time from
# `shoal get ID` to the first verified byte through the DHT alone, announce traffic, and what the
# dependency costs.
#
#   bash bench/dht.sh [--no-build] [--only lookups|get|announce|cost]
#
#   lookups   256 `mainline` nodes in one process (crates/bench/src/bin/dht.rs), 64 keys made by
#             shoal's `key()` from random content ids, each announced by a random node and looked
#             up from another: success rate, time to the first peer and to the stream's end
#             (median, p99), queries received by all nodes per lookup; then again after 20 % of
#             the nodes left, nothing re-announced
#   get       64 `shoal serve` processes on one local DHT (1 bootstrap, 62 nodes, 1 holder of a
#             64 MiB random file), all --no-iroh with their DHT on 127.0.0.1:0: once the holder
#             has announced, `shoal get ID --dht-bootstrap BOOT --no-iroh` in a fresh directory,
#             5 times with a fresh state directory and once reusing one (its saved routing table,
#             <state>/dht-nodes): time to the first verified byte (the first page of the partial
#             file in the page cache, by mincore; pieces are written only once checked), to the
#             first `--json` progress event with done > 0 (1 s ticks), and in all; cmp each file
#   announce  queries per announce on the 256-node DHT (same bin as lookups) and the steady
#             traffic of shoal's schedule for shares of 1,000 and 100,000 files (computed); then a
#             real `shoal serve` sharing 1,000 small files joins the 64-process DHT: the queries
#             all other nodes received during its first full announce pass, per second and per
#             announce (the network's idle rate measured before and subtracted)
#   cost      what `mainline` adds: crates in `cargo tree` only through it, a release build of
#             it alone in a scratch crate under /tmp (own CARGO_TARGET_DIR, --offline) with its
#             time and rlib size, and, when SHOAL_PRE_DHT_BIN names a shoal built before the DHT,
#             the binaries' sizes
# --no-build uses the binaries as they are ($SHOAL_BIN or target/release/shoal, and dht beside
# it). Everything on 127.0.0.1, every port chosen by the OS, every wait bounded; every process
# started here is killed by its pid at exit. Markdown table on stdout, the log on stderr. See
# bench/README.md.
set -euo pipefail
# Nothing leaves this machine: no public relays, look-ups, port mapping or mDNS; no proxy.
export SHOAL_LOCAL_ONLY=1
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

usage() { sed -n '2,36p' "$0" >&2; }

ARGS="$*"
BUILD=1
ONLY=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0 ;;
    --only)
      case "${2:-}" in
        lookups|get|announce|cost) ONLY+=("$2") ;;
        *) usage; exit 2 ;;
      esac
      shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage; exit 2 ;;
  esac
  shift
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$root/target}
SHOAL=${SHOAL_BIN:-$TARGET/release/shoal}
DHT_BIN=${DHT_BENCH_BIN:-$(dirname "$SHOAL")/dht}

NODES=64            # shoal serve processes on the local DHT: 1 bootstrap, NODES - 2 others, 1 holder
F_MIB=64            # the holder's file
GET_RUNS=5          # fresh-state runs of `shoal get`
GET_LIMIT=120       # seconds one `shoal get` may take
SHARE_FILES=1000    # the sharer's files (case announce, real process)
START_BATCH=4       # nodes started at once

log() { echo "[dht $(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in curl python3 cmp awk; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done

TMP=$(mktemp -d /tmp/shoal-dht.XXXXXX)
PIDS=()
ROWS=$TMP/rows.md
NOTES=$TMP/notes.md
: > "$ROWS"; : > "$NOTES"

stop_nodes() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do timeout 15 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -9 "$pid" 2>/dev/null || true; done
  PIDS=()
}
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  stop_nodes
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wanted() { [ "${#ONLY[@]}" = 0 ] || printf '%s\n' "${ONLY[@]}" | grep -qx "$1"; }
row() { echo "| $* |" >> "$ROWS"; }
note() { echo "- $*" >> "$NOTES"; log "note: $*"; }
calc() { awk "BEGIN { printf \"${2:-%.3f}\", ($1) }"; }

# ---------------------------------------------------------------------------------------------
# shoal serve processes

# Starts `shoal serve` on loopback in the background, its DHT on 127.0.0.1:0, without waiting
# for it; the node's files are DIR, STATE and STATE.log. Appends its pid to PIDS.
launch_node() { # DIR STATE [EXTRA ARGS...]
  local dir=$1 state=$2; shift 2
  mkdir -p "$dir" "$state"
  # The pid recorded is timeout's, which passes SIGTERM on to shoal.
  (exec timeout 3600 "$SHOAL" serve --dir "$dir" --state "$state" --listen 127.0.0.1:0 --no-iroh \
    --dht-listen 127.0.0.1:0 "$@" > "$state.log" 2>&1) &
  PIDS+=("$!")
}

# Waits (at most 60 s) until the node of STATE printed its URL and DHT address; sets NODE_URL
# and NODE_DHT.
await_node() { # STATE
  local state=$1 i
  NODE_URL='' NODE_DHT=''
  for i in $(seq 1 600); do
    NODE_URL=$(sed -n 's/^node URL \(http[^ ]*\).*/\1/p' "$state.log" 2>/dev/null | head -1)
    NODE_DHT=$(sed -n 's/^DHT node on udp \([0-9.:]*\).*/\1/p' "$state.log" 2>/dev/null | head -1)
    [ -n "$NODE_URL" ] && [ -n "$NODE_DHT" ] && break
    sleep 0.1
  done
  if [ -z "$NODE_URL" ] || [ -z "$NODE_DHT" ]; then
    tail -5 "$state.log" >&2 || true
    die "shoal serve ($state) printed no URL or DHT address within 60 s"
  fi
  case "$NODE_URL $NODE_DHT" in http://127.*" 127."*) ;; *) die "a node is not on loopback: $NODE_URL $NODE_DHT" ;; esac
}

# The node's /metrics (the owner's, with the secret as a bearer token) on stdout.
metrics() { # URL STATE
  curl -sf --max-time 5 -H "Authorization: Bearer $(head -1 "$2/secret")" "$1/metrics"
}
# One metric's value (every label set added up; 0 when absent or the node does not answer).
metric() { # URL STATE NAME
  { metrics "$1" "$2" 2>/dev/null || true; } | awk -v m="$3" '$1 == m || index($1, m "{") == 1 { v += $NF } END { printf "%.0f\n", v }'
}
# A metric summed over the nodes listed in FILE (lines `URL<TAB>STATE`).
metric_sum() { # FILE NAME
  local url state total=0 v
  while IFS=$'\t' read -r url state; do
    v=$(metric "$url" "$state" "$2")
    total=$((total + v))
  done < "$1"
  echo "$total"
}

NET_UP=0
BOOT=''
HOLDER_URL='' HOLDER_STATE=''
# The 64-process DHT: the bootstrap node, NODES - 2 nodes, the holder of the file; started
# START_BATCH at a time. $TMP/nodes.tsv lists every node as `URL<TAB>STATE`.
net_up() {
  [ "$NET_UP" = 0 ] || return 0
  local dir=$TMP/net i j batch
  mkdir -p "$dir"
  : > "$TMP/nodes.tsv"
  log "starting the bootstrap node"
  launch_node "$dir/boot" "$dir/boot-state"
  await_node "$dir/boot-state"
  BOOT=$NODE_DHT
  printf '%s\t%s\n' "$NODE_URL" "$dir/boot-state" >> "$TMP/nodes.tsv"
  log "bootstrap node: $NODE_URL, DHT $BOOT; starting $((NODES - 2)) nodes, $START_BATCH at a time"
  local t0; t0=$(date +%s)
  for ((i = 1; i <= NODES - 2; i += START_BATCH)); do
    batch=()
    for ((j = i; j < i + START_BATCH && j <= NODES - 2; j++)); do
      launch_node "$dir/n$j" "$dir/n$j-state" --dht-bootstrap "$BOOT"
      batch+=("$j")
    done
    for j in "${batch[@]}"; do
      await_node "$dir/n$j-state"
      printf '%s\t%s\n' "$NODE_URL" "$dir/n$j-state" >> "$TMP/nodes.tsv"
    done
  done
  mkdir -p "$dir/holder"
  cp "$TMP/$NAME" "$dir/holder/$NAME"
  launch_node "$dir/holder" "$dir/holder-state" --dht-bootstrap "$BOOT"
  await_node "$dir/holder-state"
  HOLDER_URL=$NODE_URL HOLDER_STATE=$dir/holder-state
  printf '%s\t%s\n' "$NODE_URL" "$dir/holder-state" >> "$TMP/nodes.tsv"
  NET_START_SECS=$(( $(date +%s) - t0 ))
  NET_UP=1
  log "$NODES nodes up in ${NET_START_SECS} s"
}

# Waits until the node's announces satisfy: announces >= N and failures < announces (at most
# LIMIT seconds); returns 1 when they do not.
wait_announced() { # URL STATE N LIMIT
  local i a f
  for ((i = 0; i < $4 * 2; i++)); do
    a=$(metric "$1" "$2" shoal_dht_announces_total)
    f=$(metric "$1" "$2" shoal_dht_announce_failures_total)
    if [ "$a" -ge "$3" ] && [ "$f" -lt "$a" ]; then return 0; fi
    sleep 0.5
  done
  log "announces $a, failures $f after $4 s"
  return 1
}

# ---------------------------------------------------------------------------------------------
# The `shoal get` driver: runs one download, watches its partial file's pages and its JSON lines.
cat > "$TMP/get.py" <<'PY'
"""One `shoal get` through the DHT (written and run by bench/dht.sh).

usage: get.py SHOAL ID BOOT STATE OUTDIR SOURCE LIMIT OUT
Runs `shoal get ID --dht-bootstrap BOOT --no-iroh --state STATE --json -o OUTDIR` and every
2 ms looks for OUTDIR's partial file (.NAME.shoal-part): the first of its pages in the page cache
(mincore) is the first checked piece written (the engine writes a piece only once it checked it;
the file's space is reserved by posix_fallocate, which puts nothing in the cache). Also notes the
first `progress` event with done > 0 (printed once a second). Kills the command after LIMIT
seconds. OUT gets shell assignments G_*."""
import ctypes, glob, json, mmap, os, selectors, shlex, subprocess, sys, time

shoal, cid, boot, state, outdir, source, limit, out = sys.argv[1:9]
limit = float(limit)
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
PAGE = mmap.PAGESIZE

def resident(path):
    """True when any page of the file is in the page cache."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return False
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return False
        try:
            pages = (size + PAGE - 1) // PAGE
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(addr, size, vec) != 0:
                return False
            return bytes(vec).count(0) != pages
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)

os.makedirs(outdir, exist_ok=True)
cmd = [shoal, "get", cid, "--dht-bootstrap", boot, "--no-iroh", "--state", state, "--json", "-o", outdir]
t0 = time.monotonic()
proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=outdir)
os.set_blocking(proc.stdout.fileno(), False)
sel = selectors.DefaultSelector()
sel.register(proc.stdout, selectors.EVENT_READ)
first_page = first_progress = progress_elapsed = None
done_path, buf, events = None, b"", []
ended = "exit"
while True:
    now = time.monotonic()
    if now - t0 > limit:
        proc.kill()
        ended = f"killed at the {limit:.0f} s limit"
        break
    for _ in sel.select(timeout=0.002):
        chunk = proc.stdout.read()
        if chunk:
            buf += chunk
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        events.append(ev.get("event"))
        if ev.get("event") == "progress" and ev.get("done", 0) > 0 and first_progress is None:
            first_progress = time.monotonic() - t0
            progress_elapsed = ev.get("elapsed")
        if ev.get("event") == "done":
            done_path = ev.get("path")
    if first_page is None:
        for part in glob.glob(os.path.join(outdir, ".*.shoal-part")):
            if resident(part):
                first_page = time.monotonic() - t0
                break
    if proc.poll() is not None:
        rest = proc.stdout.read() or b""
        for line in (buf + rest).split(b"\n"):
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            events.append(ev.get("event"))
            if ev.get("event") == "done":
                done_path = ev.get("path")
        break
total = time.monotonic() - t0
proc.wait(timeout=10)
err = proc.stderr.read().decode(errors="replace").strip().splitlines()
same = False
if done_path:
    path = done_path if os.path.isabs(done_path) else os.path.join(outdir, done_path)
    same = subprocess.run(["cmp", "-s", source, path]).returncode == 0
r = {
    "G_RC": proc.returncode,
    "G_ENDED": ended,
    "G_TOTAL": f"{total:.3f}",
    "G_FIRST_BYTE": f"{first_page:.3f}" if first_page is not None else "",
    "G_FIRST_PROGRESS": f"{first_progress:.3f}" if first_progress is not None else "",
    "G_PROGRESS_ELAPSED": f"{progress_elapsed:.3f}" if progress_elapsed is not None else "",
    "G_SAME": "yes" if same else "NO",
    "G_EVENTS": " ".join(str(e) for e in events),
    "G_ERR": (err[-1] if err else "")[:200],
}
with open(out, "w") as f:
    for k, v in r.items():
        f.write(f"{k}={shlex.quote(str(v))}\n")
PY

# ---------------------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
  log "building shoal and the bench (release)"
  (cd "$root" && timeout 2400 cargo build --release -p shoal -p shoal-bench) >&2 || die "cargo build failed"
fi
if wanted get || wanted announce; then
  [ -x "$SHOAL" ] || die "$SHOAL is missing (build it, or set SHOAL_BIN)"
  "$SHOAL" serve --help | grep -q -- '--dht-listen' || die "$SHOAL has no --dht-listen (built before the DHT?)"
fi
if wanted lookups || wanted announce; then
  [ -x "$DHT_BIN" ] || die "$DHT_BIN is missing (cargo build --release -p shoal-bench)"
fi

failed=0
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
NAME=dht.bin
SHARE_ID=''

# 1 and 3a-c: the in-process DHT.
bin_case() {
  log "lookups and announces on 256 in-process mainline nodes (up to 20 min)"
  local out=$TMP/bin.md
  timeout 1200 "$DHT_BIN" --json "$TMP/bin.json" > "$out" 2> "$TMP/bin.err" || {
    tail -5 "$TMP/bin.err" >&2; return 1; }
  sed 's/^/    /' "$TMP/bin.err" >&2
  if wanted lookups; then grep '^| 1' "$out" >> "$ROWS"; fi
  if wanted announce; then grep '^| 3' "$out" >> "$ROWS"; fi
  grep '^- ' "$out" >> "$NOTES"
}

# 2: shoal get through the DHT alone.
get_case() {
  net_up
  log "waiting (up to 120 s) for the holder's first announce"
  wait_announced "$HOLDER_URL" "$HOLDER_STATE" 1 120 || { log "the holder did not announce"; return 1; }
  SHARE_ID=$(timeout 30 "$SHOAL" ls --state "$HOLDER_STATE" --node "$HOLDER_URL" --secret-file "$HOLDER_STATE/secret" --json \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); rows=d if isinstance(d,list) else next(v for v in d.values() if isinstance(v,list)); print(next(r.get("id") or r.get("content_id") or r.get("hash") for r in rows))')
  [ -n "$SHARE_ID" ] || { log "no content id from shoal ls"; return 1; }
  log "content id $SHARE_ID; $GET_RUNS runs with a fresh state, then one reusing a state"
  local i firsts=() progs=() totals=() ok=0 state up0
  up0=$(metric "$HOLDER_URL" "$HOLDER_STATE" shoal_bytes_uploaded_total)
  for i in $(seq 1 $((GET_RUNS + 1))); do
    if [ "$i" -le "$GET_RUNS" ]; then state=$TMP/get-state-$i; else state=$TMP/get-state-$GET_RUNS; fi
    rm -rf "$TMP/get-out"
    timeout $((GET_LIMIT + 30)) python3 "$TMP/get.py" "$SHOAL" "$SHARE_ID" "$BOOT" "$state" "$TMP/get-out" \
      "$TMP/$NAME" "$GET_LIMIT" "$TMP/get.sh" >&2 || { log "run $i: the driver failed"; continue; }
    # shellcheck disable=SC1091
    . "$TMP/get.sh"
    log "run $i ($([ "$i" -le "$GET_RUNS" ] && echo fresh || echo reused) state): rc $G_RC, first verified byte ${G_FIRST_BYTE:-none} s, first progress > 0 ${G_FIRST_PROGRESS:-none} s (its elapsed ${G_PROGRESS_ELAPSED:-}), total $G_TOTAL s, same file: $G_SAME${G_ERR:+; stderr: $G_ERR}"
    if [ "$i" -le "$GET_RUNS" ]; then
      [ "$G_RC" != 0 ] || [ "$G_SAME" != yes ] || ok=$((ok + 1))
      firsts+=("${G_FIRST_BYTE:-nan}"); progs+=("${G_FIRST_PROGRESS:-nan}"); totals+=("$G_TOTAL")
    else
      REUSED="first verified byte ${G_FIRST_BYTE:-none} s, ${G_FIRST_PROGRESS:+first progress event with done > 0 ${G_FIRST_PROGRESS} s, }total ${G_TOTAL} s, file identical: ${G_SAME}"
      REUSED_FIG="${G_FIRST_BYTE:-none} s / ${G_TOTAL} s"
    fi
  done
  local med="python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:] if x != \"nan\"]; print(f\"{statistics.median(v):.3f}\" if v else \"-\")'"
  local mf mp mt up1
  mf=$(eval "$med ${firsts[*]}"); mp=$(eval "$med ${progs[*]}"); mt=$(eval "$med ${totals[*]}")
  up1=$(metric "$HOLDER_URL" "$HOLDER_STATE" shoal_bytes_uploaded_total)
  local progtxt="first \`--json\` progress event with done > 0 (printed once a second): ${progs[*]} s"
  if [ "$mp" = - ]; then
    progtxt="no \`--json\` progress event with done > 0 in any run: progress is printed once a second and each download ended before the second one"
  fi
  row "2a. \`shoal get ID --dht-bootstrap BOOT --no-iroh\`, $NODES \`shoal serve\` processes, ${F_MIB} MiB, fresh state × $GET_RUNS | $ok/$GET_RUNS identical (cmp); first verified byte (first page of the partial file written, mincore every 2 ms): ${firsts[*]} s; ${progtxt}; total: ${totals[*]} s | **median first verified byte ${mf} s, total ${mt} s**$([ "$mp" = - ] || echo ", first progress event ${mp} s")"
  row "2b. the same, state directory reused (its saved routing table, <state>/dht-nodes) | ${REUSED:-failed} | **${REUSED_FIG:-failed}** (first verified byte / total)"
  note "get: the holder uploaded $(calc "($up1 - $up0) / 1048576" %.1f) MiB during the $((GET_RUNS + 1)) runs (each fetched the file from it alone)."
  # A control: the same command without --dht-bootstrap (no DHT under SHOAL_LOCAL_ONLY) finds no one.
  local t0 rc=0
  t0=$(date +%s.%N)
  rm -rf "$TMP/get-out" && mkdir -p "$TMP/get-out"
  (cd "$TMP/get-out" && timeout 60 "$SHOAL" get "$SHARE_ID" --no-iroh --state "$TMP/control-state" --retry-for 5 --quiet) > /dev/null 2> "$TMP/control.err" || rc=$?
  note "get: control without --dht-bootstrap (no DHT under SHOAL_LOCAL_ONLY=1, --retry-for 5): exit $rc after $(calc "$(date +%s.%N) - $t0" %.1f) s, $(find "$TMP/get-out" -mindepth 1 | wc -l) files written; it said \"$(grep '^shoal:' "$TMP/control.err" | tail -1 | cut -c1-60)…\""
  note "get: $NODES nodes started $START_BATCH at a time in ${NET_START_SECS} s (not counted); times run from the \`shoal get\` process's start (session, DHT bootstrap through BOOT, lookup, HTTP, the first 1 MiB piece checked and written)."
}

# 3d: a real shoal serve with SHARE_FILES small files joins the 64-process DHT.
share_case() {
  net_up
  local dir=$TMP/net/sharer i
  mkdir -p "$dir"
  for i in $(seq 1 "$SHARE_FILES"); do head -c 256 /dev/urandom > "$dir/f$i.bin"; done
  # The network's idle rate, over 20 s, before the sharer joins.
  local s0 s1 t0 t1 bg
  s0=$(metric_sum "$TMP/nodes.tsv" shoal_dht_queries_received_total); t0=$(date +%s.%N)
  sleep 20
  s1=$(metric_sum "$TMP/nodes.tsv" shoal_dht_queries_received_total); t1=$(date +%s.%N)
  bg=$(calc "($s1 - $s0) / ($t1 - $t0)" %.2f)
  log "the network's idle rate: $bg queries/s over all $NODES nodes; starting a node sharing $SHARE_FILES files"
  launch_node "$dir" "$dir-state" --dht-bootstrap "$BOOT"
  await_node "$dir-state"
  local url=$NODE_URL a=0 sa ta sb tb
  # Its pass starts with its first announce (after its index is built and its DHT joined).
  for i in $(seq 1 1200); do
    a=$(metric "$url" "$dir-state" shoal_dht_announces_total)
    [ "$a" -lt 1 ] || break
    sleep 0.1
  done
  [ "$a" -ge 1 ] || { log "the sharer announced nothing within 120 s"; return 1; }
  sa=$(metric_sum "$TMP/nodes.tsv" shoal_dht_queries_received_total); ta=$(date +%s.%N)
  log "first announce; waiting (up to $((SHARE_FILES / 4 + 200)) s) for $SHARE_FILES"
  for i in $(seq 1 $((SHARE_FILES / 4 + 200))); do
    a=$(metric "$url" "$dir-state" shoal_dht_announces_total)
    [ "$a" -lt "$SHARE_FILES" ] || break
    sleep 1
  done
  [ "$a" -ge "$SHARE_FILES" ] || { log "only $a announces"; return 1; }
  sleep 3 # the last ones in flight
  sb=$(metric_sum "$TMP/nodes.tsv" shoal_dht_queries_received_total); tb=$(date +%s.%N)
  local fails secs q rate per
  fails=$(metric "$url" "$dir-state" shoal_dht_announce_failures_total)
  secs=$(calc "$tb - $ta" %.1f)
  q=$(calc "($sb - $sa) - $bg * ($tb - $ta)" %.0f)
  rate=$(calc "$q / ($tb - $ta)" %.1f)
  per=$(calc "$q / $a" %.1f)
  local steady; steady=$(calc "$SHARE_FILES / 1800 * $q / $a" %.1f)
  row "3d. a real \`shoal serve\` sharing $SHARE_FILES files joins the $NODES-process DHT: its first announce pass | $a announces ($fails failed) in ${secs} s (from its first announce to 3 s after its ${SHARE_FILES}th); queries received by the $NODES other nodes: $((sb - sa)), less the idle $bg/s = $q: $rate queries/s, $per per announce; at the steady $SHARE_FILES/1800 announces/s that is $steady queries/s | **$rate queries/s sent ($(calc "2 * $rate" %.1f) packets/s with answers) during the pass; steady $steady queries/s ($(calc "2 * $steady" %.1f) packets/s)**"
  note "announce (3d): a first pass runs at the cap (4 announces/s), not at the steady 1,000/1,800 s, because every id is due at once; afterwards each id comes back every 30 min."
}

# 4: what mainline costs.
cost_case() {
  local tree pruned added
  (cd "$root" && timeout 300 cargo tree -p shoal -e normal --prefix none --offline 2>/dev/null | sed 's/ (\*)//; s/ (proc-macro)//' | sort -u) > "$TMP/tree"
  (cd "$root" && timeout 300 cargo tree -p shoal -e normal --prefix none --offline --prune mainline 2>/dev/null | sed 's/ (\*)//; s/ (proc-macro)//' | sort -u) > "$TMP/tree-pruned"
  tree=$(wc -l < "$TMP/tree"); pruned=$(wc -l < "$TMP/tree-pruned")
  added=$(comm -23 "$TMP/tree" "$TMP/tree-pruned" | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }')
  row "4a. crates \`mainline\` adds to shoal's tree | \`cargo tree -p shoal -e normal --prefix none\`: $tree distinct packages; with \`--prune mainline\`: $pruned; only through mainline: $added | **+$((tree - pruned)) crates**"
  # mainline alone, in a scratch crate with its own target directory.
  local scratch=$TMP/scratch mver
  mver=$(sed -n '/^name = "mainline"$/{n;s/^version = "\(.*\)"$/\1/p}' "$root/Cargo.lock")
  mkdir -p "$scratch/src"
  printf '[package]\nname = "scratch"\nversion = "0.0.0"\nedition = "2024"\n\n[dependencies]\nmainline = { version = "=%s", default-features = false, features = ["async"] }\n' "$mver" > "$scratch/Cargo.toml"
  echo 'pub use mainline;' > "$scratch/src/lib.rs"
  cp "$root/Cargo.lock" "$scratch/Cargo.lock"
  log "building mainline $mver alone (release, --offline, --timings) in $scratch"
  local t0 t1 wall rlib
  t0=$(date +%s.%N)
  if (cd "$scratch" && CARGO_TARGET_DIR=$scratch/target timeout 1200 cargo build --release --offline --timings -q) >&2 2> "$TMP/scratch.err"; then
    t1=$(date +%s.%N); wall=$(calc "$t1 - $t0" %.1f)
    rlib=$(find "$scratch/target/release/deps" -name 'libmainline-*.rlib' -printf '%s\n' | head -1)
    local units
    units=$(python3 - "$scratch/target/cargo-timings/cargo-timing.html" "$added" <<'PY'
import json, re, sys
html = open(sys.argv[1]).read()
m = re.search(r"const UNIT_DATA = (\[.*?\]);", html, re.S)
units = json.loads(m.group(1)) if m else []
added = {p.strip().split(" ")[0] for p in sys.argv[2].split(",") if p.strip()}
total = sum(u["duration"] for u in units)
own = sum(u["duration"] for u in units if u["name"] in added)
main = sum(u["duration"] for u in units if u["name"] == "mainline")
print(f"{total:.1f} {own:.1f} {main:.1f} {len(units)}")
PY
)
    read -r u_total u_added u_main u_count <<< "$units"
    row "4b. \`mainline\` built alone (scratch crate, release, own target dir, 2 cores) | wall ${wall} s for $u_count units (sum of unit times ${u_total} s); of that, the crates only mainline brings: ${u_added} s (mainline itself ${u_main} s); libmainline rlib $(calc "$rlib / 1048576" %.2f) MiB | **+${u_added} s of compile work, ${wall} s wall alone**"
  else
    tail -5 "$TMP/scratch.err" >&2
    row "4b. \`mainline\` built alone | the scratch build failed (see log) | -"
  fi
  if [ -n "${SHOAL_PRE_DHT_BIN:-}" ] && [ -x "$SHOAL_PRE_DHT_BIN" ] && [ -x "$SHOAL" ]; then
    local a b sa sb
    a=$(stat -c %s "$SHOAL_PRE_DHT_BIN"); b=$(stat -c %s "$SHOAL")
    strip -o "$TMP/pre.stripped" "$SHOAL_PRE_DHT_BIN"; strip -o "$TMP/now.stripped" "$SHOAL"
    sa=$(stat -c %s "$TMP/pre.stripped"); sb=$(stat -c %s "$TMP/now.stripped")
    rm -f "$TMP/pre.stripped" "$TMP/now.stripped"
    row "4c. release binary, before the DHT ($SHOAL_PRE_DHT_BIN) vs now | $(calc "$a / 1048576" %.1f) → $(calc "$b / 1048576" %.1f) MiB as built (line tables); stripped $(calc "$sa / 1048576" %.2f) → $(calc "$sb / 1048576" %.2f) MiB | **+$(calc "($sb - $sa) / 1048576" %.2f) MiB stripped** (the DHT code in shoal-node and mainline together)"
  else
    note "cost: no binary size comparison (set SHOAL_PRE_DHT_BIN to a shoal built before the DHT, e.g. at 6e9f7a5)"
  fi
  note "cost: commands: \`cargo tree -p shoal -e normal --prefix none [--prune mainline] | sort -u\`; a scratch crate depending on mainline =$mver (default-features = false, features = [\"async\"]) with the workspace's Cargo.lock, \`CARGO_TARGET_DIR=<scratch>/target cargo build --release --offline --timings\`."
}

if wanted get || wanted announce; then
  log "making $F_MIB MiB of random data"
  head -c "$((F_MIB << 20))" /dev/urandom > "$TMP/$NAME"
fi
if wanted lookups || wanted announce; then bin_case || { failed=1; row "1. / 3. the in-process DHT | failed (see log) | -"; }; fi
if wanted get; then get_case || { failed=1; row "2. shoal get through the DHT | failed (see log) | -"; }; fi
if wanted announce; then share_case || { failed=1; row "3d. a real shoal serve's announce pass | failed (see log) | -"; }; fi
stop_nodes
if wanted cost; then cost_case || { failed=1; row "4. mainline's cost | failed (see log) | -"; }; fi

{
  echo "## shoal DHT benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
  echo
  echo "| case | measured | figure |"
  echo "| --- | --- | --- |"
  sort -s -t'|' -k2,2 "$ROWS"
  echo
  cat "$NOTES"
  echo "- Load average (1, 5, 15 min) at the start: ${LOAD_START}; at the end: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores shared)."
  echo "- shoal: $SHOAL ($("$SHOAL" --version 2>/dev/null || echo unknown), built $(date -u -r "$SHOAL" +%Y-%m-%dT%H:%MZ 2>/dev/null || echo '?')); this script's tree $(cd "$root" && git describe --always --dirty 2>/dev/null || echo unknown); command: bash bench/dht.sh${ARGS:+ $ARGS}"
}
exit "$failed"
