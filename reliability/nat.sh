#!/usr/bin/env bash
# Two homes behind NAT, one relay: does a file cross from one home to the other over iroh,
# directly (hole punching) or through the relay, and does it arrive intact?
#
#   sudo SHOAL_BIN=target/release/shoal reliability/nat.sh
#
# Needs root (network namespaces, veth, iptables). Everything runs inside namespaces this script
# creates: none of them is connected to the machine's real interfaces, so no packet can leave.
#
#                 "internet" namespace: bridge br0, 203.0.113.0/24
#          /                  |                     |                 \
#   relay .10           router1 .11              router2 .12        public .20
#   shoal relay          | 10.1.0.1               | 10.2.0.1        shoal get (no NAT)
#                       host1 10.1.0.2           host2 10.2.0.2
#                       shoal serve              shoal get         (routers MASQUERADE on wan)
#
# The relay serves https with a certificate from a CA this script makes (the nodes trust it with
# --ca-cert), and QUIC address discovery on UDP 7842: each node learns its public (NATed)
# address from it, as from iroh's public relays.
# Case "open": host2 downloads from host1 with nothing but the two NATs between them: both
# know their public addresses, so hole punching through the two NATs can succeed. A download
# starts on the relay and moves to the direct path once the punch meets; the counters show
# how much went each way. (The routers drop unsolicited inbound packets, as home routers do;
# see make_home for why that matters to Linux's NAT.)
# Case "one-nat": the public host downloads from host1, through home 1's NAT alone: host1 can
# aim at the public address, so the direct path is expected here.
# Case "blocked": host2 again, with each router also dropping forwarded UDP to and from the
# other home's wan address, so only the relay (https over TCP) can carry the data.
#   NAT_SIZE_MIB=512 ... sets the file's size (default 64).
# Exit code 0 when every case delivered an identical file, 1 when one did not, 2 when the
# scenario could not be set up.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="${SHOAL_BIN:-target/release/shoal}"
[[ "$bin" = /* ]] || bin="$PWD/$bin"
size_mib="${NAT_SIZE_MIB:-64}"
get_timeout="${NAT_GET_TIMEOUT:-90}"   # seconds one `shoal get` may take before it is killed
export SHOAL_LOCAL_ONLY=1

if [[ ! -x "$bin" ]]; then
    echo "nat: no shoal binary at $bin (cargo build --release -p shoal, or set SHOAL_BIN)" >&2
    exit 2
fi
if [[ $EUID -ne 0 ]]; then
    echo "nat: needs root (network namespaces and iptables)" >&2
    exit 2
fi
for tool in ip iptables timeout cmp; do
    command -v "$tool" >/dev/null || { echo "nat: $tool is missing" >&2; exit 2; }
done

# Namespace names carry this script's pid, so that two runs do not collide.
tag="snat$$"
ns_inet="$tag-inet"
ns_relay="$tag-relay"
ns_r1="$tag-router1"
ns_h1="$tag-host1"
ns_r2="$tag-router2"
ns_h2="$tag-host2"
ns_pub="$tag-public"
namespaces=("$ns_inet" "$ns_relay" "$ns_r1" "$ns_h1" "$ns_r2" "$ns_h2" "$ns_pub")
relay_ip=203.0.113.10
relay_http_port=3340
relay_port=3341
relay_url="https://$relay_ip:$relay_port"

work="$(mktemp -d /tmp/shoal-nat.XXXXXX)"
pids=()

# --- cleanup: stop our processes, delete our namespaces and the temp dir, whatever happened ---
cleanup() {
    local pid ns i
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Give them up to 3 s to exit, then kill what is left.
    for i in $(seq 30); do
        local alive=0
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [[ $alive = 0 ]] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    for ns in "${namespaces[@]}"; do
        # Anything still inside one of our namespaces was started by this script.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
        ip netns del "$ns" 2>/dev/null || true
    done
    if [[ -n "${NAT_KEEP:-}" ]]; then echo "nat: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 2' INT TERM

in_ns() { local ns="$1"; shift; ip netns exec "$ns" "$@"; }

# Starts a command in a namespace in the background, its output in $work/NAME.out and .err.
start_in() {
    local ns="$1" name="$2"; shift 2
    ip netns exec "$ns" "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pids+=($!)
}

# Waits (at most 20 s) for a line matching PATTERN in FILE; prints the first match.
wait_for_line() {
    local file="$1" pattern="$2" i
    for i in $(seq 200); do
        if grep -m1 -E "$pattern" "$file" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

die() {
    echo "nat: $*" >&2
    exit 2
}

# --- the internet: a namespace holding one bridge that every wan leg plugs into ---
for ns in "${namespaces[@]}"; do
    ip netns add "$ns"
    in_ns "$ns" ip link set lo up
    # IPv4 only: the scenario is about NAT, and link-local IPv6 would only add noise.
    in_ns "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    in_ns "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
done
in_ns "$ns_inet" ip link add br0 type bridge
in_ns "$ns_inet" ip link set br0 up

# Plugs namespace NS into the internet bridge through a veth named wan0 with address ADDR.
plug_into_internet() {
    local ns="$1" addr="$2" port="$3"
    ip link add wan0 netns "$ns" type veth peer name "$port" netns "$ns_inet"
    in_ns "$ns_inet" ip link set "$port" master br0 up
    in_ns "$ns" ip addr add "$addr/24" dev wan0
    in_ns "$ns" ip link set wan0 up
}

# --- the relay: its own namespace on the internet, running `shoal relay` ---
plug_into_internet "$ns_relay" "$relay_ip" p-relay
# A CA of our own and the relay's certificate for its address.
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=nat test CA" \
    -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=$relay_ip" -keyout "$work/relay.key" -out "$work/relay.csr" 2>/dev/null
printf 'subjectAltName=IP:%s\n' "$relay_ip" >"$work/relay.ext"
openssl x509 -req -in "$work/relay.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 1 \
    -extfile "$work/relay.ext" -out "$work/relay.pem" 2>/dev/null
start_in "$ns_relay" relay "$bin" relay --listen "$relay_ip:$relay_http_port" \
    --tls-cert "$work/relay.pem" --tls-key "$work/relay.key" --https-listen "$relay_ip:$relay_port"

# --- two homes: a NAT router (wan on the internet, lan to the home) and one host behind it ---
make_home() {
    local n="$1" router="$2" host="$3" wan_ip="$4"
    plug_into_internet "$router" "$wan_ip" "p-router$n"
    ip link add lan0 netns "$router" type veth peer name eth0 netns "$host"
    in_ns "$router" ip addr add "10.$n.0.1/24" dev lan0
    in_ns "$router" ip link set lan0 up
    in_ns "$router" sysctl -qw net.ipv4.ip_forward=1
    in_ns "$router" iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE
    # As home routers do, unsolicited packets from the internet are dropped. Dropped before
    # conntrack confirms them, they leave no entry behind: a hole punch that arrives before
    # this side's own has gone out does not take the port this side's mapping needs (with
    # the entry, MASQUERADE would pick another port and the punch could never meet).
    in_ns "$router" iptables -A INPUT -i wan0 -m conntrack --ctstate NEW -j DROP
    in_ns "$host" ip addr add "10.$n.0.2/24" dev eth0
    in_ns "$host" ip link set eth0 up
    in_ns "$host" ip route add default via "10.$n.0.1"
}
make_home 1 "$ns_r1" "$ns_h1" 203.0.113.11
make_home 2 "$ns_r2" "$ns_h2" 203.0.113.12

# --- a host straight on the internet, behind no NAT ---
plug_into_internet "$ns_pub" 203.0.113.20 p-public

# Router 1 counts what leaves home 1 (the serving side), as a check on the path shoal reports:
# UDP to anywhere but the relay (direct), and TCP to the relay. Rules without a target only
# count.
in_ns "$ns_r1" iptables -A FORWARD -i lan0 -o wan0 -p udp ! -d "$relay_ip" -m comment --comment nat-direct
in_ns "$ns_r1" iptables -A FORWARD -i lan0 -o wan0 -p tcp -d "$relay_ip" --dport "$relay_port" -m comment --comment nat-relay
# The bytes and packets router 1's rule with COMMENT matched, as "BYTES PACKETS".
counted() {
    in_ns "$ns_r1" iptables -L FORWARD -v -x -n | awk -v c="/* $1 */" 'index($0, c) { b += $2; p += $1 } END { print b + 0, p + 0 }'
}

wait_for_line "$work/relay.out" '^relay listening' >/dev/null || {
    cat "$work/relay.err" >&2
    die "the relay did not start"
}
# Both homes must reach the relay through their NATs (TCP, as the relay protocol uses).
for host in "$ns_h1" "$ns_h2" "$ns_pub"; do
    in_ns "$host" timeout 5 bash -c "exec 3<>/dev/tcp/$relay_ip/$relay_port" || die "$host cannot reach the relay"
done

# --- home 1 shares a random file ---
mkdir -p "$work/share" "$work/serve-state"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$work/share/big.bin"
start_in "$ns_h1" serve "$bin" serve --dir "$work/share" --state "$work/serve-state" \
    --listen 127.0.0.1:0 --local-only --no-mdns --relay "$relay_url" --ca-cert "$work/ca.pem"
ticket_line="$(wait_for_line "$work/serve.out" '^ticket ')" || {
    cat "$work/serve.out" "$work/serve.err" >&2
    die "shoal serve printed no ticket"
}
ticket="${ticket_line#ticket }"

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }

