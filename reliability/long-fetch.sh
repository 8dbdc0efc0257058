#!/usr/bin/env bash
# The seed's fetch over a slow link: a 64 MB file from a holder serving 400 KiB/s (about 160 s),
# fetched through Python's xmlrpc client, the way the seed's own client calls it. Prints how long
# the one call took and what it answered; the file must then be in the share, whole.
#   reliability/long-fetch.sh               (uses target/release/shoal; SHOAL=path to choose)
set -euo pipefail
cd "$(dirname "$0")/.."
shoal="${SHOAL:-target/release/shoal}"
size_mb="${SIZE_MB:-64}"
rate="${RATE:-400K}"
export SHOAL_LOCAL_ONLY=1
work="$(mktemp -d /tmp/shoal-long-fetch.XXXXXX)"
cleanup() {
    # The nodes were started inside command substitutions: their pids are in files.
    for pid in "$work"/*.pid; do [ -e "$pid" ] && kill "$(cat "$pid")" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/holder" "$work/owner"
head -c "$((size_mb * 1000 * 1000))" /dev/urandom > "$work/holder/big.bin"

# Each node prints its URL; wait for that line (bounded).
start() {
    local name="$1"; shift
    "$shoal" serve --listen 127.0.0.1:0 --state "$work/$name-state" --dir "$work/$name" --no-iroh "$@" \
        > "$work/$name.out" 2> "$work/$name.err" &
    echo $! > "$work/$name.pid"
    for _ in $(seq 1 300); do
        url="$(grep -o 'http://127.0.0.1:[0-9]*' "$work/$name.out" | head -1 || true)"
        [ -n "$url" ] && { echo "$url"; return; }
        sleep 0.1
    done
    echo "the $name node did not start" >&2; exit 1
}
holder="$(start holder --max-upload-rate "$rate")"
owner="$(start owner --secret long-fetch --peer "$holder")"
python3 - "$owner" "$work/holder/big.bin" "$work/owner/big.bin" <<'PY'
import hashlib, sys, time, xmlrpc.client
owner, original, fetched = sys.argv[1:]
node = xmlrpc.client.ServerProxy(owner)
# The holder indexes its share in the background: wait (bounded) until the owner finds the file.
for _ in range(600):
    try:
        if any(m["name"] == "big.bin" for m in node.shoal.search("big.bin")):
            break
    except xmlrpc.client.Fault:
        pass
    time.sleep(0.1)
start = time.monotonic()
answer = node.fetch("big.bin", "long-fetch")
took = time.monotonic() - start
digest = lambda p: hashlib.blake2b(open(p, "rb").read()).hexdigest()
same = digest(original) == digest(fetched)
print(f"fetch answered {answer!r} after {took:.1f} s; the file in the share is {'whole' if same else 'DIFFERENT'}")
sys.exit(0 if answer == 0 and same else 1)
PY
