#!/usr/bin/env bash
# `make bench`: builds release binaries and prints the performance figures as one table.
# Figures, never pass/fail. Uses the machine's Postgres and Redis and private ports.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mkdir -p .data
target="${CARGO_TARGET_DIR:-target}"
echo "== building release binaries and benchmarks" >&2
cargo build --release -q --bins --examples
bin="$target/release"
rows=()
row() { rows+=("| $1 | $2 | $3 |"); }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
rss_mb() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- accounts: GET /api/v1/auth/profile under load ---------------------------------------------
db=drishtiksha_bench
psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
port=$(free_port)
export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db" REDIS_URL=redis://127.0.0.1:6379 \
  JWT_SECRET="bench-secret-0123456789abcdef0123456789" SERVER_URL=http://127.0.0.1:9 SERVER_API_KEY=bench \
  PORT=$port API_RATE_LIMIT_MAX=1000000000 LOCAL_STORAGE_PATH="$root/.data/bench-media" RUST_LOG=warn \
  TEMPORAL_ADDRESS=127.0.0.1:$(free_port)
"$bin/api" > .data/bench-api.log 2>&1 &
api_pid=$!; pids+=($api_pid)
for _ in $(seq 1 100); do curl -fs "127.0.0.1:$port/api/health" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
idle_rss=$(rss_mb $api_pid)
email="bench-$RANDOM$RANDOM@example.com"
curl -fs "127.0.0.1:$port/api/v1/auth/signup" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"bench-password\",\"firstName\":\"B\",\"lastName\":\"B\"}" >/dev/null
token=$(curl -fs "127.0.0.1:$port/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"bench-password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')
wrk_out=$(wrk -t2 -c32 -d10s --latency -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/auth/profile")
load_rss=$(rss_mb $api_pid)
rps=$(awk '/^Requests\/sec/ { printf "%.0f", $2 }' <<<"$wrk_out")
p50=$(awk '$1 == "50%" { print $2 }' <<<"$wrk_out")
p99=$(awk '$1 == "99%" { print $2 }' <<<"$wrk_out")
non2xx=$(awk '/Non-2xx/ { print $NF }' <<<"$wrk_out")
row "GET /auth/profile throughput (wrk -t2 -c32 -d10s, valid token)" "$rps req/s${non2xx:+ ($non2xx non-2xx)}" "≥ 8,000 req/s"
row "GET /auth/profile latency p50 / p99" "$p50 / $p99" "p99 < 15 ms"
row "api RSS idle (after start-up) / after signup, login and the load" "$idle_rss MB / $load_rss MB" "idle < 30 MB"
kill $api_pid; wait $api_pid 2>/dev/null || true

# --- Socket.IO fan-out: 2,000 WebSocket clients, one event per second per user for 60 s ----------
sockets=${BENCH_SOCKETS:-2000}
seconds=${BENCH_SOCKET_SECONDS:-60}
"$bin/api" > .data/bench-api-sockets.log 2>&1 &
api_pid=$!; pids+=($api_pid)
for _ in $(seq 1 100); do curl -fs "127.0.0.1:$port/api/health" >/dev/null 2>&1 && break; sleep 0.1; done
psql -h 127.0.0.1 -U postgres -d "$db" -qAtc "INSERT INTO users (id, email, first_name, last_name, password_hash)
  SELECT gen_random_uuid(), 'sock' || g || '@bench.local', 'B', 'B', 'x' FROM generate_series(1, $sockets) g RETURNING id" \
  > .data/bench-users.txt
ticks_before=$(awk '{ print $14 + $15 }' "/proc/$api_pid/stat")
started=$(date +%s.%N)
peak=0
( while kill -0 $api_pid 2>/dev/null; do r=$(awk '/^VmRSS/ { print $2 }' "/proc/$api_pid/status"); echo "$r"; sleep 1; done ) > .data/bench-rss.txt &
sampler=$!
sock_out=$(node api/tests/js/bench_sockets.mjs "http://127.0.0.1:$port" "$REDIS_URL" media-progress-events "$JWT_SECRET" .data/bench-users.txt "$seconds")
ended=$(date +%s.%N)
ticks_after=$(awk '{ print $14 + $15 }' "/proc/$api_pid/stat")
kill $sampler 2>/dev/null || true
peak=$(sort -n .data/bench-rss.txt | tail -1)
cpu=$(awk -v a="$ticks_before" -v b="$ticks_after" -v s="$started" -v e="$ended" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.0f", (b - a) / hz / (e - s) * 100 }')
read -r conns delivered expected sp50 sp99 <<<"$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["connections"], d["delivered"], d["expected"], d["p50"], d["p99"])' "$sock_out")"
row "Socket.IO: $sockets WebSocket clients, 1 event/s/user, ${seconds}s — delivered" "$delivered / $expected ($conns connected)" "all delivered"
row "Socket.IO fan-out delivery latency p50 / p99 (publish → client)" "$sp50 ms / $sp99 ms" "p99 < 100 ms"
row "api RSS peak / CPU during the fan-out" "$(awk -v k="$peak" 'BEGIN { printf "%.1f", k / 1024 }') MB / ${cpu}% of one core" "RSS < 200 MB"
kill $api_pid; wait $api_pid 2>/dev/null || true

# --- uploads while Redis is away: events are dropped, never waited for -------------------------------
rport=$(free_port); tport=$(free_port); uport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no > .data/bench-redis.log 2>&1 &
redis_pid=$!; pids+=($redis_pid)
rm -f .data/bench-temporal.db*
TEMPORAL_PORT=$tport TEMPORAL_UI_PORT=$(free_port) TEMPORAL_DB_FILE="$root/.data/bench-temporal.db" \
  temporal/start-dev.sh > .data/bench-temporal.log 2>&1 &
pids+=($!)
REDIS_URL="redis://127.0.0.1:$rport" TEMPORAL_ADDRESS="127.0.0.1:$tport" PORT=$uport \
  TEMPORAL_TASK_QUEUE="bench-redis-$RANDOM" "$bin/api" > .data/bench-api-redis.log 2>&1 &
api_pid=$!; pids+=($api_pid)
for _ in $(seq 1 200); do curl -fs "127.0.0.1:$uport/api/health" >/dev/null 2>&1 && break; sleep 0.1; done
email="bench-redis-$RANDOM$RANDOM@example.com"
utoken=$(curl -fs "127.0.0.1:$uport/api/v1/auth/signup" -H 'content-type: application/json' \
  -d "{\"email\":\"$email\",\"password\":\"bench-password\",\"firstName\":\"B\",\"lastName\":\"B\"}" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["token"])')
ffmpeg -v error -y -f lavfi -i testsrc=size=64x48 -frames:v 1 .data/bench-upload.png
upload_p50() { # prints the p50 of 30 sequential uploads, in ms, and how many were not 202
  local out
  out=$(for _ in $(seq 1 30); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "127.0.0.1:$uport/api/v1/media" \
      -H "Authorization: Bearer $utoken" -F "media=@.data/bench-upload.png;type=image/png"
  done)
  local bad; bad=$(awk '$1 != 202' <<<"$out" | wc -l)
  awk '{ printf "%.1f\n", $2 * 1000 }' <<<"$out" | sort -n | awk -v bad="$bad" \
    '{ t[NR] = $1 } END { printf "%s ms%s", t[int((NR + 1) / 2)], (bad > 0 ? " (" bad " not 202)" : "") }'
}
up_p50=$(upload_p50)
kill "$redis_pid"; wait "$redis_pid" 2>/dev/null || true
down_p50=$(upload_p50)
row "upload → 202 p50, Redis up / Redis down (30 sequential uploads each)" "$up_p50 / $down_p50" "unchanged"
kill $api_pid; wait $api_pid 2>/dev/null || true

# --- further benchmarks shipped as examples -----------------------------------------------------
for ex in "$bin"/examples/bench_*; do
  [ -x "$ex" ] || continue
  case "$ex" in *-*) continue ;; esac
  echo "== $(basename "$ex")" >&2
  while IFS= read -r line; do
    [[ "$line" == "|"* && "$line" != "|---"* && "$line" != "| name |"* ]] && rows+=("$line")
  done < <(cd "$root/api" && STANDIN_BIN="$bin/ml-standin" API_BIN="$bin/api" WORKER_BIN="$bin/worker" "$ex" 2>>"$root/.data/bench-examples.log" || true)
done

# --- What an operator sees for a finished run ---------------------------------------------------
operator_view=$(cargo test -q -p drishtiksha-worker --test operations list_describe -- --nocapture 2>/dev/null \
  | sed -n '/^\$ temporal/,/^test result/p' | grep -v '^test result' || true)

echo
echo "Drishtiksha benchmarks ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "| measurement | figure | target |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "Operator view (temporal workflow describe / query --type progress of a finished run):"
echo "$operator_view"
