#!/usr/bin/env bash
# `just bench` (full sizes) and `just bench-quick` (CI-sized): builds the release binaries,
# runs every benchmark, prints the results and writes them, with the date, the machine
# and the command, into docs/benchmarks.md between the `bench:begin`/`bench:end` markers.
#   scripts/bench.sh [full|quick]
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-full}"
: "${CARGO_TARGET_DIR:=/var/tmp/agnes-target/host}"
export CARGO_TARGET_DIR
case "$MODE" in
  quick) BENCH_ARGS=--quick; BIG_ROWS=1000000;  HTTP_RECORDS=200000;  WRK_SECS=5;  PG_ROWS=1000000;  SQL_FACTS=200000;  SCALE_TABLES=200;  OUT_ROWS=300000;  PULLS=20 ;;
  full)  BENCH_ARGS=;        BIG_ROWS=52000000; HTTP_RECORDS=1000000; WRK_SECS=10; PG_ROWS=10000000; SQL_FACTS=1000000; SCALE_TABLES=1000; OUT_ROWS=5200000; PULLS=200 ;;
  *) echo "usage: scripts/bench.sh [full|quick]" >&2; exit 2 ;;
esac

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release -p agnes
cargo build --release -p agnes-tests --example bench --example static_server --example http_json_1m --example postgres_bench --example sql_bench --example web_bench --example marketplace_bench
export AGNES="$CARGO_TARGET_DIR/release/agnes"
examples="$CARGO_TARGET_DIR/release/examples"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT

{
  echo "## Results ($MODE, $(date -u +%Y-%m-%d))"
  echo
  echo '```sh'
  echo "just bench$([ "$MODE" = quick ] && echo -quick)    # scripts/bench.sh $MODE"
  echo '```'
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')),"\
       "$(awk '/MemTotal/ { printf "%.0f GiB", $2/1048576 }' /proc/meminfo), $(uname -sr);"\
       "host built with $(rustc -V | cut -d' ' -f1-2) in the release profile, components with the wasm32-wasip2 toolchain (release)."
  echo
  "$examples/bench" $BENCH_ARGS
  echo "### 5. Server: manifest under 200 clients, download vs a static file server"
  echo
  echo '```'
  STATIC_SERVER="$examples/static_server" bench/server.sh "$BIG_ROWS" "$WRK_SECS"
  echo '```'
  echo
  echo "### 6. \`agnes pull\`: no-op with 101 tables, full pull of the big table, peak RSS"
  echo
  echo '```'
  bench/pull.sh "$BIG_ROWS"
  echo '```'
  echo
  echo "### 6b. Server at scale: $SCALE_TABLES tables, 1000 concurrent clients, no-op pull"
  echo
  echo '```'
  bench/scale.sh "$SCALE_TABLES" 1000 "$WRK_SECS"
  echo '```'
  echo
  echo "### 6c. Scale-out: two API processes and a worker on PostgreSQL + Garage"
  echo
  echo '```'
  bench/scale_out.sh 1000 "$WRK_SECS" "$OUT_ROWS" "$PULLS"
  echo '```'
  echo
  echo "### 7. http-json over loopback"
  echo
  echo '```'
  "$examples/http_json_1m" "$HTTP_RECORDS" 3
  echo '```'
  echo
  "$examples/postgres_bench" "$PG_ROWS" 3
  "$examples/sql_bench" "$SQL_FACTS" 100000 3
  "$examples/web_bench" 100 10 200
  "$examples/marketplace_bench" 200 20 3
} | tee "$out"

python3 - "$out" docs/benchmarks.md <<'PY'
import sys
new = open(sys.argv[1]).read().rstrip() + "\n"
path = sys.argv[2]
doc = open(path).read()
begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
if begin in doc and end in doc:
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc = head + begin + "\n" + new + end + tail
else:
    doc = doc.rstrip() + "\n\n" + begin + "\n" + new + end + "\n"
open(path, "w").write(doc)
print(f"wrote {path}")
PY
