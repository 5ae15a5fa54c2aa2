#!/usr/bin/env bash
# Fetch GraphiQL's browser bundles from the npm registry into a local directory, for csms to serve.
#
# Usage: bash csms/api/fetch_graphiql.sh [DIR]
#   DIR defaults to $CSMS_GRAPHIQL_DIR, else var/graphiql (relative to the current directory, like csms).
#
# The bundles are third-party code, so they are fetched at setup time and never committed. Idempotent:
# when every file is already there it does nothing; FORCE=1 fetches again. Needs npm (Node.js).
set -euo pipefail

dir="${1:-${CSMS_GRAPHIQL_DIR:-var/graphiql}}"
# The UMD builds these versions ship: react/umd/*.production.min.js exists up to React 18, and GraphiQL 3
# ships graphiql.min.js + graphiql.min.css (GraphiQL 4 dropped its UMD bundle).
packages=(graphiql@3 react@18 react-dom@18 graphql@16 graphql-ws@5)
# source path inside node_modules -> file name served under /graphiql/static/
files=(
  "react/umd/react.production.min.js"
  "react-dom/umd/react-dom.production.min.js"
  "graphiql/graphiql.min.js"
  "graphiql/graphiql.min.css"
  "graphql-ws/umd/graphql-ws.min.js"
)

have_all=1
for f in "${files[@]}"; do
  [[ -s "$dir/$(basename "$f")" ]] || have_all=0
done
if [[ $have_all == 1 && "${FORCE:-0}" != 1 ]]; then
  echo "GraphiQL assets already in $dir (FORCE=1 to fetch again)"
  exit 0
fi

command -v npm >/dev/null || { echo "npm not found: install Node.js (apt-get install -y npm)" >&2; exit 1; }
mkdir -p "$dir"
npm install --no-save --no-audit --no-fund --loglevel=error --prefix "$dir/npm" "${packages[@]}"

tmp="$(mktemp -d "$dir/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
for f in "${files[@]}"; do
  src="$dir/npm/node_modules/$f"
  [[ -s "$src" ]] || { echo "missing $src: did a package drop its UMD build?" >&2; exit 1; }
  cp "$src" "$tmp/"
done
# Move into place only once every file was found, so a failed run never leaves a half-updated set.
for f in "${files[@]}"; do
  mv -f "$tmp/$(basename "$f")" "$dir/"
done
# Record what was installed, for licences and audits.
abs="$(cd "$dir" && pwd)"
for p in graphiql react react-dom graphql graphql-ws; do
  echo "$p $(node -p 'require(process.argv[1]).version' "$abs/npm/node_modules/$p/package.json" 2>/dev/null || echo '?')"
done > "$dir/VERSIONS.txt"
echo "GraphiQL assets installed in $dir"
