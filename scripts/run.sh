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

# The stand-in reads its settings (STANDIN_*) from the environment too: export all of .env.
set -a; . ./.env; set +a
bin_dir="${CARGO_TARGET_DIR:-target}/debug"
if [ -x "$bin_dir/api" ] && [ -x "$bin_dir/worker" ]; then
  echo "[run] building api, worker, ml-standin and the drishtiksha command line (seconds when little changed)"
else
  echo "[run] first build of api, worker, ml-standin and the drishtiksha command line:"
  echo "[run] about 10 minutes on 2 cores (a few minutes more while crates download); later runs take seconds"
fi
# Cargo's own progress (crate by crate), not a silent wait.
cargo build --bins

# The command line, where a shell finds it.
cli="$bin_dir/drishtiksha"
case ":$PATH:" in
  *":$HOME/.local/bin:"*) ln -sf "$(cd "$(dirname "$cli")" && pwd)/drishtiksha" "$HOME/.local/bin/drishtiksha"
                          cli_hint="drishtiksha" ;;
  *) cli_hint="$cli" ;;
esac

# Each process runs in a session of its own, so Ctrl-C in this terminal reaches only this script,
# which then stops them in order: api and worker first (they finish in-flight work while Temporal,
# Redis and the ML server are still up), then the ML stand-in, then Temporal.
say() { echo "$@" 2>/dev/null || true; }
declare -A pid_of=()
pids=()
stop() { # seconds names...: SIGTERM, then up to that long to exit, then SIGKILL
  local within=$1 name p t0=$SECONDS; shift
  for name in "$@"; do
    p="${pid_of[$name]:-}"; [ -n "$p" ] && kill -TERM "$p" 2>/dev/null || true
  done
  for name in "$@"; do
    p="${pid_of[$name]:-}"; [ -n "$p" ] || continue
    while kill -0 "$p" 2>/dev/null && [ $((SECONDS - t0)) -lt "$within" ]; do sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then say "[run] $name did not stop within $within s; killing it"; kill -KILL "$p" 2>/dev/null || true; fi
    wait "$p" 2>/dev/null || true
  done
  say "[run] stopped $* ($((SECONDS - t0)) s)"
}
cleanup() { # exit status
  trap - TERM HUP EXIT
  # A second Ctrl-C must not cut the orderly stop short, nor a closed output pipe (`| tee`).
  trap '' INT PIPE
  say "[run] stopping api and worker (letting them drain), then the ML stand-in and Temporal"
  # The worker lets in-flight model calls finish (WORKER_SHUTDOWN_GRACE, 60 s by default).
  stop 75 api worker
  stop 30 ml-standin
  stop 30 temporal
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
  exit "${1:-0}"
}
trap 'cleanup 130' INT
trap 'cleanup 143' TERM HUP
trap 'cleanup $?' EXIT

start() { # name command...
  local name="$1"; shift
  # The log prefixer ignores Ctrl-C too, so the processes can still log while they drain.
  setsid "$@" > >(trap '' INT; exec sed -u "s/^/[$name] /") 2>&1 &
  pid_of[$name]=$!
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
echo "[run] try it: $cli_hint signup, then $cli_hint analyze clip.mp4 (in another terminal)"
echo "[run] Ctrl-C stops everything"
wait -n "${pids[@]}" || true
echo "[run] a process exited; stopping the rest"
exit 1
