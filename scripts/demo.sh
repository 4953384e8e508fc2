#!/usr/bin/env bash
# The demo: a real WASM connector syncs the bundled dataset, the server serves it, an
# analyst with a grant pulls it into a local workspace and queries it (over REST and with
# the agnes CLI). Called by `just demo`.
#   scripts/demo.sh <agnes binary> <csv component> <postgres component> <plugin reviewer component>
set -euo pipefail
cd "$(dirname "$0")/.."
AGNES="$1"; CSV="$(realpath "$2")"; PG_WASM="$(realpath "$3")"; REVIEWER="$(realpath "$4")"
DATA_DIR=./agnes-data
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. sign the csv component with its connector.toml, verify it, sync examples/demo/data"
KEYS="$DATA_DIR/keys"; rm -rf "$KEYS"; mkdir -p "$KEYS/trusted"
"$AGNES" connector keygen "$KEYS/trusted/demo"
mv "$KEYS/trusted/demo.key" "$KEYS/demo.key"      # the secret stays with the signer
MANIFEST=connectors-wasm/csv/connector.toml
"$AGNES" connector sign "$CSV" --manifest "$MANIFEST" --key "$KEYS/demo.key"
"$AGNES" connector verify "$CSV" --manifest "$MANIFEST" --trusted-keys "$KEYS/trusted"
"$AGNES" connector run "$CSV" --config examples/demo/source.toml --out "$DATA_DIR/extracts/demo" \
  --manifest "$MANIFEST" --trusted-keys "$KEYS/trusted"
"$AGNES" extract show "$DATA_DIR/extracts/demo" -n 2

step "2. the server trusts the demo key: first admin, then serve on a free loopback port"
SERVER_DIR="$DATA_DIR/server"; rm -rf "$SERVER_DIR"
export AGNES_TRUSTED_KEYS="$(realpath "$KEYS/trusted")"
export AGNES_MARKETPLACE_FILE_URLS=1     # the demo's plugin marketplace is a local git repository
. scripts/lib-server.sh
start_server "$AGNES" "$SERVER_DIR" "$DATA_DIR/server.log"
trap 'kill $server 2>/dev/null || true' EXIT
pretty() { python3 -m json.tool; }

step "3. the admin uploads the signed connector, registers source 'demo' with every table it discovers, syncs"
export AGNES_SERVER="$base" AGNES_TOKEN="$ADMIN"     # the admin CLI speaks the same REST API
data="$(realpath examples/demo/data)"
"$AGNES" admin connector upload "$CSV" --manifest "$MANIFEST"
"$AGNES" admin connector diff csv@0.1.0          # what a security reviewer reads before approving
"$AGNES" admin connector approve csv@0.1.0
"$AGNES" admin source add demo --connector csv@0.1.0 --config '{"dir": "/data"}' \
  --grant "{\"dirs\": [{\"host\": \"$data\", \"guest\": \"/data\"}]}" --schedule 'every 1h' --all-tables
"$AGNES" admin source discover demo
"$AGNES" admin source sync demo --wait
"$AGNES" admin source list
"$AGNES" admin metrics import docs/metrics      # business metrics, each checked against the data

step "3b. a PostgreSQL warehouse: the server logs in, the postgres connector (world 0.2.0) gets a read-only session"
. scripts/lib-pg.sh
start_pg "$(mktemp -d /tmp/agnes-demo-pg.XXXXXX)"
trap 'kill $server 2>/dev/null || true; stop_pg' EXIT
PG_PASSWORD_FILE="$(realpath "$DATA_DIR")/pg_password"
head -c 18 /dev/urandom | base64 > "$PG_PASSWORD_FILE"; chmod 600 "$PG_PASSWORD_FILE"
psql_admin -d postgres -c "CREATE DATABASE warehouse" \
  -c "CREATE ROLE agnes_reader LOGIN PASSWORD '$(cat "$PG_PASSWORD_FILE")'"
psql_admin -d warehouse -c "
  CREATE TABLE shipments (shipment_id int PRIMARY KEY, order_id int NOT NULL, carrier text,
                          shipped_at timestamptz NOT NULL, weight_kg numeric(8,2), updated_at timestamptz NOT NULL);
  INSERT INTO shipments SELECT g, g, (ARRAY['DHL','UPS','PPL'])[g % 3 + 1],
         '2024-12-01'::timestamptz + g * interval '17 minutes', round((g % 97) * 0.37 + 0.5, 2), now()
    FROM generate_series(1, 2500) g;
  CREATE TABLE tracking_events (event_id int8 PRIMARY KEY, shipment_id int NOT NULL, status text NOT NULL,
                                happened_at timestamptz NOT NULL);
  INSERT INTO tracking_events SELECT g, g % 2500 + 1, (ARRAY['picked','in_transit','delivered','delayed'])[g % 4 + 1],
         '2024-12-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 200000) g;
  ANALYZE tracking_events;
  GRANT USAGE ON SCHEMA public TO agnes_reader; GRANT SELECT ON shipments, tracking_events TO agnes_reader;"
