#!/usr/bin/env bash
# Swarm benchmarks of shoal (issue 18): a flash crowd of shoal nodes fetching one file from one
# holder, against the Kumar-Ross bound and against aria2c and libtorrent swarms of the same crowd
# measured in the same run.
#
#   bash bench/swarm.sh [--quick] [--no-build] [--no-anchors] [--only CASE]
#
# Every case: one holder of a random file F (64 MiB) serving at --max-upload-rate 4M, N
# downloaders serving at --max-upload-rate 2M, each started knowing only the holder (--peer), all
# told to `fetch` the file at once (XML-RPC, the seed's owner call); the makespan runs from the
# fetches' start until the last node has the complete, correct file (cmp with the source).
# T_min = max(F/u_s, N*F/(u_s + N*u)) (28.4 s for N = 16).
#   crowd  N = 16: makespan / T_min (target <= 1.25), and the same crowd as an aria2c and a
#          libtorrent swarm (../shared/bench/swarm-anchors.sh): shoal / aria2c, shoal / libtorrent
#   scale  N = 4, 16, 48: makespan / T_min and the largest peak RSS (VmHWM) of any node (<= 48 MiB)
#   leave  N = 16, the holder stopped (SIGTERM) once it has uploaded 1.25 x F: do all finish?
#   fair   N = 16, one of them a free rider (--no-partial-upload, when `shoal serve` has it): bytes
#          uploaded per downloader, the free rider's makespan against the median node's
# --quick: N = 4 and F = 16 MiB (scale without 48); --only CASE (repeatable) runs one case;
# --no-build uses the shoal binary as it is ($SHOAL_BIN, or target/release/shoal under
# $CARGO_TARGET_DIR or the repository); --no-anchors skips aria2c and libtorrent.
# Each crowd gives up after max(4 x T_min, 120 s) (60 s with --quick), or once no byte has moved
# for 30 s, and says so. Markdown table on stdout, the log on stderr. See bench/README.md.
set -euo pipefail
# Nothing leaves this machine: no public relays, look-ups, port mapping or mDNS; no proxy.
export SHOAL_LOCAL_ONLY=1
export NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost

usage() { sed -n '2,25p' "$0" >&2; }

ARGS="$*"
QUICK=0
BUILD=1
ANCHORS=1
ONLY=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --no-anchors) ANCHORS=0 ;;
    --only)
      case "${2:-}" in
        crowd|scale|leave|fair) ONLY+=("$2") ;;
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
SHOAL=${SHOAL_BIN:-${CARGO_TARGET_DIR:-$root/target}/release/shoal}
SWARM_ANCHORS=$root/../shared/bench/swarm-anchors.sh

MIB=$((1 << 20))
HOLDER_RATE=4M; HOLDER_MIBS=4   # u_s, as given to --max-upload-rate and in MiB/s
PEER_RATE=2M; PEER_MIBS=2       # u
if [ "$QUICK" = 1 ]; then
  F_MIB=16; CROWD_N=4; SCALE_NS=(4 16); LEAVE_N=4; FAIR_N=4; LIMIT_FLOOR=60
else
  F_MIB=64; CROWD_N=16; SCALE_NS=(4 16 48); LEAVE_N=16; FAIR_N=16; LIMIT_FLOOR=120
fi
STALL=30          # seconds without a byte moving anywhere before a crowd is given up
LEAVE_FACTOR=1.25 # the holder leaves once it has uploaded this many times F
NAME=swarm.bin

