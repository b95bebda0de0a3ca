#!/usr/bin/env bash
# Runs the test suite against a real Redis.
# REDIS_URL (default redis://127.0.0.1:6379/15) is used when it answers; otherwise a
# private redis-server from PATH is started on a free port for this run and stopped after.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
  echo "error: $PY not found; run 'make setup' first." >&2
  exit 2
fi
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/15}

redis_answers() {
  "$PY" - "$1" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
}

private_dir=""
cleanup() {
  if [ -n "$private_dir" ]; then
    redis-cli -p "$private_port" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$private_dir"
  fi
}
trap cleanup EXIT

if ! redis_answers "$REDIS_URL"; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "error: no Redis answers at $REDIS_URL and redis-server is not on PATH." >&2
    echo "Install one (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)" >&2
    echo "or point REDIS_URL at a running Redis. The Redis tests are not skipped." >&2
    exit 2
  fi
  private_dir=$(mktemp -d)
  private_port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  redis-server --port "$private_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$private_dir" --daemonize yes --logfile "$private_dir/redis.log"
  export REDIS_URL="redis://127.0.0.1:$private_port/15"
  for _ in $(seq 50); do redis_answers "$REDIS_URL" && break; sleep 0.1; done
  echo "Started a private redis-server at $REDIS_URL for this run."
fi

exec "$VENV/bin/pytest" "$@"
