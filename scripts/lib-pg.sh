# Shared by scripts/demo.sh (source it): a private PostgreSQL cluster on a free loopback
# port, run as the `postgres` user when we are root (PostgreSQL refuses root).
#   start_pg <dir>     initdb + start; sets PG_PORT, PG_DIR
#   psql_admin ...     psql as the superuser over TCP
#   stop_pg            stop it (by its pid)

start_pg() {
  PG_DIR="$1"
  local bin
  bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  local as=()
  if [ "$(id -u)" = 0 ]; then chown postgres: "$PG_DIR"; as=(runuser -u postgres --); fi
  "${as[@]}" "$bin/initdb" -D "$PG_DIR/data" -U postgres -A trust --no-sync -E UTF8 --locale=C >/dev/null
  cat >> "$PG_DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
fsync = off
CONF
  printf 'local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n' \
    > "$PG_DIR/data/pg_hba.conf"
  "${as[@]}" "$bin/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w start >/dev/null
}

psql_admin() {
  psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -q -v ON_ERROR_STOP=1 "$@"
}

stop_pg() {
  if [ -n "${PG_DIR:-}" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
    kill -QUIT "$(head -1 "$PG_DIR/data/postmaster.pid")" 2>/dev/null || true
  fi
}
