#!/usr/bin/env bash
# Scale-out on one machine: two `agnes serve --role api` processes and one worker on one
# PostgreSQL state (a private cluster) and one Garage bucket (a private node).
#  (1) the manifest under CLIENTS concurrent clients: one API process vs two (half each)
#  (2) sync commit -> the new version served by both API processes (5 syncs)
#  (3) PULLS concurrent downloads of a ~100 MB table: presigned URLs vs the API's download,
#      with the CPU the API process and Garage spent on each
# Everything (PostgreSQL, Garage, the servers, wrk, curl) shares the machine's cores.
#   bench/scale_out.sh [CLIENTS] [SECONDS] [BIG_ROWS] [PULLS]
set -euo pipefail
# Measures speed, not trust: the built component runs unsigned (see docs/security.md).
export AGNES_ALLOW_UNSIGNED=1
cd "$(dirname "$0")/.."
CLIENTS="${1:-1000}"; SECS="${2:-10}"; ROWS="${3:-5200000}"; PULLS="${4:-200}"
: "${CARGO_TARGET_DIR:=/var/tmp/agnes-target/host}"
AGNES="$(realpath "${AGNES:-$CARGO_TARGET_DIR/debug/agnes}")"
CSV="$CARGO_TARGET_DIR/wasm/wasm32-wasip2/release/agnes_connector_csv.wasm"
GARAGE="${AGNES_GARAGE:-/opt/agnes-deps/garage-2.5.0/bin/garage}"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
[ -x "$GARAGE" ] || { echo "needs Garage: run scripts/setup.sh" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true
. scripts/lib-server.sh   # make_big_csv (its `api` is replaced below)
work="$(mktemp -d /var/tmp/agnes-bench.XXXXXX)"
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# PostgreSQL, as the postgres user, on a loopback port
pg_port=$(port)
mkdir -p "$work/pg" && chown postgres "$work/pg"
runuser -u postgres -- "$PGBIN/initdb" -D "$work/pg/data" -U postgres -A trust --no-sync >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
  -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start >/dev/null
runuser -u postgres -- "$PGBIN/createdb" -h 127.0.0.1 -p "$pg_port" agnes
STATE_URL="postgres://postgres@127.0.0.1:$pg_port/agnes"

# Garage: one node, one bucket, one key
s3_port=$(port); rpc_port=$(port)
mkdir -p "$work/garage"
cat > "$work/garage/garage.toml" <<EOF
metadata_dir = "$work/garage/meta"
data_dir = "$work/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(openssl rand -hex 32)"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.localhost"
EOF
chmod 600 "$work/garage/garage.toml"
g() { "$GARAGE" -c "$work/garage/garage.toml" "$@"; }
RUST_LOG=warn "$GARAGE" -c "$work/garage/garage.toml" server >"$work/garage/log" 2>&1 & garage_pid=$!; pids+=("$garage_pid")
for _ in $(seq 100); do node=$(g node id -q 2>/dev/null) && break; sleep 0.1; done
g layout assign -z dc1 -c 10G "${node%%@*}" >/dev/null
g layout apply --version 1 >/dev/null
g bucket create agnes >/dev/null
openssl rand -hex 32 > "$work/garage/secret"
g key import --yes -n agnes GK0a1b2c3d4e5f60718293a4b5 "$(cat "$work/garage/secret")" >/dev/null
g bucket allow --read --write --owner agnes --key agnes >/dev/null

# the servers
config() {  # config <name> <port>
  mkdir -p "$work/$1"
  cat > "$work/$1/agnes.toml" <<EOF
data_dir = "$work/$1/data"
listen = "127.0.0.1:$2"
scheduler_tick_secs = 3600
[state]
backend = "postgres"
url = "$STATE_URL"
max_connections = 16
[storage]
backend = "s3"
endpoint = "http://127.0.0.1:$s3_port"
bucket = "agnes"
region = "garage"
access_key_id = "GK0a1b2c3d4e5f60718293a4b5"
secret_access_key_file = "$work/garage/secret"
EOF
}
pa=$(port); pb=$(port); pw=$(port)
config a "$pa"; config b "$pb"; config w "$pw"
ADMIN=$("$AGNES" admin bootstrap --json --config "$work/a/agnes.toml" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
"$AGNES" serve --role api --config "$work/a/agnes.toml" 2>"$work/a/log" & api_a=$!; pids+=("$api_a")
"$AGNES" serve --role api --config "$work/b/agnes.toml" 2>"$work/b/log" & api_b=$!; pids+=("$api_b")
"$AGNES" serve --role worker --config "$work/w/agnes.toml" 2>"$work/w/log" & pids+=($!)
A="http://127.0.0.1:$pa"; B="http://127.0.0.1:$pb"
for u in "$A" "$B" "http://127.0.0.1:$pw"; do
  for _ in $(seq 200); do curl -sf "$u/readyz" >/dev/null && break; sleep 0.1; done
done
api() { local base="$1" method="$2" path="$3"; shift 3
  curl -sS -X "$method" -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' "$base$path" "$@"; }
wait_idle() {
  while api "$A" GET /api/sync/status | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["running"] else 1)'; do sleep 0.05; done
}

mkdir -p "$work/demo" "$work/big" "$work/tick"
cp examples/demo/data/*.csv "$work/demo/"
make_big_csv "$ROWS" "$work/big/big.csv"
echo "n,at" > "$work/tick/tick.csv"
for s in demo big tick; do
  api "$A" POST /api/admin/sources -d "{\"name\": \"$s\", \"connector\": \"$CSV\", \"grant\": {\"dirs\": [{\"host\": \"$work/$s\", \"guest\": \"/data\"}]}}" >/dev/null
  api "$A" POST "/api/admin/sources/$s/tables" -d '{"all": true}' >/dev/null
done
api "$A" POST /api/sync/trigger >/dev/null
sleep 0.5
wait_idle
# both API processes serve every table
for _ in $(seq 200); do
  n=$(api "$B" GET /api/sync/manifest | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["tables"]))')
  [ "$n" -ge 5 ] && break; sleep 0.1
done
echo "PostgreSQL $("$PGBIN/postgres" -V | awk '{print $3}'), Garage $("$GARAGE" --version 2>&1 | head -1 | awk '{print $2}'), 2 API processes + 1 worker, $n tables"

# (1) the manifest under CLIENTS clients: one process, then two
p99() { awk '/ 99%/ {print $2} /Requests\/sec/ {print $2}' | paste -sd' '; }
one=$(wrk -t2 -c"$CLIENTS" -d"${SECS}s" --latency -H "Authorization: Bearer $ADMIN" "$A/api/sync/manifest" | p99)
half=$((CLIENTS / 2))
wrk -t1 -c"$half" -d"${SECS}s" --latency -H "Authorization: Bearer $ADMIN" "$A/api/sync/manifest" | p99 > "$work/wa" & other=$!
wrk -t1 -c"$half" -d"${SECS}s" --latency -H "Authorization: Bearer $ADMIN" "$B/api/sync/manifest" | p99 > "$work/wb"
wait "$other"
echo "manifest, $CLIENTS clients on one API process: p99 ${one% *}, ${one#* } req/s"
echo "manifest, $CLIENTS clients on two (half each): p99 $(cut -d' ' -f1 "$work/wa") / $(cut -d' ' -f1 "$work/wb"), $(cut -d' ' -f2 "$work/wa") + $(cut -d' ' -f2 "$work/wb") req/s"

# (2) commit -> served by both API processes
python3 - "$A" "$B" "$ADMIN" "$work/tick/tick.csv" <<'PY'
import json, sys, time, urllib.request, datetime
a, b, token, csv = sys.argv[1:]
def get(base, path, method="GET"):
    req = urllib.request.Request(base + path, method=method, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
def hash_of(base):
    return get(base, "/api/sync/manifest")["tables"].get("tick", {}).get("hash")
lat = []
for i in range(5):
    with open(csv, "a") as f:
        f.write(f"{i},{time.time()}\n")
    old = hash_of(a)
    run = get(a, "/api/admin/sources/tick/sync", "POST")["run_id"]
    while True:
        r = get(a, f"/api/sync/runs/{run}")["run"]
        if r["status"] not in ("queued", "running"):
            break
        time.sleep(0.002)
    committed = datetime.datetime.fromisoformat(r["finished_at"]).replace(tzinfo=datetime.timezone.utc).timestamp()
    while hash_of(a) == old or hash_of(b) == old:
        time.sleep(0.002)
    lat.append(time.time() - committed)
lat.sort()
print(f"sync commit -> new version served by both API processes: median {lat[2]*1000:.0f} ms, max {lat[-1]*1000:.0f} ms (5 syncs)")
PY

# (3) PULLS concurrent downloads of the big table
read -r size url < <(api "$A" GET /api/sync/manifest | python3 -c 'import json,sys; t=json.load(sys.stdin)["tables"]["big"]; print(t["size_bytes"], t["signed_url"])')
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
measure() {  # measure <label> <curl args...>
  local label="$1"; shift
  local a0 g0 t0 t1 a1 g1
  a0=$(ticks "$api_a"); g0=$(ticks "$garage_pid"); t0=$(date +%s.%N)
  seq "$PULLS" | xargs -P "$PULLS" -I{} curl -sf -o /dev/null "$@"
  t1=$(date +%s.%N); a1=$(ticks "$api_a"); g1=$(ticks "$garage_pid")
  awk -v l="$label" -v n="$PULLS" -v s="$size" -v t0="$t0" -v t1="$t1" -v a=$((a1 - a0)) -v g=$((g1 - g0)) -v hz="$hz" \
    'BEGIN { printf "%s: %d x %.0f MB in %.1f s (%.0f MB/s); API process CPU %.1f s, Garage CPU %.1f s\n", l, n, s/1e6, t1-t0, n*s/(t1-t0)/1e6, a/hz, g/hz }'
}
measure "presigned URLs (Garage)" "$url"
measure "the API's download      " -H "Authorization: Bearer $ADMIN" "$A/api/data/big/download"
