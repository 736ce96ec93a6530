#!/usr/bin/env bash
# Registers the analysis workflow's search attributes on an existing Temporal cluster (compose,
# self-hosted, Cloud via the CLI's own connection flags/env). Already registered ones are skipped.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="${TEMPORAL_BIN:-temporal}"
existing="$("$bin" operator search-attribute list "$@" 2>/dev/null || true)"
grep -v '^#' "$here/search-attributes.txt" | while read -r name type; do
  [ -z "$name" ] && continue
  if grep -qw "$name" <<<"$existing"; then
    echo "search attribute $name already registered"
  else
    "$bin" operator search-attribute create --name "$name" --type "$type" "$@"
  fi
done
