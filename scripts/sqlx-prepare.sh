#!/usr/bin/env bash
# Regenerates the offline query metadata in .sqlx/ (committed), so builds need no database.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
db=drishtiksha_sqlx
psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
for f in migrations/*.sql; do psql -h 127.0.0.1 -U postgres -d "$db" -q -v ON_ERROR_STOP=1 -f "$f"; done
rm -rf .sqlx && mkdir .sqlx
# Touching the sources makes the query macros run again and write their metadata.
find common api activities workflows worker -name '*.rs' -exec touch {} +
SQLX_OFFLINE=false SQLX_OFFLINE_DIR="$root/.sqlx" DATABASE_URL="postgres://postgres@127.0.0.1/$db" \
  cargo check --workspace --all-targets -q
echo "wrote $(ls .sqlx | wc -l) query files to .sqlx/"
