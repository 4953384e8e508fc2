#!/usr/bin/env bash
# Benchmark `agnes pull`: (1) a no-op pull of 100 tables (nothing changed), 10 runs;
# (2) a full pull of one large table (random payload, ~poorly compressible), 3 runs.
#   bench/pull.sh [ROWS_OF_BIG_TABLE]
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-8000000}"
: "${CARGO_TARGET_DIR:=/var/tmp/agnes-target/host}"
AGNES="$(realpath "${AGNES:-$CARGO_TARGET_DIR/debug/agnes}")"
CSV="$CARGO_TARGET_DIR/wasm/wasm32-wasip2/release/agnes_connector_csv.wasm"
work="$(mktemp -d /var/tmp/agnes-bench.XXXXXX)"
mkdir -p "$work/many" "$work/big"
for i in $(seq -w 1 100); do printf 'id,name\n1,a\n2,b\n3,c\n' > "$work/many/t$i.csv"; done
python3 - "$ROWS" "$work/big/big.csv" <<'PY'
import sys, os, binascii
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("id,payload\n")
    for i in range(n):
        f.write(f"{i},{binascii.hexlify(os.urandom(16)).decode()}\n")
PY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export AGNES_DATA_DIR="$work/server" AGNES_LISTEN="127.0.0.1:$port" AGNES_CONFIG_DIR="$work/config"
ADMIN=$("$AGNES" admin bootstrap --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
"$AGNES" serve 2>"$work/server.log" & server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -sf "$base/api/health" >/dev/null && break; sleep 0.1; done
api() { curl -sS -X "$1" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' "$base$2" "${@:3}"; }
for i in $(seq -w 1 100); do
  api POST /api/admin/register-table -d "{\"name\": \"t$i\", \"source\": \"many\", \"connector\": \"$CSV\", \"grant\": {\"dirs\": [{\"host\": \"$work/many\", \"guest\": \"/data\"}]}}" >/dev/null
done
api POST /api/admin/register-table -d "{\"name\": \"big\", \"source\": \"big\", \"connector\": \"$CSV\", \"grant\": {\"dirs\": [{\"host\": \"$work/big\", \"guest\": \"/data\"}]}}" >/dev/null
api POST /api/sync/trigger >/dev/null
while api GET /api/sync/status | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["running"] else 1)'; do sleep 0.2; done
size=$(api GET /api/sync/manifest | python3 -c 'import json,sys; print(json.load(sys.stdin)["tables"]["big"]["size_bytes"])')
"$AGNES" init --server "$base" --token "$ADMIN" --dir "$work/ws" -q
cd "$work/ws"
"$AGNES" pull -q
echo "no-op pull, 101 tables (100 small + big), 10 runs:"
for _ in $(seq 10); do /usr/bin/time -f %e "$AGNES" pull -q 2>&1; done | sort -n | awk '{a[NR]=$1} END { printf "  median %.3f s, min %.3f s, max %.3f s\n", a[int((NR+1)/2)], a[1], a[NR] }'
echo "full pull of big ($size bytes), 3 runs:"
for _ in 1 2 3; do
  rm -f server/parquet/big.parquet
  t=$( { /usr/bin/time -f %e "$AGNES" pull -q; } 2>&1 )
  awk -v t="$t" -v s="$size" 'BEGIN { printf "  %.2f s, %.0f MB/s (download + md5 verify + rename + views)\n", t, s/t/1e6 }'
done
