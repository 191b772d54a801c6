#!/usr/bin/env bash
# Builds the browser side into target/site: the hydrate WebAssembly (wasm-bindgen, then
# wasm-opt from npm's binaryen), the Tailwind stylesheet, and public/. The same steps
# cargo-leptos takes, without its 26-minute install.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=target/site
PKG=$SITE/pkg
mkdir -p "$PKG"

cargo build -q -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release
wasm-bindgen --target web --no-typescript --out-dir "$PKG" --out-name slipway \
  target/wasm32-unknown-unknown/wasm-release/frontend.wasm
# npm's binaryen: Debian's wasm-opt 108 silently breaks hydration.
node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types \
  "$PKG/slipway_bg.wasm" -o "$PKG/slipway_bg.wasm"
node_modules/.bin/tailwindcss --input style/tailwind.css --output "$PKG/slipway.css" --minify 2>/dev/null
cp -r public/. "$SITE/"
echo "[site] $(du -b "$PKG/slipway_bg.wasm" | cut -f1) bytes of WebAssembly, $(gzip -c "$PKG/slipway_bg.wasm" | wc -c) gzipped"
