#!/usr/bin/env bash
# Starts the Docker engine in the background unless one answers already.
set -euo pipefail
if docker info >/dev/null 2>&1; then
  exit 0
fi
echo "[docker] starting dockerd (log: /var/log/slipway-dockerd.log)"
# A daemon killed earlier leaves a stale pid file and socket behind.
rm -f /var/run/docker.pid
[ -S /var/run/docker.sock ] && rm -f /var/run/docker.sock
nohup dockerd >/var/log/slipway-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.5
done
echo "[docker] dockerd did not answer within 30 s; see /var/log/slipway-dockerd.log" >&2
tail -n 20 /var/log/slipway-dockerd.log >&2 || true
exit 1
