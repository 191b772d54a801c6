#!/usr/bin/env bash
# Builds the browser side into target/site: the hydrate WebAssembly (wasm-bindgen, then
# wasm-opt from npm's binaryen), the Tailwind stylesheet, and public/. The same steps
# cargo-leptos takes, without its 26-minute install.
set -euo pipefail
cd "$(dirname "$0")/.."
# The site's settings live in Leptos.toml (the server reads the same file).
setting() { sed -n "s/^$1 *= *\"\{0,1\}\([^\"]*\)\"\{0,1\} *$/\1/p" Leptos.toml | head -n 1; }
NAME=$(setting output-name)
SITE=${LEPTOS_SITE_ROOT:-$(setting site-root)}
PKG=$SITE/$(setting site-pkg-dir)
BUDGET=$(setting bundle-budget-bytes)
[ -n "$NAME" ] && [ -n "$SITE" ] && [ -n "$BUDGET" ] || { echo "[site] Leptos.toml lacks a setting" >&2; exit 1; }
mkdir -p "$PKG"

# .cargo/config.toml sets --cfg erase_components for this build and the server's.
cargo build -q -p frontend --lib --target wasm32-unknown-unknown --profile wasm-release
wasm-bindgen --target web --no-typescript --out-dir "$PKG" --out-name "$NAME" \
  target/wasm32-unknown-unknown/wasm-release/frontend.wasm
# npm's binaryen: Debian's wasm-opt 108 silently breaks hydration.
node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types \
  "$PKG/${NAME}_bg.wasm" -o "$PKG/${NAME}_bg.wasm"
node_modules/.bin/tailwindcss --input style/tailwind.css --output "$PKG/$NAME.css" --minify 2>/dev/null
cp -r public/. "$SITE/"
# Precompressed copies, served to browsers that accept them (server/src/lib.rs).
node -e '
const z = require("zlib"), fs = require("fs");
for (const f of process.argv.slice(1)) {
  const b = fs.readFileSync(f);
  fs.writeFileSync(f + ".br", z.brotliCompressSync(b, { params: { [z.constants.BROTLI_PARAM_QUALITY]: 11 } }));
  fs.writeFileSync(f + ".gz", z.gzipSync(b, { level: 9 }));
}' "$PKG/${NAME}_bg.wasm" "$PKG/$NAME.js" "$PKG/$NAME.css"
# The WebAssembly's budget once brotli-compressed (bundle-budget-bytes in Leptos.toml).
node -e '
const z = require("zlib"), b = require("fs").readFileSync(process.argv[1]), budget = Number(process.argv[2]);
const br = z.brotliCompressSync(b, { params: { [z.constants.BROTLI_PARAM_QUALITY]: 11 } }).length;
console.log(`[site] WebAssembly: ${b.length} bytes raw, ${z.gzipSync(b, { level: 9 }).length} gzip, ${br} brotli (budget ${budget})`);
if (br > budget) {
  console.error(`[site] the WebAssembly is over its budget: ${br} bytes brotli > ${budget}`);
  process.exit(1);
}
' "$PKG/${NAME}_bg.wasm" "$BUDGET"
