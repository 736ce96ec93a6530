#!/usr/bin/env bash
# Runs the Temporal dev server for the embedded set-up: SQLite file under .data/ (runs survive a
# restart), Web UI on :8233, namespace `default`, the search attributes of the analysis workflow,
# and task-queue priority and fairness (dev-dynamic-config.txt).
# Environment: TEMPORAL_BIN, TEMPORAL_PORT (7233), TEMPORAL_UI_PORT (8233), TEMPORAL_DB_FILE.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
bin="${TEMPORAL_BIN:-$root/.venv/bin/temporal}"
port="${TEMPORAL_PORT:-7233}"
ui_port="${TEMPORAL_UI_PORT:-8233}"
db_file="${TEMPORAL_DB_FILE:-$root/.data/temporal/temporal.db}"
mkdir -p "$(dirname "$db_file")"

args=(server start-dev
  --ip 127.0.0.1 --port "$port" --ui-port "$ui_port"
  --namespace default
  --db-filename "$db_file"
  # WAL + synchronous=normal: durable across process crashes and about twice the throughput of
  # the defaults on a small machine (the last transactions can be lost on power loss).
  --sqlite-pragma journal_mode=wal --sqlite-pragma synchronous=normal
  --log-level warn)
while read -r name type; do
  [ -n "$name" ] && args+=(--search-attribute "$name=$type")
done < <(grep -v '^#' "$here/search-attributes.txt")
while read -r kv; do
  [ -n "$kv" ] && args+=(--dynamic-config-value "$kv")
done < <(grep -v '^#' "$here/dev-dynamic-config.txt")
exec "$bin" "${args[@]}"