log() { echo "[swarm $(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in curl python3 ss pgrep cmp; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done

# ---------------------------------------------------------------------------------------------
# Scratch space and cleanup: every process we start is recorded and killed by its pid.

TMP=$(mktemp -d /tmp/shoal-swarm.XXXXXX)
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
# arithmetic on decimals: calc 'a / b' → printed with %.3f unless a format is given
calc() { awk "BEGIN { printf \"${2:-%.3f}\", ($1) }"; }
yes_no() { calc "$1" %d | sed 's/1/yes/;s/0/NO/'; }

# The bound for N downloaders: max(F/u_s, N*F/(u_s + N*u)), in seconds.
t_min() { calc "($F_MIB / $HOLDER_MIBS > $1 * $F_MIB / ($HOLDER_MIBS + $1 * $PEER_MIBS)) ? $F_MIB / $HOLDER_MIBS : $1 * $F_MIB / ($HOLDER_MIBS + $1 * $PEER_MIBS)" %.2f; }
# How long a crowd of N may take before it is given up.
limit_for() { local l; l=$(calc "4 * $(t_min "$1")"); calc "($l > $LIMIT_FLOOR) ? $l : $LIMIT_FLOOR" %.0f; }

# ---------------------------------------------------------------------------------------------
# Nodes

# Starts `shoal serve` on loopback in the background (TCP and iroh's UDP both on 127.0.0.1);
# sets NODE_URL, NODE_PID (the shoal process itself, for /proc and SIGTERM) and NODE_SECRET
# (the path of its secret file).
start_node() { # DIR STATE [EXTRA ARGS...]
  local dir=$1 state=$2; shift 2
  local logf="$state.log" i tpid
  mkdir -p "$dir" "$state"
  timeout 3600 "$SHOAL" serve --dir "$dir" --state "$state" --listen 127.0.0.1:0 \
    --iroh-listen 127.0.0.1:0 "$@" > "$logf" 2>&1 &
  tpid=$!
  PIDS+=("$tpid")
  NODE_URL='' NODE_PID=
  for i in $(seq 1 300); do
    kill -0 "$tpid" 2>/dev/null || { cat "$logf" >&2; die "shoal serve exited early (log above)"; }
    [ -n "$NODE_PID" ] || NODE_PID=$(pgrep -P "$tpid" | head -1 || true)
    NODE_URL=$(sed -n 's/^node URL \(http[^ ]*\).*/\1/p' "$logf" 2>/dev/null | head -1)
    [ -n "$NODE_URL" ] && [ -n "$NODE_PID" ] && break
    sleep 0.1
  done
  if [ -z "$NODE_URL" ] || [ -z "$NODE_PID" ]; then die "shoal serve printed no URL within 30 s ($logf)"; fi
  NODE_SECRET=$(sed -n 's/^secret for fetch is kept in //p' "$logf" | head -1)
  [ -n "$NODE_SECRET" ] || NODE_SECRET=$state/secret
  case "$NODE_URL" in http://127.*) ;; *) die "a node is not on loopback: $NODE_URL" ;; esac
}

# The node's /metrics (the owner's, with the secret as a bearer token) on stdout.
metrics() { # URL SECRET_FILE
  curl -sf --max-time 5 -H "Authorization: Bearer $(head -1 "$2")" "$1/metrics"
}

# Waits (at most 60 s) until the node's metrics satisfy an awk condition on the summed value of
# the metric named M (every label set added up).
wait_metric() { # URL SECRET_FILE METRIC AWK_CONDITION_ON_v WHAT
  local i
  for i in $(seq 1 600); do
    if metrics "$1" "$2" 2>/dev/null | awk -v m="$3" '$1 == m || index($1, m "{") == 1 { v += $NF } END { exit !('"$4"') }'; then
      return 0
    fi
    sleep 0.1
  done
  die "$1: $5 not seen within 60 s"
}

# ---------------------------------------------------------------------------------------------
# The crowd driver: fires every fetch at once, watches the crowd, stops the holder when told to,
# samples peak RSS and the nodes' sockets, and writes its findings as shell assignments.
cat > "$TMP/crowd.py" <<'PY'
"""One flash crowd of shoal nodes (written and run by bench/swarm.sh).

usage: crowd.py NODES NAME SOURCE LIMIT STALL LEAVE_AT OUT
NODES has one node a line, `ROLE<TAB>URL<TAB>SECRET_FILE<TAB>PID<TAB>DIR`, the holder first
(ROLE holder, peer or free). Every downloader is asked `fetch(NAME, secret)` at once, each in
its own thread; the driver waits until all answered, LIMIT seconds passed, or for STALL seconds
no byte moved; it stops the holder (SIGTERM) once it has uploaded LEAVE_AT bytes (0: never).
OUT gets shell assignments R_*."""
import concurrent.futures, filecmp, os, re, shlex, signal, statistics, subprocess, sys, threading, time
import urllib.request, xmlrpc.client

nodes_file, name, source, limit, stall, leave_at, out = sys.argv[1:8]
limit, stall, leave_at = float(limit), float(stall), int(leave_at)
size = os.path.getsize(source)
UP, DOWN = "shoal_bytes_uploaded_total", "shoal_bytes_downloaded_total"

nodes = []
for line in open(nodes_file):
    role, url, secret_file, pid, d = line.rstrip("\n").split("\t")
    nodes.append({"role": role, "url": url, "secret": open(secret_file).read().split()[0],
                  "pid": int(pid), "dir": d})
holder, crowd = nodes[0], nodes[1:]

opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
pool = concurrent.futures.ThreadPoolExecutor(max_workers=8)  # metrics of many nodes at once

def metrics(node):
    """The node's metrics, each name summed over its labels; None when it does not answer."""
    req = urllib.request.Request(node["url"] + "/metrics",
                                 headers={"Authorization": "Bearer " + node["secret"]})
    try:
        text = opener.open(req, timeout=3).read().decode()
    except Exception:
        return None
    sums = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            sums[key.split("{")[0]] = sums.get(key.split("{")[0], 0.0) + float(value)
        except ValueError:
            pass
    return sums

peak = {}
def sample_rss():
    for n in nodes:
        try:
            with open(f"/proc/{n['pid']}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        peak[n["pid"]] = max(peak.get(n["pid"], 0), int(line.split()[1]))
        except OSError:
            pass

LOOPBACK = re.compile(r"^(127\.|\[::1\]|::1|\[::ffff:127\.|\*|0\.0\.0\.0:\*|\[::\]:\*)")
pids = {n["pid"] for n in nodes}
foreign, seen = set(), [0]
def check_sockets():
    """Notes any socket of our nodes whose local or remote address is off loopback."""
    try:
        lines = subprocess.run(["ss", "-Htunap"], capture_output=True, text=True, timeout=10).stdout
    except Exception:
        return
    for line in lines.splitlines():
        m = re.search(r"pid=(\d+),", line)
        if not m or int(m.group(1)) not in pids:
            continue
        seen[0] += 1
        fields = line.split()
        for addr in fields[4:6]:
            if not LOOPBACK.match(addr):
                foreign.add(f"{fields[0]} {fields[4]} {fields[5]}")

class Transport(xmlrpc.client.Transport):
    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = limit + 60
        return conn

results = {}
gate = threading.Barrier(len(crowd) + 1)
def fetch(i, node):
    proxy = xmlrpc.client.ServerProxy(node["url"], transport=Transport())
    gate.wait()
    try:
        proxy.fetch(name, node["secret"])
        err = None
    except Exception as e:
        err = f"{type(e).__name__}: {e}"[:160]
    results[i] = (time.monotonic(), err)

for i, node in enumerate(crowd):
    threading.Thread(target=fetch, args=(i, node), daemon=True).start()
time.sleep(0.5)  # every thread is at the gate (they only build a proxy first)
t0 = time.monotonic()
gate.wait()

ended, killed_at, holder_up, last_total, last_move = "all answered", None, 0.0, None, t0
next_watch, next_ss = t0, t0
while len(results) < len(crowd):
    time.sleep(0.25)
    now = time.monotonic()
    if now - t0 > limit:
        ended = f"the limit of {limit:.0f} s"
        break
    if leave_at and killed_at is None:
        m = metrics(holder)
        if m is not None:
            holder_up = m.get(UP, 0.0)
            if holder_up >= leave_at:
                sample_rss()
                os.kill(holder["pid"], signal.SIGTERM)
                killed_at = now - t0
    if now >= next_watch:  # every 2 s: memory and progress
        next_watch = now + 2.0
        sample_rss()
        alive = [n for n in nodes if not (n is holder and killed_at is not None)]
        total = sum(m.get(UP, 0.0) + m.get(DOWN, 0.0) for m in pool.map(metrics, alive) if m)
        if total != last_total:
            last_total, last_move = total, now
        elif now - last_move > stall:
            ended = f"a stall (no byte moved for {stall:.0f} s)"
            break
    if now >= next_ss:
        next_ss = now + 5.0
        check_sockets()
elapsed = time.monotonic() - t0

# Before anything stops: memory, sockets and counters of every node still running.
sample_rss()
check_sockets()
final = dict(enumerate(pool.map(metrics, crowd)))
if killed_at is None:
    m = metrics(holder)
    if m is not None:
        holder_up = m.get(UP, 0.0)

answered = {i: t - t0 for i, (t, err) in results.items() if err is None}
errors = sorted({err for _, err in results.values() if err})
correct = {i: s for i, s in answered.items()
           if filecmp.cmp(source, os.path.join(crowd[i]["dir"], name), shallow=False)}
makespan = max(correct.values()) if len(correct) == len(crowd) else None

def mib(b):
    return f"{b / 1048576:.1f}"
up = [(final[i] or {}).get(UP, 0.0) for i in range(len(crowd))]
got = sum((final[i] or {}).get(DOWN, 0.0) for i in range(len(crowd)))
fair = [i for i, n in enumerate(crowd) if n["role"] != "free"]
free = [i for i, n in enumerate(crowd) if n["role"] == "free"]
fair_times = sorted(correct[i] for i in fair if i in correct)

r = {
    "R_N": len(crowd),
    "R_ANSWERED": len(answered),
    "R_CORRECT": len(correct),
    "R_MAKESPAN": f"{makespan:.2f}" if makespan is not None else "",
    "R_ENDED": ended,
    "R_ELAPSED": f"{elapsed:.1f}",
    "R_TIMES": " ".join(f"{s:.1f}" for s in sorted(correct.values())),
    "R_ERRORS": " | ".join(errors[:3]),
    "R_RSS_MAX_KB": max(peak.values(), default=0),
    "R_RSS_HOLDER_KB": peak.get(holder["pid"], 0),
    "R_RSS_CROWD_KB": max((peak.get(n["pid"], 0) for n in crowd), default=0),
    "R_UP_MIB": " ".join(mib(b) for b in up),
    "R_UP_MIN": mib(min(up[i] for i in fair)) if fair else "",
    "R_UP_MEDIAN": mib(statistics.median(up[i] for i in fair)) if fair else "",
    "R_UP_MAX": mib(max(up[i] for i in fair)) if fair else "",
    "R_FREE_UP": mib(up[free[0]]) if free else "",
    "R_FREE_TIME": f"{correct[free[0]]:.2f}" if free and free[0] in correct else "",
    # the median node's makespan, when at least half of the others finished
    "R_MEDIAN_TIME": f"{statistics.median(fair_times + [float('inf')] * (len(fair) - len(fair_times))):.2f}"
                     if fair and 2 * len(fair_times) >= len(fair) + 1 else "",
    "R_HOLDER_UP": mib(holder_up),
    "R_KILLED_AT": f"{killed_at:.1f}" if killed_at is not None else "",
    "R_GOT_PCT": f"{100 * got / (len(crowd) * size):.0f}",
    "R_FOREIGN": " ; ".join(sorted(foreign)[:5]),
    "R_SOCKETS": seen[0],
}
with open(out, "w") as f:
    for k, v in r.items():
        f.write(f"{k}={shlex.quote(str(v))}\n")
PY

# Runs one crowd of N downloaders (FREE of them free riders, the last ones), the holder leaving
# after LEAVE_AT bytes (0: never); sources the driver's R_* assignments and stops every node.
# Also sets R_START_SECS (how long starting the nodes took).
run_crowd() { # LABEL N FREE LEAVE_AT
  local label=$1 n=$2 free=$3 leave_at=$4 dir=$TMP/$1 i args limit
  limit=$(limit_for "$n")
  local need_mib=$(( (n + 1) * F_MIB + 512 ))
  local avail_mib=$(($(df -Pk "$TMP" | awk 'NR == 2 { print $4 }') / 1024))
  [ "$avail_mib" -ge "$need_mib" ] || { log "$label: only $avail_mib MiB free under /tmp, $need_mib needed"; return 1; }
  mkdir -p "$dir/holder"
  ln "$TMP/$NAME" "$dir/holder/$NAME"
  log "$label: starting the holder and $n downloaders (T_min $(t_min "$n") s, limit ${limit} s)"
  local t_start; t_start=$(date +%s)
  start_node "$dir/holder" "$dir/holder-state" --max-upload-rate "$HOLDER_RATE"
  local holder=$NODE_URL
  printf 'holder\t%s\t%s\t%s\t%s\n' "$NODE_URL" "$NODE_SECRET" "$NODE_PID" "$dir/holder" > "$dir/nodes"
  wait_metric "$NODE_URL" "$NODE_SECRET" shoal_files_indexed 'v >= 1' "the holder's file indexed"
  for i in $(seq 1 "$n"); do
    args=(--peer "$holder" --max-upload-rate "$PEER_RATE")
    local role=peer
    if [ "$i" -gt $((n - free)) ]; then role=free; args+=(--no-partial-upload); fi
    start_node "$dir/d$i" "$dir/d$i-state" "${args[@]}"
    printf '%s\t%s\t%s\t%s\t%s\n' "$role" "$NODE_URL" "$NODE_SECRET" "$NODE_PID" "$dir/d$i" >> "$dir/nodes"
  done
  # Each downloader answers its metrics and counts the holder among its peers.
  while IFS=$'\t' read -r _ url secret _ _; do
    wait_metric "$url" "$secret" shoal_peers 'v >= 1' "a known peer"
  done < <(tail -n +2 "$dir/nodes")
  R_START_SECS=$(( $(date +%s) - t_start ))
  log "$label: $((n + 1)) nodes up in ${R_START_SECS} s; fetching"
  timeout $((limit + 300)) python3 "$TMP/crowd.py" "$dir/nodes" "$NAME" "$TMP/$NAME" "$limit" "$STALL" \
    "$leave_at" "$dir/result.sh" >&2 || { stop_nodes; rm -rf "$dir"; log "$label: the driver failed"; return 1; }
  # shellcheck disable=SC1091
  . "$dir/result.sh"
  stop_nodes
  rm -rf "$dir"
  log "$label: $R_CORRECT of $R_N have the correct file after ${R_ELAPSED} s (ended by $R_ENDED); finish times: ${R_TIMES:-none}"
  [ -z "$R_ERRORS" ] || log "$label: fetch errors: $R_ERRORS"
  if [ -n "$R_FOREIGN" ]; then note "$label: sockets off loopback seen: $R_FOREIGN"
  else SOCKETS_SEEN=$((SOCKETS_SEEN + R_SOCKETS)); fi
}

# The crowd's result as table cells: sets SHOAL_CELL (what shoal did) and RATIO (makespan /
# T_min, or "> limit / T_min" when not all finished) and MET for target 1.25.
crowd_cells() { # N
  local tm; tm=$(t_min "$1")
  if [ -n "$R_MAKESPAN" ]; then
    SHOAL_CELL="makespan ${R_MAKESPAN} s (all ${R_N} correct)"
    RATIO=$(calc "$R_MAKESPAN / $tm" %.2f)
    MET=$(yes_no "$RATIO <= 1.25")
  else
    SHOAL_CELL="not all finished in the limit: ${R_CORRECT}/${R_N} correct after ${R_ELAPSED} s (ended by ${R_ENDED}); the crowd had ${R_GOT_PCT}% of N×F"
    RATIO="> $(calc "$R_ELAPSED / $tm" %.2f)"
    MET=NO
  fi
}

rss_mib() { calc "$1 / 1024" %.1f; }

# ---------------------------------------------------------------------------------------------
if [ "$BUILD" = 1 ]; then
  log "building shoal (release)"
  (cd "$root" && timeout 1800 cargo build --release -p shoal) >&2 || die "cargo build failed"
fi
[ -x "$SHOAL" ] || die "$SHOAL is missing (build it, or set SHOAL_BIN)"
FREE_FLAG=0
"$SHOAL" serve --help 2>/dev/null | grep -q -- '--no-partial-upload' && FREE_FLAG=1

log "making $F_MIB MiB of random data"
head -c "$((F_MIB * MIB))" /dev/urandom > "$TMP/$NAME"
sync

failed=0
CROWD_DONE=
SOCKETS_SEEN=0
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# 1. The flash crowd, and the same crowd as aria2c and libtorrent swarms.
crowd_case() {
  local n=$CROWD_N tm; tm=$(t_min "$n")
  run_crowd crowd "$n" 0 0 || return 1
  CROWD_DONE="$R_MAKESPAN|$R_RSS_MAX_KB|$R_RSS_HOLDER_KB|$R_RSS_CROWD_KB|$R_CORRECT|$R_ELAPSED|$R_ENDED|$R_GOT_PCT|$R_N"
  crowd_cells "$n"
  local what="flash crowd, N=$n, ${F_MIB} MiB, holder ${HOLDER_MIBS} MiB/s, peers ${PEER_MIBS} MiB/s"
  row "1a. $what | $SHOAL_CELL | T_min ${tm} s; client-server N·F/u_s $(calc "$n * $F_MIB / $HOLDER_MIBS" %.0f) s | **makespan / T_min ${RATIO}** | ≤ 1.25 | $MET"
  note "crowd: finish times (s): ${R_TIMES:-none}; nodes started in ${R_START_SECS} s (not counted); uploaded per downloader (MiB): ${R_UP_MIB}; holder uploaded ${R_HOLDER_UP} MiB${R_ERRORS:+; fetch errors: $R_ERRORS}"
  if [ "$ANCHORS" = 0 ]; then
    note "crowd: anchors skipped (--no-anchors)"
    return 0
  fi
  [ -x "$SWARM_ANCHORS" ] || { note "crowd: anchors skipped: $SWARM_ANCHORS is missing"; return 0; }
  log "crowd: the anchors (aria2c, then libtorrent; up to 300 s each)"
  local out=$TMP/anchors.out
  timeout 900 bash "$SWARM_ANCHORS" "$TMP/$NAME" "$n" "$HOLDER_RATE" "$PEER_RATE" > "$out" 2> "$TMP/anchors.err" || {
    log "swarm-anchors.sh failed:"; tail -5 "$TMP/anchors.err" >&2; }
  sed 's/^/    /' "$out" >&2
  local aria lt ltv
  aria=$(sed -n 's/^aria2c makespan \(-\{0,1\}[0-9.]*\).*/\1/p' "$out" | head -1)
  lt=$(sed -n 's/^libtorrent.* makespan \(-\{0,1\}[0-9.]*\).*/\1/p' "$out" | head -1)
  ltv=$(sed -n 's/^\(libtorrent [^:]*\):.*/\1/p' "$out" | head -1)
  [ -z "$aria" ] || aria=$(calc "$aria" %.2f)
  anchor_row "1b." aria2c "aria2c swarm" "$aria"
  anchor_row "1c." libtorrent "${ltv:-libtorrent} swarm" "$lt"
  note "crowd: anchors printed: $(tr '\n' ';' < "$out")"
}

anchor_row() { # NUM SHORT DESCRIPTION MAKESPAN
  local num=$1 short=$2 what=$3 t=$4 shoal ref fig
  if [ -n "$R_MAKESPAN" ]; then shoal="shoal ${R_MAKESPAN} s"; else shoal="shoal not all finished (${R_CORRECT}/${R_N} after ${R_ELAPSED} s)"; fi
  if [ -z "$t" ]; then
    ref="$what: no figure (see log)"; fig="-"
  elif [ "$(calc "$t < 0" %d)" = 1 ]; then
    ref="$what: not all finished in 300 s"; fig="-"
  else
    ref="$what ${t} s ($(calc "$t / $(t_min "$CROWD_N")" %.2f)× T_min)"
    if [ -n "$R_MAKESPAN" ]; then fig="**shoal / $short $(calc "$R_MAKESPAN / $t" %.2f)**"
    else fig="**shoal / $short > $(calc "$R_ELAPSED / $t" %.2f)**"; fi
  fi
  row "$num same crowd | $shoal | $ref | $fig | - | -"
}

# 2. Scale: N = 4, 16, 48; N = 16 is case 1's run when that ran.
scale_case() {
  local n tm rc=0
  for n in "${SCALE_NS[@]}"; do
    tm=$(t_min "$n")
    if [ "$n" = "$CROWD_N" ] && [ -n "$CROWD_DONE" ]; then
      IFS='|' read -r R_MAKESPAN R_RSS_MAX_KB R_RSS_HOLDER_KB R_RSS_CROWD_KB R_CORRECT R_ELAPSED R_ENDED R_GOT_PCT R_N <<< "$CROWD_DONE"
      note "scale N=$n: the figures of case 1's run"
    else
      run_crowd "scale-$n" "$n" 0 0 || { rc=1; row "2. scale, N=$n | failed (see log) | | | ≤ 1.25 | NO"; continue; }
      note "scale N=$n: finish times (s): ${R_TIMES:-none}; uploaded per downloader (MiB): ${R_UP_MIB}${R_ERRORS:+; fetch errors: $R_ERRORS}"
    fi
    crowd_cells "$n"
    row "2. scale, N=$n | $SHOAL_CELL | T_min ${tm} s | **makespan / T_min ${RATIO}** | ≤ 1.25 | $MET"
    local rss; rss=$(rss_mib "$R_RSS_MAX_KB")
    row "2. scale, N=$n, peak RSS | largest VmHWM of the $((R_N + 1)) nodes: ${rss} MiB (holder $(rss_mib "$R_RSS_HOLDER_KB"), downloaders up to $(rss_mib "$R_RSS_CROWD_KB")) | | **${rss} MiB** | ≤ 48 MiB | $(yes_no "$rss <= 48")"
  done
  return "$rc"
}

# 3. The holder leaves once it has uploaded 1.25 x F.
leave_case() {
  local n=$LEAVE_N at; at=$(calc "$LEAVE_FACTOR * $F_MIB * $MIB" %.0f)
  run_crowd leave "$n" 0 "$at" || return 1
  local shoal all
  if [ -n "$R_MAKESPAN" ]; then shoal="makespan ${R_MAKESPAN} s ($(calc "$R_MAKESPAN / $(t_min "$n")" %.2f)× T_min)"; all=yes
  else shoal="not all finished: ${R_CORRECT}/${R_N} correct after ${R_ELAPSED} s (ended by ${R_ENDED}); the crowd had ${R_GOT_PCT}% of N×F"; all=NO; fi
  local left="the holder was stopped at ${R_KILLED_AT:-?} s, having uploaded ${R_HOLDER_UP} MiB"
  [ -n "$R_KILLED_AT" ] || left="the holder never reached $(calc "$at / $MIB" %.0f) MiB uploaded (${R_HOLDER_UP} MiB)"
  row "3. holder leaves after ${LEAVE_FACTOR}×F, N=$n | $shoal | $left | **all finished: $all** | all finish | $all"
  note "leave: finish times (s): ${R_TIMES:-none}; uploaded per downloader (MiB): ${R_UP_MIB}${R_ERRORS:+; fetch errors: $R_ERRORS}"
}

# 4. Fairness: bytes uploaded per downloader; one free rider when the flag exists.
fair_case() {
  local n=$FAIR_N free=1
  if [ "$FREE_FLAG" = 0 ]; then
    free=0
    note "fair: \`shoal serve --help\` does not list --no-partial-upload: no free rider in this run"
  fi
  run_crowd fair "$n" "$free" 0 || return 1
  local fr="no free rider"
  if [ "$free" = 1 ]; then
    if [ -n "$R_FREE_TIME" ] && [ -n "$R_MEDIAN_TIME" ]; then
      fr="free rider's makespan ${R_FREE_TIME} s vs the median node's ${R_MEDIAN_TIME} s (**$(calc "$R_FREE_TIME / $R_MEDIAN_TIME" %.2f)×**); it uploaded ${R_FREE_UP} MiB"
    else
      fr="free rider's makespan ${R_FREE_TIME:-not finished} vs the median node's ${R_MEDIAN_TIME:-not finished}; it uploaded ${R_FREE_UP} MiB"
    fi
  fi
  local others="the $((n - free)) others" done_txt
  [ "$free" = 1 ] || others="the $n downloaders"
  if [ -n "$R_MAKESPAN" ]; then done_txt="all finished, makespan ${R_MAKESPAN} s"
  else done_txt="${R_CORRECT}/${R_N} finished after ${R_ELAPSED} s (ended by ${R_ENDED})"; fi
  local riders="one free rider"; [ "$free" = 1 ] || riders="no free rider"
  row "4. fairness, N=$n ($riders) | uploaded per downloader over $others: min ${R_UP_MIN} / median ${R_UP_MEDIAN} / max ${R_UP_MAX} MiB; $done_txt | $fr | **min / median / max ${R_UP_MIN} / ${R_UP_MEDIAN} / ${R_UP_MAX} MiB** | - | -"
  note "fair: finish times (s): ${R_TIMES:-none}; uploaded per downloader (MiB$([ "$free" = 0 ] || echo ", the free rider last")): ${R_UP_MIB}; holder uploaded ${R_HOLDER_UP} MiB${R_ERRORS:+; fetch errors: $R_ERRORS}"
}

if wanted crowd; then crowd_case || { failed=1; row "1. flash crowd | failed (see log) | | | ≤ 1.25 | NO"; stop_nodes; }; fi
if wanted scale; then scale_case || { failed=1; stop_nodes; }; fi
if wanted leave; then leave_case || { failed=1; row "3. holder leaves | failed (see log) | | | all finish | NO"; stop_nodes; }; fi
if wanted fair; then fair_case || { failed=1; row "4. fairness | failed (see log) | | | - | -"; stop_nodes; }; fi

{
  echo "## shoal swarm benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $([ "$QUICK" = 1 ] && echo quick || echo full))"
  echo
  echo "F = ${F_MIB} MiB, holder --max-upload-rate ${HOLDER_RATE}, downloaders --max-upload-rate ${PEER_RATE}, every downloader started with --peer HOLDER only, all fetching at once."
  echo
  echo "| case | shoal | reference (same run) | figure | target | met |"
  echo "| --- | --- | --- | --- | --- | --- |"
  cat "$ROWS"
  echo
  cat "$NOTES"
  echo "- Loopback: the nodes' sockets (ss, every 5 s during each crowd) were seen ${SOCKETS_SEEN} times, none off loopback unless noted above."
  echo "- Load average (1, 5, 15 min) at the start: ${LOAD_START}; at the end: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores shared)."
  echo "- Limits: each crowd gives up after max(4 × T_min, ${LIMIT_FLOOR} s) or ${STALL} s without a byte moving; makespans count from the moment all fetches were released."
  echo "- shoal: $SHOAL ($("$SHOAL" --version 2>/dev/null || echo unknown), built $(date -u -r "$SHOAL" +%Y-%m-%dT%H:%MZ)); this script's tree $(cd "$root" && git describe --always --dirty 2>/dev/null || echo unknown); command: bash bench/swarm.sh${ARGS:+ $ARGS}"
}
exit "$failed"
