#!/bin/sh
# Rebuild assets/plotly-ecg.min.js from plotly.js's sources (npm registry, about 230 MB of
# packages in a temporary folder): plotly-ecg.entry.js bundled the way plotly.js builds its
# own dist files (esbuild, IIFE defining window.Plotly, ES2016), map styles left out.
set -eu
PLOTLY_VERSION=3.7.0
ESBUILD_VERSION=0.25.12
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
echo '{"name": "plotly-ecg-build", "version": "1.0.0", "private": true}' > package.json
npm install --no-audit --no-fund --silent "plotly.js@$PLOTLY_VERSION" "esbuild@$ESBUILD_VERSION"
cp "$here/plotly-ecg.entry.js" entry.js
node_modules/.bin/esbuild entry.js --bundle --minify --format=iife --global-name=Plotly \
    --target=es2016 --define:global=window --define:define.amd=false \
    --alias:stream=stream-browserify --loader:.css=empty --legal-comments=eof \
    --banner:js="/* plotly.js v$PLOTLY_VERSION (scatter, bar, heatmap: assets/vendor/plotly-ecg.entry.js). Copyright 2012-2026, Plotly, Inc. MIT license. */" \
    --log-level=warning --outfile="$here/../plotly-ecg.min.js"
