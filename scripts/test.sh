#!/usr/bin/env bash
# `make test`: formatting, lints, then every test (unit and integration) against real Postgres,
# Redis, Temporal dev servers started by the tests, and the ML stand-in.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mkdir -p .data
# Databases and files left by earlier test runs.
psql -h 127.0.0.1 -U postgres -d postgres -tAc \
  "SELECT 'DROP DATABASE \"' || datname || '\";' FROM pg_database WHERE datname LIKE 'drishtiksha\_test\_%'" \
  | psql -h 127.0.0.1 -U postgres -d postgres -q >/dev/null 2>&1 || true
rm -rf "${TMPDIR:-/tmp}"/drishtiksha-*-test-* 2>/dev/null || true
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy (-D warnings)"
cargo clippy --workspace --all-targets -q -- -D warnings
echo "== docker-compose.yml (schema, consistency)" && scripts/check-compose.sh >/dev/null
echo "== unused dependencies (cargo machete)"
cargo machete
echo "== cargo test"
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee .data/test.log
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' .data/test.log
exit "$status"