PG_MANIFEST=connectors-wasm/postgres/connector.toml
"$AGNES" connector sign "$PG_WASM" --manifest "$PG_MANIFEST" --key "$KEYS/demo.key"
"$AGNES" connector inspect "$PG_WASM" --manifest "$PG_MANIFEST" | head -n 8   # what a reviewer sees
"$AGNES" admin connector upload "$PG_WASM" --manifest "$PG_MANIFEST"
"$AGNES" admin connector approve postgres@0.2.0
"$AGNES" admin source add warehouse --connector postgres@0.2.0 --config '{"cursors": {"shipments": "updated_at"}}' \
  --grant "{\"databases\": {\"main\": {\"host\": \"127.0.0.1\", \"port\": $PG_PORT, \"database\": \"warehouse\",
           \"user\": \"agnes_reader\", \"password\": {\"file\": \"$PG_PASSWORD_FILE\"}, \"tls\": \"disable\", \"allow_private\": true}}}" \
  --table shipments
# too big to copy: stays at the source (queried there); and a table that is the admin's SQL
"$AGNES" admin table add warehouse tracking_events --query-mode remote
"$AGNES" admin table add warehouse delays_by_carrier --query-mode materialized \
  --options '{"sql": "SELECT s.carrier, count(*) AS delayed_events FROM tracking_events e JOIN shipments s USING (shipment_id) WHERE e.status = '\''delayed'\'' GROUP BY 1 ORDER BY 1"}'
"$AGNES" admin source sync warehouse --wait

step "3c. SQL over Agnes tables: a join of the CSV source and the PostgreSQL one, run by DataFusion in the sql component"
"$AGNES" admin source add derived --connector agnes:sql
"$AGNES" admin table add derived revenue_by_carrier --sql "SELECT s.carrier, count(*) AS orders, round(sum(o.amount), 2) AS revenue
  FROM orders o JOIN shipments s USING (order_id) GROUP BY 1 ORDER BY 1"
"$AGNES" admin source sync derived --wait

