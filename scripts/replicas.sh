#!/usr/bin/env bash
# Local multi-replica run, without Docker: N `zerosearch serve` processes on ports P..P+N-1 sharing one
# Redis, and nginx in front of them (retries on the next replica when one fails), all as plain processes.
#
#   scripts/replicas.sh start [options] [-- extra `zerosearch serve` options]   start, print the URLs, return
#   scripts/replicas.sh run   [options] [-- ...]   start, then stay in the foreground; Ctrl-C stops everything
#   scripts/replicas.sh stop   [--state-dir DIR]   stop what `start` started (SIGTERM, then SIGKILL after 15 s)
#   scripts/replicas.sh status [--state-dir DIR]   list the processes and whether they answer
#   scripts/replicas.sh render [options]           only write STATE_DIR/nginx.conf (and check it with nginx -t)
#
# Options (environment variable in brackets):
#   -n, --replicas N      number of replicas [ZS_REPLICAS, default 2]
#   -p, --port P          port of the first replica [ZS_BASE_PORT, default 8001]
#   -l, --lb-port P       port of the load balancer [ZS_LB_PORT, default 8080]
#       --host H          interface to bind, replicas and nginx [ZS_BIND_HOST, default 127.0.0.1]
#       --redis-url URL   the Redis every replica shares [ZS_REDIS_URL, default redis://127.0.0.1:6379/0]
#       --backend B       transformers | vllm | openai | scripted [ZS_BACKEND, default: the server's]
#       --model M         model id or path [ZS_MODEL, default: the server's]
#       --state-dir DIR   pid files, logs and the rendered nginx.conf
#                         [ZS_REPLICAS_DIR, default ${TMPDIR:-/tmp}/zerosearch-replicas]
#       --wait S          seconds to wait for every replica to be ready [ZS_REPLICAS_WAIT, default 300]
# Tools: `zerosearch` from $VENV (default .venv) or PATH; `nginx` from PATH or /usr/sbin ($NGINX overrides;
# Debian/Ubuntu: apt-get install nginx). The state directory also gets urls.env (ZS_LB_URL, ZS_REPLICA_URLS)
# for scripts, and replica-I.pid / replica-I.log / nginx.pid / nginx-error.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEMPLATE="$ROOT/deploy/nginx/nginx.local.conf.template"

die() { echo "replicas.sh: $*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

# ---- options ---------------------------------------------------------------------------------------
cmd=${1:-}
[ -n "$cmd" ] || { usage; exit 2; }
shift
case "$cmd" in start|run|stop|status|render) ;; -h|--help|help) usage; exit 0 ;; *) usage >&2; exit 2 ;; esac

replicas=${ZS_REPLICAS:-2}
base_port=${ZS_BASE_PORT:-8001}
lb_port=${ZS_LB_PORT:-8080}
host=${ZS_BIND_HOST:-127.0.0.1}
redis_url=${ZS_REDIS_URL:-redis://127.0.0.1:6379/0}
backend=${ZS_BACKEND:-}
model=${ZS_MODEL:-}
state_dir=${ZS_REPLICAS_DIR:-${TMPDIR:-/tmp}/zerosearch-replicas}
wait_s=${ZS_REPLICAS_WAIT:-300}
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n|--replicas) replicas=${2:?}; shift 2 ;;
    -p|--port) base_port=${2:?}; shift 2 ;;
    -l|--lb-port) lb_port=${2:?}; shift 2 ;;
    --host) host=${2:?}; shift 2 ;;
    --redis-url) redis_url=${2:?}; shift 2 ;;
    --backend) backend=${2:?}; shift 2 ;;
    --model) model=${2:?}; shift 2 ;;
    --state-dir) state_dir=${2:?}; shift 2 ;;
    --wait) wait_s=${2:?}; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done
for n in "$replicas" "$base_port" "$lb_port" "$wait_s"; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "'$n' is not a whole number"
done
[ "$replicas" -ge 1 ] || die "--replicas must be at least 1"

# ---- helpers ---------------------------------------------------------------------------------------
find_zerosearch() {
  local venv=${VENV:-$ROOT/.venv}
  if [ -x "$venv/bin/zerosearch" ]; then echo "$venv/bin/zerosearch"
  elif command -v zerosearch >/dev/null 2>&1; then command -v zerosearch
  else die "no 'zerosearch' command: run 'make setup' (or activate the environment that has it)"; fi
}

find_python() {
  local zs_dir; zs_dir=$(dirname "$1")
  if [ -x "$zs_dir/python" ]; then echo "$zs_dir/python"; else command -v python3; fi
}

