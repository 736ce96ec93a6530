#!/usr/bin/env bash
# Checks docker-compose.yml without a Docker engine: Compose Specification schema, consistency with
# the Dockerfile, the binaries' configuration and the repository, and a self-test on broken copies
# (deploy/check_compose.py says what exactly). Part of `make test`; the schema comes from the
# check-jsonschema package that scripts/setup.sh installs into .venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$root/.venv/bin/python"
if ! "$py" -c 'import check_jsonschema, ruamel.yaml, jsonschema' 2>/dev/null; then
  echo "check-compose: check-jsonschema is not installed in .venv; run scripts/setup.sh" >&2
  exit 1
fi
exec "$py" "$root/deploy/check_compose.py" --root "$root" "$@"