step "4. an analyst in group 'sales' gets 'orders', 'customers', the warehouse and derived tables, not 'products'"
"$AGNES" admin group add sales
for t in orders customers shipments tracking_events delays_by_carrier revenue_by_carrier; do "$AGNES" admin grant add sales --table "$t"; done
ANALYST=$("$AGNES" admin user add analyst --group sales --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
"$AGNES" admin grant list
unset AGNES_SERVER AGNES_TOKEN
api "$ANALYST" GET /api/sync/manifest | pretty

step "5. the analyst downloads orders (md5 = manifest hash) and queries"
api "$ANALYST" GET /api/data/orders/download -o "$DATA_DIR/orders.parquet"
echo "downloaded $(stat -c %s "$DATA_DIR/orders.parquet") bytes, md5 $(md5sum "$DATA_DIR/orders.parquet" | cut -d' ' -f1)"
api "$ANALYST" POST /api/query -d '{"sql": "SELECT c.region, count(*) AS orders, round(sum(o.amount), 2) AS revenue FROM orders o JOIN customers c USING (customer_id) GROUP BY 1 ORDER BY revenue DESC"}' | pretty
echo "and what is not granted is refused:"
api "$ANALYST" POST /api/query -d '{"sql": "SELECT * FROM products"}'; echo
api "$ANALYST" POST /api/query -d "{\"sql\": \"SELECT * FROM read_csv('/etc/passwd')\"}"; echo

step "6. the analyst's own rails: init a workspace, pull, discover, query locally"
export AGNES_CONFIG_DIR="$PWD/$DATA_DIR/analyst-config"
WS="$DATA_DIR/workspace"; rm -rf "$WS" "$AGNES_CONFIG_DIR"
"$AGNES" init --server "$base" --token "$ANALYST" --dir "$WS"
cd "$WS"
head -n 12 CLAUDE.md                        # the agent rails, written by init from /api/welcome
"$AGNES" pull
"$AGNES" pull            # nothing changed: nothing downloaded
"$AGNES" catalog
"$AGNES" describe orders -n 3
"$AGNES" catalog --metrics                 # the canonical metrics this analyst may read
"$AGNES" catalog --show revenue/total_revenue
"$AGNES" query "SELECT c.name, count(*) AS orders, round(sum(o.amount), 2) AS spent FROM orders o JOIN customers c USING (customer_id) GROUP BY 1 ORDER BY spent DESC LIMIT 5"
# a query with the metric's own SQL, on the local copy
"$AGNES" query "SELECT date_trunc('month', ordered_at) AS month, round(sum(amount), 2) AS revenue FROM orders GROUP BY 1 ORDER BY 1 DESC LIMIT 3"
# the PostgreSQL table beside the CSV ones
"$AGNES" query "SELECT s.carrier, count(*) AS shipments, round(sum(o.amount), 2) AS revenue FROM shipments s JOIN orders o USING (order_id) GROUP BY 1 ORDER BY 1"
"$AGNES" query "SELECT * FROM delays_by_carrier"          # materialized: the admin's SQL, pulled
"$AGNES" query "SELECT * FROM revenue_by_carrier"         # materialized across sources in the SQL sandbox
# the remote table was not pulled: ask the source (only matching rows of one column travel) ...
"$AGNES" query --remote "SELECT count(*) AS delayed FROM tracking_events WHERE status = 'delayed' AND happened_at >= TIMESTAMP '2025-01-01 00:00:00'"
# ... or cut a slice once and explore it locally
"$AGNES" snapshot create tracking_events --where "status = 'delayed'" --select event_id,shipment_id,happened_at --estimate
"$AGNES" snapshot create tracking_events --where "status = 'delayed'" --select event_id,shipment_id,happened_at
"$AGNES" query "SELECT date_trunc('week', happened_at) AS week, count(*) AS delayed FROM tracking_events GROUP BY 1 ORDER BY 1 LIMIT 3"
# what the SessionEnd hook would upload at the end of a Claude Code session here
"$AGNES" push --dry-run

step "6b. a Claude Code plugin marketplace: every plugin reviewed by a sandboxed reviewer component, served per group"
cd "$OLDPWD"                                # back from the workspace
MP="$DATA_DIR/marketplace-upstream"; rm -rf "$MP"; cp -r examples/demo/marketplace "$MP"
git -C "$MP" init -q -b main && git -C "$MP" add -A
git -C "$MP" -c user.name=demo -c user.email=demo@example.com commit -qm "team plugins"
REVIEWER_MANIFEST=hooks-wasm/plugin-reviewer/reviewer.toml
"$AGNES" connector sign "$REVIEWER" --manifest "$REVIEWER_MANIFEST" --key "$KEYS/demo.key"
export AGNES_SERVER="$base" AGNES_TOKEN="$ADMIN"
"$AGNES" admin reviewer upload "$REVIEWER" --manifest "$REVIEWER_MANIFEST"   # no network, no files: only the bundle
"$AGNES" admin marketplace add team --url "file://$(realpath "$MP")"
"$AGNES" admin marketplace plugins                 # the review queue: what is held, and why
"$AGNES" admin marketplace review team/quick-setup
"$AGNES" admin grant add sales --plugin 'team/*'
unset AGNES_SERVER AGNES_TOKEN
api "$ANALYST" GET /marketplace/info | pretty
# what Claude Code clones (`agnes init --register-marketplace` sets it up): only the approved plugins
rm -rf "$DATA_DIR/plugins"
git clone -q --depth 1 "http://analyst:$ANALYST@${base#http://}/marketplace.git" "$DATA_DIR/plugins"
(cd "$DATA_DIR/plugins" && git log --oneline && find . -path ./.git -prune -o -type f -print | sort)

step "7. the admin web UI (sign-in with a password; the REST API keeps using tokens)"
ADMIN_PASSWORD=$(AGNES_SERVER="$base" AGNES_TOKEN="$ADMIN" "$AGNES" admin user password admin --generate | tail -n 1)
curl -s -o /dev/null -w "GET /admin without a session: %{http_code} -> %header{location}\n" "$base/admin"
echo "Open the admin UI while a server runs on this data (it stops when this script ends):"
echo "  AGNES_DATA_DIR=$(realpath "$SERVER_DIR") AGNES_LISTEN=$AGNES_LISTEN AGNES_TRUSTED_KEYS=$AGNES_TRUSTED_KEYS AGNES_SQL_COMPONENT=$AGNES_SQL_COMPONENT AGNES_MARKETPLACE_FILE_URLS=1 $AGNES serve"
echo "  then $base/admin   user: admin   password (shown once): $ADMIN_PASSWORD"