find_nginx() {
  if [ -n "${NGINX:-}" ]; then echo "$NGINX"
  elif command -v nginx >/dev/null 2>&1; then command -v nginx
  elif [ -x /usr/sbin/nginx ]; then echo /usr/sbin/nginx
  else die "nginx is not installed (Debian/Ubuntu: apt-get install -y nginx; macOS: brew install nginx), or set NGINX=/path/to/nginx"; fi
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

pid_of() { if [ -f "$1" ]; then cat "$1"; fi; }

# GET url -> 0 when it answers 200 (1 s timeout).
http_ok() {
  "$PY" - "$1" <<'PY' >/dev/null 2>&1
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=1) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

port_free() {
  "$PY" - "$host" "$1" <<'PY' >/dev/null 2>&1
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
PY
}

redis_answers() {
  "$PY" - "$1" <<'PY' >/dev/null 2>&1
import sys, redis
redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2).ping()
PY
}

# Stop one process: SIGTERM (SIGQUIT for nginx: graceful), then SIGKILL after $2 seconds.
stop_pid() {
  local pid=$1 grace=$2 sig=${3:-TERM}
  alive "$pid" || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < grace * 10; i++)); do alive "$pid" || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

stop_all() {
  [ -d "$state_dir" ] || { echo "nothing to stop ($state_dir does not exist)"; return 0; }
  local f pid stopped=0
  pid=$(pid_of "$state_dir/nginx.master.pid")
  if alive "$pid"; then stop_pid "$pid" 10 QUIT; stopped=$((stopped + 1)); fi
  for f in "$state_dir"/replica-*.pid; do
    [ -e "$f" ] || continue
    pid=$(pid_of "$f")
    if alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; stopped=$((stopped + 1)); fi
  done
  for f in "$state_dir"/replica-*.pid; do
    [ -e "$f" ] || continue
    stop_pid "$(pid_of "$f")" 15
    rm -f "$f"
  done
  rm -f "$state_dir/nginx.master.pid" "$state_dir/urls.env"
  echo "stopped $stopped process(es) of $state_dir"
}

status_all() {
  [ -d "$state_dir" ] || { echo "not running ($state_dir does not exist)"; return 1; }
  local f pid port url running=0
  for f in "$state_dir"/replica-*.pid; do
    [ -e "$f" ] || continue
    pid=$(pid_of "$f"); port=$(cat "${f%.pid}.port" 2>/dev/null || echo "?")
    url="http://$(cat "$state_dir/host" 2>/dev/null || echo 127.0.0.1):$port"
    if alive "$pid"; then
      running=$((running + 1))
      if http_ok "$url/readyz"; then echo "replica $url  pid $pid  ready"; else echo "replica $url  pid $pid  not ready"; fi
    else
      echo "replica $url  pid $pid  dead"
    fi
  done
  pid=$(pid_of "$state_dir/nginx.master.pid")
  if alive "$pid"; then echo "nginx   pid $pid  running"; running=$((running + 1)); else echo "nginx   not running"; fi
  [ "$running" -gt 0 ]
}

