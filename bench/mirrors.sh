#!/usr/bin/env bash
# Throttled HTTP mirrors on loopback for the download benchmarks (bench/download.sh).
#
#   bench/mirrors.sh start ROOT_DIR RATE [RATE ...]   one nginx server per RATE (nginx size syntax:
#                                                      25m = 25 MiB/s, 0 = unlimited), each serving
#                                                      ROOT_DIR to one connection at a time; prints
#                                                      one base URL a line
#   bench/mirrors.sh stop                              stops them and waits until nginx has exited
#
# This is a thin wrapper. When the shared anchor script (../shared/bench/mirrors.sh beside the
# repository) exists, it is used, so that our figures come from the same setup as the anchors;
# otherwise (or with MIRRORS_OWN=1) a small generator below writes an equivalent nginx config.
# Either way the access log, $MIRRORS_STATE/access.log, has one `PORT STATUS BYTES_SENT` line per
# response. Unlike the shared script's fixed default, the first port is a free one picked here
# (MIRRORS_PORT + 1, ... are used; set MIRRORS_PORT yourself to choose).
# With MIRRORS_TLS_CERT and MIRRORS_TLS_KEY (PEM files, the certificate naming localhost), the
# mirrors serve https (always through the generator below, as the shared script has no TLS) and
# the printed URLs are https://localhost:PORT. MIRRORS_CONNS=N (again through the generator)
# allows N connections at once per mirror instead of one (0: no limit); a rate of 0 is no cap.
# The generator's access log adds each response's connection serial as a fourth field.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
shared="$here/../../shared/bench/mirrors.sh"
state=${MIRRORS_STATE:-/tmp/shoal-mirrors}
export MIRRORS_STATE=$state

# True when something accepts connections on 127.0.0.1:$1.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints a base port B such that B+1 .. B+$1 are all free.
free_base() {
  local count=$1 tries base i ok
  for tries in $(seq 1 50); do
    base=$((20000 + RANDOM % 30000))
    ok=1
    for i in $(seq 1 "$count"); do
      if port_busy $((base + i)); then ok=0; break; fi
    done
    if [ "$ok" = 1 ]; then echo "$base"; return 0; fi
  done
  echo "mirrors.sh: found no $count free ports in a row" >&2
  return 1
}

# Waits (at most 10 s) for the nginx master whose pid file we saw to exit.
wait_gone() {
  local pid=$1 i
  [ -n "$pid" ] || return 0
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "mirrors.sh: nginx $pid did not exit within 10 s" >&2
}

# Our own generator: one server block per rate, everything (pid, logs, temp files) under $state.
own_config() {
  local root=$1 base=$2; shift 2
  local port=$base rate
  # As root, nginx's workers would run as nobody, who may not read the served directory.
  local user=""; [ "$(id -u)" = 0 ] && user="user root;"
  cat <<EOF
$user
worker_processes 1;
daemon on;
pid $state/nginx.pid;
error_log $state/error.log warn;
events { worker_connections 1024; }
http {
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path $state/tmp/body;
  proxy_temp_path $state/tmp/proxy;
  fastcgi_temp_path $state/tmp/fastcgi;
  uwsgi_temp_path $state/tmp/uwsgi;
  scgi_temp_path $state/tmp/scgi;
  log_format port_status_bytes '\$server_port \$status \$bytes_sent \$connection';
  access_log $state/access.log port_status_bytes;
  # MIRRORS_CONNS connections per server (the key is the port): one more at once gets 503.
  limit_conn_zone \$server_port zone=per_port:1m;
EOF
  local ssl=""
  if [ -n "${MIRRORS_TLS_CERT:-}" ]; then
    ssl=" ssl"
    printf '  ssl_certificate %s;\n  ssl_certificate_key %s;\n' "$MIRRORS_TLS_CERT" "$MIRRORS_TLS_KEY"
  fi
  local conns=${MIRRORS_CONNS:-1} limit=""
  [ "$conns" = 0 ] || limit=" limit_conn per_port $conns;"
  for rate in "$@"; do
    port=$((port + 1))
    printf '  server { listen 127.0.0.1:%s%s; root %s; limit_rate %s;%s }\n' "$port" "$ssl" "$root" "$rate" "$limit"
  done
  echo "}"
}

own_start() {
  local root=$1; shift
  local base i
  base=${MIRRORS_PORT:-$(free_base $#)}
  mkdir -p "$state/tmp"
  own_config "$root" "$base" "$@" > "$state/nginx.conf"
  nginx -p "$state" -e "$state/error.log" -c "$state/nginx.conf"
  : > "$state/urls"
  for i in $(seq 1 $#); do
    if [ -n "${MIRRORS_TLS_CERT:-}" ]; then
      echo "https://localhost:$((base + i))" >> "$state/urls"
    else
      echo "http://127.0.0.1:$((base + i))" >> "$state/urls"
    fi
  done
  cat "$state/urls"
}

own_stop() {
  [ -f "$state/nginx.conf" ] && nginx -p "$state" -e "$state/error.log" -c "$state/nginx.conf" -s stop 2>/dev/null || true
  rm -f "$state/urls"
}

use_shared() { [ "${MIRRORS_OWN:-0}" != 1 ] && [ -z "${MIRRORS_TLS_CERT:-}" ] && [ "${MIRRORS_CONNS:-1}" = 1 ] && [ -x "$shared" ]; }

cmd=${1:-}
case "$cmd" in
start)
  [ $# -ge 3 ] || { sed -n '4,9p' "$0" >&2; exit 2; }
  command -v nginx >/dev/null || { echo "mirrors.sh: nginx is not installed (apt-get install nginx-light)" >&2; exit 1; }
  root=$(cd "$2" && pwd); shift 2
  mkdir -p "$state"
  # Stop a previous instance first and wait for it, so that its exit cannot remove the new pid file.
  old=$(cat "$state/nginx.pid" 2>/dev/null || true)
  "$0" stop
  wait_gone "$old"
  if use_shared; then
    MIRRORS_PORT=${MIRRORS_PORT:-$(free_base $#)} "$shared" start "$root" "$@"
  else
    own_start "$root" "$@"
  fi
  ;;
stop)
  old=$(cat "$state/nginx.pid" 2>/dev/null || true)
  if use_shared; then "$shared" stop; else own_stop; fi
  wait_gone "$old"
  ;;
*) sed -n '4,9p' "$0" >&2; exit 2 ;;
esac
