#!/usr/bin/env bash
# Benchmark `agnes pull`: (1) a no-op pull of 100 tables (nothing changed), 10 runs;
# (2) a full pull of one large table (random payload, ~poorly compressible), 3 runs.
#   bench/pull.sh [ROWS_OF_BIG_TABLE]
set -euo pipefail
# Measures speed, not trust: the built component runs unsigned (see docs/security.md).
export AGNES_ALLOW_UNSIGNED=1
cd "$(dirname "$0")/.."
ROWS="${1:-8000000}"
: "${CARGO_TARGET_DIR:=/var/tmp/agnes-target/host}"
AGNES="$(realpath "${AGNES:-$CARGO_TARGET_DIR/debug/agnes}")"
CSV="$CARGO_TARGET_DIR/wasm/wasm32-wasip2/release/agnes_connector_csv.wasm"
work="$(mktemp -d /var/tmp/agnes-bench.XXXXXX)"
mkdir -p "$work/many" "$work/big"
for i in $(seq -w 1 100); do printf 'id,name\n1,a\n2,b\n3,c\n' > "$work/many/t$i.csv"; done
. scripts/lib-server.sh AGNES_CONFIG_DIR="$work/config"
make_big_csv "$ROWS" "$work/big/big.csv"
start_server "$AGNES" "$work/server" "$work/server.log"
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for i in $(seq -w 1 100); do
  api "$ADMIN" POST /api/admin/register-table -d "{\"name\": \"t$i\", \"source\": \"many\", \"connector\": \"$CSV\", \"grant\": {\"dirs\": [{\"host\": \"$work/many\", \"guest\": \"/data\"}]}}" >/dev/null
done
api "$ADMIN" POST /api/admin/register-table -d "{\"name\": \"big\", \"source\": \"big\", \"connector\": \"$CSV\", \"grant\": {\"dirs\": [{\"host\": \"$work/big\", \"guest\": \"/data\"}]}}" >/dev/null
t0=$(date +%s.%N)
api "$ADMIN" POST /api/sync/trigger >/dev/null
wait_for_sync "$ADMIN"
t1=$(date +%s.%N)
csv_mb=$(du -m "$work/big/big.csv" | cut -f1)
awk -v a="$t0" -v b="$t1" -v m="$csv_mb" 'BEGIN { printf "sync of 101 tables (big.csv %d MB) through the server: %.1f s\n", m, b-a }'
echo "server peak RSS (VmHWM) after the sync: $(awk '/VmHWM/ {printf "%.0f MB", $2/1024}' /proc/$server/status)"
size=$(api "$ADMIN" GET /api/sync/manifest | python3 -c 'import json,sys; print(json.load(sys.stdin)["tables"]["big"]["size_bytes"])')
"$AGNES" init --server "$base" --token "$ADMIN" --dir "$work/ws" -q
cd "$work/ws"
"$AGNES" pull -q
echo "no-op pull, 101 tables (100 small + big), 10 runs:"
for _ in $(seq 10); do /usr/bin/time -f %e "$AGNES" pull -q 2>&1; done | sort -n | awk '{a[NR]=$1} END { printf "  median %.3f s, min %.3f s, max %.3f s\n", a[int((NR+1)/2)], a[1], a[NR] }'
echo "full pull of big ($size bytes), 3 runs:"
for _ in 1 2 3; do
  rm -f server/parquet/big.parquet
  sync
  read -r t rss < <( { /usr/bin/time -f "%e %M" "$AGNES" pull -q; } 2>&1 )
  awk -v t="$t" -v s="$size" -v r="$rss" 'BEGIN { printf "  %.2f s, %.0f MB/s (download + md5 verify + fsync + rename + views), peak RSS %.0f MB\n", t, s/t/1e6, r/1024 }'
done
