#!/usr/bin/env bash
# Fails if the browser build's dependency tree holds a server-only crate.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(cargo tree -p frontend --target wasm32-unknown-unknown -e normal --prefix none --format '{p}')
bad=$(grep -E '^(sqlx|sqlx-[a-z]+|bollard|mio|engine|tokio|hyper|axum|libsqlite3-sys) ' <<<"$tree" | sort -u || true)
if [ -n "$bad" ]; then
  echo "wasm-check: the frontend's dependency tree holds server-only crates:" >&2
  echo "$bad" >&2
  echo "1 passed, 1 failed"
  exit 1
fi
echo "wasm-check: $(wc -l <<<"$tree") crates in the frontend's tree, none server-only"
