#!/usr/bin/env bash
# A one-node Docker Swarm with a local registry, for `SLIPWAY_RUNTIME=swarm` (PROTOCOL.md,
# "Docker Swarm"): `scripts/swarm.sh up` makes this machine's engine a swarm manager
# (unless it is in a swarm already) and serves Debian's `docker-registry` on
# 127.0.0.1:5000 (unless a registry answers there already), then prints the registry's
# address for SLIPWAY_REGISTRY. `scripts/swarm.sh down` undoes exactly what `up` did and
# nothing else: it leaves the swarm only if `up` created it, and stops the registry only
# if `up` started it. Runs as root; what `up` did is remembered in SLIPWAY_SWARM_STATE.
set -euo pipefail
STATE=${SLIPWAY_SWARM_STATE:-/var/lib/slipway-swarm}
REGISTRY_ADDR=${SLIPWAY_SWARM_REGISTRY_ADDR:-127.0.0.1:5000}
cmd=${1:-}

log() { printf '[swarm] %s\n' "$*" >&2; }
registry_answers() {
  # The registry's API root answers 200 `{}` (no auth configured).
  python3 - "$REGISTRY_ADDR" <<'PY' 2>/dev/null
import sys, urllib.request
urllib.request.urlopen(f"http://{sys.argv[1]}/v2/", timeout=2).read()
PY
}

case "$cmd" in
  up)
    mkdir -p "$STATE"
    bash "$(dirname "$0")/docker.sh"
    if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
      # The bridge Swarm gives tasks for traffic off the overlay stays after a leave.
      docker network inspect docker_gwbridge >/dev/null 2>&1 || touch "$STATE/gwbridge-ours"
      log "docker swarm init --advertise-addr 127.0.0.1"
      docker swarm init --advertise-addr 127.0.0.1 >/dev/null
      touch "$STATE/swarm-ours"
    fi
    if ! registry_answers; then
      command -v docker-registry >/dev/null || {
        log "installing Debian's docker-registry"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-registry >/dev/null
      }
      # Its own configuration: Debian's default asks for an htpasswd file.
      mkdir -p "$STATE/registry"
      cat >"$STATE/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
EOF
      log "starting docker-registry on $REGISTRY_ADDR (log: $STATE/registry.log)"
      nohup docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 &
      echo $! >"$STATE/registry.pid"
      for _ in $(seq 1 50); do registry_answers && break; sleep 0.1; done
      registry_answers || { log "the registry did not answer; see $STATE/registry.log"; exit 1; }
    fi
    echo "$REGISTRY_ADDR"
    ;;
  down)
    if [ -f "$STATE/registry.pid" ]; then
      pid=$(cat "$STATE/registry.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    if [ -f "$STATE/swarm-ours" ]; then
      log "docker swarm leave --force"
      docker swarm leave --force >/dev/null 2>&1 || true
      if [ -f "$STATE/gwbridge-ours" ]; then
        for _ in $(seq 1 50); do
          docker network rm docker_gwbridge >/dev/null 2>&1 && break
          docker network inspect docker_gwbridge >/dev/null 2>&1 || break
          sleep 0.2
        done
      fi
    fi
    rm -rf "$STATE"
    ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
