#!/usr/bin/env bash
# Benchmark: rows/s of the csv component on a generated 1M-row CSV (7 columns:
# int, int, int, int, float, timestamp, text), through `agnes connector run`, end to end
# (compile cache warm, parquet + extract.duckdb written). Prints one line per repetition
# and the median.
#   bench/csv_1m.sh [ROWS] [REPS]
set -euo pipefail
# Measures speed, not trust: the built component runs unsigned (see docs/security.md).
export AGNES_ALLOW_UNSIGNED=1
cd "$(dirname "$0")/.."
ROWS="${1:-1000000}"; REPS="${2:-3}"
: "${CARGO_TARGET_DIR:=/var/tmp/agnes-target/host}"
AGNES="${AGNES:-$CARGO_TARGET_DIR/debug/agnes}"
CSV_WASM="${CSV_WASM:-$CARGO_TARGET_DIR/wasm/wasm32-wasip2/release/agnes_connector_csv.wasm}"
work="$(mktemp -d /var/tmp/agnes-bench.XXXXXX)"; trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data"
python3 - "$ROWS" "$work/data/orders.csv" <<'PY'
import sys, random
n, path = int(sys.argv[1]), sys.argv[2]
random.seed(1)
notes = ["", "gift wrap", "\"expedite, please\"", "call first"]
with open(path, "w") as f:
    f.write("order_id,customer_id,product_id,quantity,amount,ordered_at,note\n")
    for i in range(1, n + 1):
        f.write(f"{i},{random.randint(1,50000)},{random.randint(1,500)},{random.randint(1,12)},"
                f"{random.uniform(1,5000):.2f},2024-{random.randint(1,12):02d}-{random.randint(1,28):02d}T"
                f"{random.randint(0,23):02d}:{random.randint(0,59):02d}:00,{random.choice(notes)}\n")
PY
size=$(stat -c %s "$work/data/orders.csv")
printf '[config]\ndir = "/data"\n[[grant.dirs]]\nhost = "data"\nguest = "/data"\n' > "$work/source.toml"
"$AGNES" connector run "$CSV_WASM" --config "$work/source.toml" --out "$work/extracts/bench" -q   # warm the compile cache
times=()
for _ in $(seq "$REPS"); do
  t=$( { /usr/bin/time -f %e "$AGNES" connector run "$CSV_WASM" --config "$work/source.toml" --out "$work/extracts/bench" -q; } 2>&1 )
  times+=("$t")
  awk -v r="$ROWS" -v t="$t" -v s="$size" 'BEGIN { printf "run: %.2f s, %.0f rows/s, %.1f MB/s of CSV\n", t, r/t, s/t/1e6 }'
done
median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
awk -v r="$ROWS" -v t="$median" -v s="$size" 'BEGIN { printf "median: %.2f s, %.0f rows/s, %.1f MB/s (%d rows, %.1f MB CSV)\n", t, r/t, s/t/1e6, r, s/1e6 }'
