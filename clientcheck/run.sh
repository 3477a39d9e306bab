#!/usr/bin/env bash
# Foreign-client check: start the real `compute serve` (SQLite, loopback),
# generate clients from its /openapi.json with oapi-codegen, ogen and
# openapi-typescript (+ openapi-fetch), compile them and run a program with
# each against the server. Exits non-zero when a generator, a compiler or a
# program fails. Tool versions are pinned in go/go.mod (tool directives)
# and ts/package-lock.json. Run it as `make clientcheck`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
export PATH="/usr/local/go/bin:$PATH"

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" && wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "clientcheck: building compute"
(cd "$root" && go build -o "$work/compute" ./cmd/compute)

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
key="clientcheck-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export COMPUTE_URL="http://127.0.0.1:$port" COMPUTE_API_KEY="$key"
COMPUTE_ADDR="127.0.0.1:$port" COMPUTE_DATA_DIR="$work/data" COMPUTE_LOG_LEVEL=warn \
  "$work/compute" serve >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$COMPUTE_URL/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log" >&2; echo "clientcheck: the server did not start" >&2; exit 1; }
  sleep 0.1
done
curl -fsS "$COMPUTE_URL/readyz" >/dev/null || { cat "$work/server.log" >&2; exit 1; }

# The served document, OpenAPI 3.1: all three generators read it as is.
mkdir -p "$here/out"
curl -fsS "$COMPUTE_URL/openapi.json" -o "$here/out/openapi.json"

echo "clientcheck: oapi-codegen and ogen"
(
  cd "$here/go"
  go tool oapi-codegen -config oapi/config.yaml ../out/openapi.json
  go tool ogen -config ogen.yml -target ogen -package ogen -clean ../out/openapi.json 2>"$work/ogen.log" \
    || { cat "$work/ogen.log" >&2; exit 1; }
  go vet ./...
  go run ./cmd/oapicheck
  go run ./cmd/ogencheck
)

echo "clientcheck: openapi-typescript and openapi-fetch"
(
  cd "$here/ts"
  npm ci --no-audit --no-fund --loglevel=error
  npx --no-install openapi-typescript ../out/openapi.json -o src/schema.d.ts
  npx --no-install tsc -p .
  node dist/check.js
)

if grep -E 'level=ERROR|panic' "$work/server.log" >&2; then
  echo "clientcheck: the server logged errors" >&2
  exit 1
fi
echo "clientcheck: ok"