# --- one case: a host downloads the file, timed, compared with the original, its path read ---
report=()
failed=0
run_case() {
    local name="$1" downloader="$2" dir="$work/get-$1"
    mkdir -p "$dir/state" "$dir/out"
    local t0 t1 rc=0
    in_ns "$ns_r1" iptables -Z FORWARD
    t0="$(date +%s.%N)"
    in_ns "$downloader" timeout -k 5 "$get_timeout" "$bin" get big.bin --peer "$ticket" --state "$dir/state" \
        -o "$dir/out/" --local-only --no-mdns --relay "$relay_url" --ca-cert "$work/ca.pem" --json --retry-for 30 \
        >"$dir/get.out" 2>"$dir/get.err" || rc=$?
    t1="$(date +%s.%N)"
    local seconds transfer path verdict
    seconds="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
    # shoal's own count, from the first request to the verified file (no start-up or exit).
    transfer="$(grep '"event":"done"' "$dir/get.out" | grep -o '"seconds":[0-9.]*' | head -1 | cut -d: -f2 || true)"
    transfer="$(awk -v t="${transfer:-0}" 'BEGIN { printf "%.2f", t }')"
    path="$(grep '"event":"path"' "$dir/get.out" | grep -o '"path":"[a-z]*"' | head -1 | cut -d'"' -f4 || true)"
    if [[ $rc -eq 0 ]] && cmp -s "$work/share/big.bin" "$dir/out/big.bin"; then
        verdict="verified"
    else
        verdict="FAILED (exit $rc$([[ $rc -eq 124 ]] && echo ", killed after ${get_timeout} s"))"
        failed=1
        echo "nat: case $name: shoal get output:" >&2
        tail -n 5 "$dir/get.out" "$dir/get.err" >&2 || true
    fi
    local direct relayed dropped
    read -r direct _ < <(counted nat-direct)
    read -r relayed _ < <(counted nat-relay)
    read -r _ dropped < <(counted nat-drop)
    report+=("nat: case $name: $size_mib MiB in $seconds s (transfer $transfer s) via ${path:-unknown}, $verdict")
    report+=("nat:   home 1 sent $(mib "$direct") MiB of UDP past its NAT, $(mib "$relayed") MiB over TCP to the relay; router 1 dropped $dropped UDP packets")
}

# Case open: host2 from host1, the two NATs alone.
run_case open "$ns_h2"

# Case one-nat: the public host from host1.
run_case one-nat "$ns_pub"

# Case blocked: no UDP between the two homes' wan addresses, in either direction.
# Inserted first, so that router 1's counters above see only what got through.
block() {
    local router="$1" other="$2"
    in_ns "$router" iptables -I FORWARD 1 -p udp -s "$other" -m comment --comment nat-drop -j DROP
    in_ns "$router" iptables -I FORWARD 1 -p udp -d "$other" -m comment --comment nat-drop -j DROP
}
block "$ns_r1" 203.0.113.12
block "$ns_r2" 203.0.113.11
# The block holds: one UDP datagram from home 1 to home 2's wan address dies at router 1.
read -r _ before < <(counted nat-drop)
in_ns "$ns_h1" bash -c 'echo probe > /dev/udp/203.0.113.12/9' || true
read -r _ after < <(counted nat-drop)
[[ $after -gt $before ]] || die "router 1 did not drop UDP to home 2"
run_case blocked "$ns_h2"

printf '%s\n' "${report[@]}"
exit "$failed"
