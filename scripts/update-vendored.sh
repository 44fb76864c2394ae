#!/usr/bin/env bash
# Copy the web pages' vendored chart library (uPlot, pinned in package.json) from
# node_modules into the package, with its licence and version.  Run after changing
# the pinned version:
#
#     PUPPETEER_SKIP_DOWNLOAD=1 npm install --save-dev --save-exact uplot@X.Y.Z
#     scripts/update-vendored.sh
#
# Nothing is built: the files are uPlot's own dist files, committed as they are, so
# installing resmon needs neither npm nor the network.
set -euo pipefail
cd "$(dirname "$0")/.."
src=node_modules/uplot
dest=resmon/web/static/vendor/uplot
if [ ! -f "$src/package.json" ]; then
    echo "no $src: run 'PUPPETEER_SKIP_DOWNLOAD=1 npm ci' first" >&2
    exit 1
fi
version=$(node -p "require('./$src/package.json').version")
pinned=$(node -p "require('./package.json').devDependencies.uplot")
if [ "$version" != "$pinned" ]; then
    echo "node_modules has uplot $version, package.json pins $pinned: run npm ci" >&2
    exit 1
fi
mkdir -p "$dest"
cp "$src/dist/uPlot.iife.min.js" "$src/dist/uPlot.min.css" "$src/LICENSE" "$dest/"
echo "$version" > "$dest/VERSION"
echo "uPlot $version copied to $dest"
