#!/usr/bin/env bash
# Benchmark: manifest latency under 200 concurrent clients (wrk) and download throughput of
# one large parquet file (curl), against `agnes serve` on loopback. Server and load
# generator share the machine's 2 cores.
#   bench/server.sh [ROWS_OF_BIG_TABLE] [SECONDS]
set -euo pipefail
# Measures speed, not trust: the built component runs unsigned (see docs/security.md).
export AGNES_ALLOW_UNSIGNED=1
cd "$(dirname "$0")/.."
ROWS="${1:-3000000}"; SECS="${2:-10}"
: "${CARGO_TARGET_DIR:=/var/tmp/agnes-target/host}"
AGNES="${AGNES:-$CARGO_TARGET_DIR/debug/agnes}"
CSV="$CARGO_TARGET_DIR/wasm/wasm32-wasip2/release/agnes_connector_csv.wasm"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
work="$(mktemp -d /var/tmp/agnes-bench.XXXXXX)"
mkdir -p "$work/big"
. scripts/lib-server.sh
make_big_csv "$ROWS" "$work/big/big.csv"
start_server "$AGNES" "$work/server" "$work/server.log"
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
demo="$(realpath examples/demo/data)"
for t in customers orders products; do
  api "$ADMIN" POST /api/admin/register-table -d "{\"name\": \"$t\", \"source\": \"demo\", \"connector\": \"$CSV\", \"grant\": {\"dirs\": [{\"host\": \"$demo\", \"guest\": \"/data\"}]}}" >/dev/null
done
api "$ADMIN" POST /api/admin/register-table -d "{\"name\": \"big\", \"source\": \"big\", \"connector\": \"$CSV\", \"grant\": {\"dirs\": [{\"host\": \"$work/big\", \"guest\": \"/data\"}]}}" >/dev/null
api "$ADMIN" POST /api/sync/trigger >/dev/null
wait_for_sync "$ADMIN"
size=$(api "$ADMIN" GET /api/sync/manifest | python3 -c 'import json,sys; print(json.load(sys.stdin)["tables"]["big"]["size_bytes"])')

echo "manifest: wrk -t2 -c200 -d${SECS}s (4 tables)"
wrk -t2 -c200 -d"${SECS}s" --latency -H "Authorization: Bearer $ADMIN" "$base/api/sync/manifest" | grep -E "Requests/sec|50%|90%|99%|Non-2xx|Socket errors" || true

echo "download: big.parquet, $size bytes, 5 runs"
speeds=()
for _ in 1 2 3 4 5; do
  s=$(curl -s -o /dev/null -H "Authorization: Bearer $ADMIN" -w '%{speed_download}' "$base/api/data/big/download")
  speeds+=("$s"); awk -v s="$s" 'BEGIN { printf "  %.0f MB/s\n", s/1e6 }'
done
agnes_median=$(printf '%s\n' "${speeds[@]}" | sort -n | awk '{a[NR]=$1} END { print a[int((NR+1)/2)] }')
awk -v s="$agnes_median" 'BEGIN { printf "median: %.0f MB/s\n", s/1e6 }'

# the baseline: the same file from a minimal static file server (tests/examples/static_server.rs)
STATIC="${STATIC_SERVER:-$CARGO_TARGET_DIR/release/examples/static_server}"
if [ -x "$STATIC" ]; then
  file=$(ls "$work"/server/extracts/.versions/big/*/data/big.parquet | head -1)
  "$STATIC" "$file" > "$work/static.url" & static=$!
  trap 'kill $server $static 2>/dev/null; rm -rf "$work"' EXIT
  for _ in $(seq 50); do [ -s "$work/static.url" ] && break; sleep 0.1; done
  url=$(head -1 "$work/static.url")
  echo "download baseline: the same file from a static file server, 5 runs"
  sspeeds=()
  for _ in 1 2 3 4 5; do
    sspeeds+=("$(curl -s -o /dev/null -w '%{speed_download}' "$url")")
  done
  static_median=$(printf '%s\n' "${sspeeds[@]}" | sort -n | awk '{a[NR]=$1} END { print a[int((NR+1)/2)] }')
  awk -v a="$agnes_median" -v s="$static_median" 'BEGIN { printf "static median: %.0f MB/s; agnes / static = %.2f\n", s/1e6, a/s }'
else
  echo "(no $STATIC: build it with cargo build --release -p agnes-tests --example static_server)"
fi
