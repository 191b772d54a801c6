#!/usr/bin/env bash
# Builds the browser side into target/site: the hydrate WebAssembly (wasm-bindgen, then
# wasm-opt from npm's binaryen), the Tailwind stylesheet, and public/. The same steps
# cargo-leptos takes, without its 26-minute install.
set -euo pipefail
cd "$(dirname "$0")/.."
SITE=target/site
PKG=$SITE/pkg
mkdir -p "$PKG"

# .cargo/config.toml sets --cfg erase_components for this build and the server's.
cargo build -q -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release
wasm-bindgen --target web --no-typescript --out-dir "$PKG" --out-name slipway \
  target/wasm32-unknown-unknown/wasm-release/frontend.wasm
# npm's binaryen: Debian's wasm-opt 108 silently breaks hydration.
node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types \
  "$PKG/slipway_bg.wasm" -o "$PKG/slipway_bg.wasm"
node_modules/.bin/tailwindcss --input style/tailwind.css --output "$PKG/slipway.css" --minify 2>/dev/null
cp -r public/. "$SITE/"
# Precompressed copies, served to browsers that accept them (server/src/lib.rs).
node -e '
const z = require("zlib"), fs = require("fs");
for (const f of process.argv.slice(1)) {
  const b = fs.readFileSync(f);
  fs.writeFileSync(f + ".br", z.brotliCompressSync(b, { params: { [z.constants.BROTLI_PARAM_QUALITY]: 11 } }));
  fs.writeFileSync(f + ".gz", z.gzipSync(b, { level: 9 }));
}' "$PKG/slipway_bg.wasm" "$PKG/slipway.js" "$PKG/slipway.css"
# The size budget of issue 4: the WebAssembly at most 250 KB once brotli-compressed.
node -e '
const z = require("zlib"), b = require("fs").readFileSync(process.argv[1]);
const br = z.brotliCompressSync(b, { params: { [z.constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
console.log(`[site] WebAssembly: ${b.length} bytes raw, ${z.gzipSync(b, { level: 9 }).length} gzip, ${br} brotli`);
if (br > 250000) {
  console.error(`[site] the WebAssembly is over its budget: ${br} bytes brotli > 250000`);
  process.exit(1);
}
' "$PKG/slipway_bg.wasm"
