#!/usr/bin/env bash
# Server at scale: TABLES tables (two csv sources of small files), the manifest and the
# catalog under CLIENTS concurrent clients (wrk), and a no-op `agnes pull` of every table.
# Server, load generator and client share the machine's cores.
#   bench/scale.sh [TABLES] [CLIENTS] [SECONDS]
set -euo pipefail
# Measures speed, not trust: the built component runs unsigned (see docs/security.md).
export AGNES_ALLOW_UNSIGNED=1
cd "$(dirname "$0")/.."
TABLES="${1:-1000}"; CLIENTS="${2:-1000}"; SECS="${3:-10}"
: "${CARGO_TARGET_DIR:=/var/tmp/agnes-target/host}"
AGNES="$(realpath "${AGNES:-$CARGO_TARGET_DIR/debug/agnes}")"
CSV="$CARGO_TARGET_DIR/wasm/wasm32-wasip2/release/agnes_connector_csv.wasm"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true
work="$(mktemp -d /var/tmp/agnes-bench.XXXXXX)"
half=$((TABLES / 2))
mkdir -p "$work/a" "$work/b"
for i in $(seq 1 "$TABLES"); do
  d=a; [ "$i" -gt "$half" ] && d=b
  printf 'id,name,amount\n1,a,1.5\n2,b,2.5\n3,c,3.5\n' > "$work/$d/t$(printf %04d "$i").csv"
done
. scripts/lib-server.sh
start_server "$AGNES" "$work/server" "$work/server.log"
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for s in a b; do
  api "$ADMIN" POST /api/admin/sources -d "{\"name\": \"src_$s\", \"connector\": \"$CSV\", \"grant\": {\"dirs\": [{\"host\": \"$work/$s\", \"guest\": \"/data\"}]}}" >/dev/null
  api "$ADMIN" POST "/api/admin/sources/src_$s/tables" -d '{"all": true}' >/dev/null
done
t0=$(date +%s.%N)
api "$ADMIN" POST /api/sync/trigger >/dev/null
wait_for_sync "$ADMIN"
t1=$(date +%s.%N)
n=$(api "$ADMIN" GET /api/sync/manifest | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["tables"]))')
awk -v a="$t0" -v b="$t1" -v n="$n" 'BEGIN { printf "%d tables, synced in %.1f s\n", n, b-a }'
echo "server RSS after the sync: $(awk '/VmRSS/ {print $2/1024 " MB"}' /proc/$server/status)"

for path in /api/sync/manifest /api/catalog/tables; do
  bytes=$(api "$ADMIN" GET "$path" | wc -c)
  for c in 1 "$CLIENTS"; do
    echo "$path ($bytes bytes): wrk -c$c -d${SECS}s"
    wrk -t"$([ "$c" -gt 1 ] && echo 2 || echo 1)" -c"$c" -d"${SECS}s" --latency -H "Authorization: Bearer $ADMIN" "$base$path" \
      | grep -E "Requests/sec|50%|99%|Non-2xx|Socket errors" || true
  done
done
echo "server peak RSS: $(awk '/VmHWM/ {print $2/1024 " MB"}' /proc/$server/status)"

"$AGNES" init --server "$base" --token "$ADMIN" --dir "$work/ws" -q
cd "$work/ws"
/usr/bin/time -f "first pull of $n tables: %e s" "$AGNES" pull -q
echo "no-op pull, $n tables, 10 runs:"
for _ in $(seq 10); do /usr/bin/time -f %e "$AGNES" pull -q 2>&1; done | sort -n | awk '{a[NR]=$1} END { printf "  median %.3f s, min %.3f s, max %.3f s\n", a[int((NR+1)/2)], a[1], a[NR] }'