render_nginx_conf() {
  local servers="" i user_directive=""
  for ((i = 0; i < replicas; i++)); do
    servers+="        server $host:$((base_port + i)) max_fails=1 fail_timeout=5s;"$'\n'
  done
  servers=${servers%$'\n'}
  # As root, nginx would switch its workers to 'nobody', who cannot enter the state directory.
  if [ "$(id -u)" = 0 ]; then user_directive="user $(id -un) $(id -gn);"; fi
  [ -f "$TEMPLATE" ] || die "missing $TEMPLATE"
  local conf; conf=$(cat "$TEMPLATE")
  conf=${conf//@USER_DIRECTIVE@/$user_directive}
  conf=${conf//@STATE_DIR@/$state_dir}
  conf=${conf//@LB_HOST@/$host}
  conf=${conf//@LB_PORT@/$lb_port}
  conf=${conf//@UPSTREAM_SERVERS@/$servers}
  printf '%s\n' "$conf" >"$state_dir/nginx.conf"
  mkdir -p "$state_dir/nginx-tmp"
}

stop_on_failure() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then stop_all >/dev/null 2>&1 || true; fi
}

start_all() {
  ZS=$(find_zerosearch)
  PY=$(find_python "$ZS")
  NGINX_BIN=$(find_nginx)
  mkdir -p "$state_dir"
  state_dir=$(cd "$state_dir" && pwd)
  local f
  for f in "$state_dir"/replica-*.pid "$state_dir/nginx.master.pid"; do
    [ -e "$f" ] || continue
    if alive "$(pid_of "$f")"; then
      die "already running from $state_dir (pid $(pid_of "$f")): 'scripts/replicas.sh stop --state-dir $state_dir' first"
    fi
  done
  rm -f "$state_dir"/replica-*.pid "$state_dir"/replica-*.port "$state_dir"/replica-*.log "$state_dir/urls.env"

  redis_answers "$redis_url" || die "no Redis answers at $redis_url: the replicas share their cache and curriculum \
there. Start one (Debian/Ubuntu: apt-get install redis-server) or pass --redis-url."
  local i port
  for ((i = 0; i < replicas; i++)); do
    port=$((base_port + i))
    port_free "$port" || die "port $host:$port is taken (choose another --port)"
  done
  port_free "$lb_port" || die "port $host:$lb_port is taken (choose another --lb-port)"

  render_nginx_conf
  if ! "$NGINX_BIN" -t -q -p "$state_dir" -c "$state_dir/nginx.conf" -e "$state_dir/nginx-error.log" 2>"$state_dir/nginx-test.log"; then
    cat "$state_dir/nginx-test.log" >&2
    die "nginx rejected $state_dir/nginx.conf"
  fi
  echo "$host" >"$state_dir/host"

  # From here on, a failure stops what was started.
  trap stop_on_failure EXIT

  local args=(serve --host "$host" --redis-url "$redis_url")
  [ -n "$backend" ] && args+=(--backend "$backend")
  [ -n "$model" ] && args+=(--model "$model")
  for ((i = 0; i < replicas; i++)); do
    port=$((base_port + i))
    # setsid: own session, so that closing the terminal that ran `start` leaves them running.
    setsid "$ZS" "${args[@]}" --port "$port" "${extra[@]}" >"$state_dir/replica-$i.log" 2>&1 </dev/null &
    echo $! >"$state_dir/replica-$i.pid"
    echo "$port" >"$state_dir/replica-$i.port"
  done
  # nginx in the foreground of its own process (daemon off), so its pid is the master's.
  setsid "$NGINX_BIN" -p "$state_dir" -c "$state_dir/nginx.conf" -e "$state_dir/nginx-error.log" \
    >"$state_dir/nginx.log" 2>&1 </dev/null &
  echo $! >"$state_dir/nginx.master.pid"

  local deadline=$((SECONDS + wait_s)) pending pid
  while :; do
    pending=0
    for ((i = 0; i < replicas; i++)); do
      pid=$(pid_of "$state_dir/replica-$i.pid")
      if ! alive "$pid"; then
        echo "replica $i (port $((base_port + i))) exited during start-up; its log:" >&2
        tail -n 30 "$state_dir/replica-$i.log" >&2 || true
        exit 1
      fi
      http_ok "http://$host:$((base_port + i))/readyz" || pending=$((pending + 1))
    done
    alive "$(pid_of "$state_dir/nginx.master.pid")" || { cat "$state_dir/nginx-error.log" >&2 || true; die "nginx exited"; }
    http_ok "http://$host:$lb_port/lb-health" || pending=$((pending + 1))
    [ "$pending" -eq 0 ] && break
    [ $SECONDS -lt $deadline ] || die "not ready after ${wait_s}s (logs in $state_dir); stopping"
    sleep 0.2
  done
  trap - EXIT

  local urls=() lb="http://$host:$lb_port"
  for ((i = 0; i < replicas; i++)); do urls+=("http://$host:$((base_port + i))"); done
  local joined; joined=$(IFS=,; echo "${urls[*]}")
  printf 'ZS_LB_URL=%s\nZS_REPLICA_URLS=%s\nZS_REPLICAS_DIR=%s\n' "$lb" "$joined" "$state_dir" >"$state_dir/urls.env"

  echo "ZeroSearch: $replicas replica(s) sharing $redis_url, behind nginx"
  echo "  load balancer  $lb"
  for ((i = 0; i < replicas; i++)); do
    echo "  replica $i      ${urls[$i]}   pid $(pid_of "$state_dir/replica-$i.pid")   log $state_dir/replica-$i.log"
  done
  echo "  client URLs    $joined   (SearchClient fails over across them itself)"
  echo "  metrics        ${urls[0]}/metrics (one per replica)"
  echo "  try            zerosearch search 'who wrote hamlet' --url $lb"
  echo "  stop           $0 stop --state-dir $state_dir"
}

case "$cmd" in
  start) start_all ;;
  run)
    start_all
    trap 'echo; stop_all; exit 0' INT TERM
    echo "(running in the foreground; Ctrl-C stops everything)"
    while :; do
      sleep 2
      for f in "$state_dir"/replica-*.pid "$state_dir/nginx.master.pid"; do
        [ -e "$f" ] && ! alive "$(pid_of "$f")" && echo "warning: $(basename "${f%.pid}") has exited" >&2 && rm -f "$f"
      done
    done
    ;;
  render)
    NGINX_BIN=$(find_nginx)
    mkdir -p "$state_dir"; state_dir=$(cd "$state_dir" && pwd)
    render_nginx_conf
    "$NGINX_BIN" -t -p "$state_dir" -c "$state_dir/nginx.conf" -e "$state_dir/nginx-error.log"
    echo "$state_dir/nginx.conf"
    ;;
  stop) stop_all ;;
  status) PY=$(find_python "$(find_zerosearch)"); status_all ;;
esac
