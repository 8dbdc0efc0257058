#!/usr/bin/env bash
# The web UI's figures (issue 11): page weight, time to first list, memory during a 1 GiB
# download with the page open, update rate, idle CPU. Builds shoal (release) unless --no-build.
#   bash bench/ui.sh [--no-build] [--size-mib N] [--idle-seconds S]
set -euo pipefail
# Nothing leaves this machine: no public relays, look-ups, port mapping or mDNS.
export SHOAL_LOCAL_ONLY=1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "${1:-}" = --no-build ]; then shift; else cargo build --release -p shoal --manifest-path "$root/Cargo.toml" >&2; fi
exec /usr/bin/python3 "$root/bench/ui.py" "${SHOAL_BIN:-$root/target/release/shoal}" "$@"
