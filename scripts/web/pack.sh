#!/usr/bin/env bash
# Assemble the npm package `amrpc` from the three wasm-pack builds and pack it.
#
#   scripts/web/pack.sh            → prints the tarball's path as its last line
#
# In:  target/npm/{web,nodejs,bundler}  (wasm-pack outputs; built here when missing or stale,
#      see tools.sh; scripts/web/setup.sh builds them too). AMRPC_PKG_FROM=DIR takes the three
#      outputs from DIR instead and builds nothing.
# Out: target/npm/amrpc/{web,node,bundler,package.json,README.md[,LICENSE]} and
#      target/npm/amrpc-<version>.tgz
# The package.json template and README are in client-wasm/npm/; the version and repository come
# from the workspace Cargo.toml. Logs go to stderr; stdout is only the tarball path.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TEMPLATE="$ROOT/client-wasm/npm"

if [ -n "${AMRPC_PKG_FROM:-}" ]; then
  FROM="$AMRPC_PKG_FROM"
else
  . "$ROOT/scripts/web/tools.sh"   # exports PKG_DIR=$ROOT/target/npm, defines amrpc_ensure_pkg
  for t in web nodejs bundler; do amrpc_ensure_pkg "$t" >&2; done
  FROM="$PKG_DIR"
fi
OUT_BASE="$ROOT/target/npm"
OUT="$OUT_BASE/amrpc"

for t in web nodejs bundler; do
  for f in amrpc.js amrpc.d.ts amrpc_bg.wasm; do
    [ -f "$FROM/$t/$f" ] || { echo "pack.sh: $FROM/$t/$f is missing (run scripts/web/setup.sh)" >&2; exit 1; }
  done
done

# version and repository from [workspace.package]
ws_field() {
  awk -v k="$1" '/^\[workspace\.package\]/{s=1; next} /^\[/{s=0} s && $1==k {sub(/^[^=]*= *"/, ""); sub(/".*$/, ""); print; exit}' \
    "$ROOT/Cargo.toml"
}
VERSION=$(ws_field version)
REPO=$(ws_field repository)
[ -n "$VERSION" ] || { echo "pack.sh: no version in [workspace.package] of Cargo.toml" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT"
copy_target() { # wasm-pack target → folder in the package; their package.json/.gitignore are dropped
  local from="$FROM/$1" to="$OUT/$2"
  mkdir -p "$to"
  (cd "$from" && find . -type f ! -name package.json ! -name .gitignore ! -name README.md ! -name 'LICENSE*' -print0 |
    while IFS= read -r -d '' f; do mkdir -p "$to/$(dirname "$f")"; cp "$f" "$to/$f"; done)
}
copy_target web web
copy_target bundler bundler
copy_target nodejs node
# the package is "type": "module" (web and bundler are ES modules); the nodejs build is CommonJS
printf '{\n  "type": "commonjs"\n}\n' >"$OUT/node/package.json"
# its entry finds a WebSocket by itself (the global one, else the `ws` dependency)
cp "$TEMPLATE/node-entry.cjs" "$OUT/node/index.js"
cp "$TEMPLATE/node-entry.d.ts" "$OUT/node/index.d.ts"
# amrpc/react: the hooks (plain ES modules and their declarations)
mkdir -p "$OUT/react"
cp "$TEMPLATE"/react/*.js "$TEMPLATE"/react/*.d.ts "$OUT/react/"

node "$TEMPLATE/types.mjs" "$OUT/web/amrpc.d.ts" "$OUT/bundler/amrpc.d.ts" "$OUT/node/amrpc.d.ts" >&2

VERSION="$VERSION" REPO="$REPO" node -e '
  const fs = require("fs");
  const [src, dst] = process.argv.slice(1);
  const p = JSON.parse(fs.readFileSync(src, "utf8"));
  p.version = process.env.VERSION;
  if (process.env.REPO) p.repository = { type: "git", url: process.env.REPO };
  else delete p.repository;
  fs.writeFileSync(dst, JSON.stringify(p, null, 2) + "\n");
' "$TEMPLATE/package.json" "$OUT/package.json"
cp "$TEMPLATE/README.md" "$OUT/README.md"
for l in "$TEMPLATE/LICENSE" "$ROOT/LICENSE" "$ROOT/LICENSE-MIT" "$ROOT/LICENSE.md"; do
  if [ -f "$l" ]; then cp "$l" "$OUT/LICENSE"; break; fi
done

rm -f "$OUT_BASE"/amrpc-*.tgz
(cd "$OUT" && npm pack --silent --pack-destination "$OUT_BASE" >/dev/null)
TARBALL="$OUT_BASE/amrpc-$VERSION.tgz"
[ -f "$TARBALL" ] || { echo "pack.sh: npm pack did not produce $TARBALL" >&2; exit 1; }
echo "packed $(du -k "$TARBALL" | cut -f1) KiB: $(tar -tzf "$TARBALL" | wc -l) files" >&2
echo "$TARBALL"
