#!/usr/bin/env bash
# Installs the local CPU models (the pinned npm packages of package.json and
# package-lock.json, and our scripts that run them) into DIR, by default
# $COMPUTE_DATA_DIR/models (./data/models). `make models` runs it; running
# it again is quick (npm's cache, and nothing is done when the lock file
# has not changed since the last install).
set -euo pipefail
src="$(cd "$(dirname "$0")" && pwd)"
dir="${1:-${COMPUTE_DATA_DIR:-./data}/models}"
command -v node >/dev/null && command -v npm >/dev/null \
  || { echo "models: node and npm are needed (Debian: apt-get install nodejs npm)" >&2; exit 1; }
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
cp "$src"/package.json "$src"/package-lock.json "$src"/.npmrc "$src"/*.mjs "$dir"/
cd "$dir"
if [ -d node_modules ] && cmp -s package-lock.json node_modules/.package-lock.stamp; then
  echo "models: $dir is up to date"
  exit 0
fi
# The lock file pins every package; --prefer-offline takes them from npm's
# cache when it has them.
npm ci --prefer-offline --no-audit --no-fund --loglevel=error
cp package-lock.json node_modules/.package-lock.stamp
echo "models: installed in $dir"
