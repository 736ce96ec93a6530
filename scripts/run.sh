#!/usr/bin/env bash
# `make run`: the whole system on this machine. Ctrl-C stops everything this script started.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mkdir -p .data
lock=.data/run.pid
if [ -f "$lock" ] && kill -0 "$(cat "$lock")" 2>/dev/null; then
  echo "make run is already running (pid $(cat "$lock")); stop it first (Ctrl-C in its terminal)." >&2
  exit 1
fi
echo $$ > "$lock"

set -a; . ./.env; set +a
bin_dir="${CARGO_TARGET_DIR:-target}/debug"
echo "[run] building api, worker and ml-standin"
cargo build --bins -q

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo "[run] stopping"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  # Services the set-up had to start for this run are stopped too; ones found running are left alone.
  if [ -f .data/redis-started-by-run ]; then
    redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1 || true
    rm -f .data/redis-started-by-run
  fi
  if [ -f .data/postgres-started-by-run ]; then
    for c in /etc/postgresql/*/main; do
      pg_ctlcluster --skip-systemctl-redirect "$(basename "$(dirname "$c")")" main stop >/dev/null 2>&1 || true
    done
    rm -f .data/postgres-started-by-run
  fi
  rm -f "$lock"
}
trap cleanup INT TERM EXIT

start() { # name command...
  local name="$1"; shift
  ( exec "$@" ) > >(sed -u "s/^/[$name] /") 2>&1 &
  pids+=($!)
}

start temporal temporal/start-dev.sh
for _ in $(seq 1 100); do
  .venv/bin/temporal operator namespace describe default --address 127.0.0.1:7233 >/dev/null 2>&1 && break
  sleep 0.2
done
start ml-standin "$bin_dir/ml-standin" --listen 127.0.0.1:8000 --api-key "$SERVER_API_KEY" --redis-url "$REDIS_URL"
start worker "$bin_dir/worker"
start api "$bin_dir/api"
echo "[run] api http://127.0.0.1:${PORT:-3000}  Temporal UI http://127.0.0.1:8233  ML stand-in http://127.0.0.1:8000"
echo "[run] Ctrl-C stops everything"
wait -n "${pids[@]}" || true
echo "[run] a process exited; stopping the rest"
