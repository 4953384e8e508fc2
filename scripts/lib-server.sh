# Shared by scripts/demo.sh and bench/*.sh (source it): start `agnes serve` on a free
# loopback port with a fresh data dir and call the API.
#   start_server <agnes> <data dir> <log file>   sets AGNES_DATA_DIR, AGNES_LISTEN, base, ADMIN, server
#   api <token> <METHOD> <path> [curl args...]
#   wait_for_sync <token>
#   make_big_csv <rows> <path>   id,payload with 16 random bytes as hex per row (compresses poorly)

start_server() {
  local agnes="$1" dir="$2" log="$3" port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export AGNES_DATA_DIR="$dir" AGNES_LISTEN="127.0.0.1:$port"
  ADMIN=$("$agnes" admin bootstrap --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  "$agnes" serve 2>"$log" & server=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 100); do curl -sf "$base/api/health" >/dev/null && return 0; sleep 0.1; done
  echo "the server did not start; see $log" >&2
  return 1
}

api() {
  local token="$1" method="$2" path="$3"
  shift 3
  curl -sS -X "$method" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' "$base$path" "$@"
}

wait_for_sync() {
  while api "$1" GET /api/sync/status | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["running"] else 1)'; do
    sleep 0.1
  done
}

make_big_csv() {
  python3 - "$1" "$2" <<'PY'
import sys, os, binascii
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    f.write("id,payload\n")
    for i in range(n):
        f.write(f"{i},{binascii.hexlify(os.urandom(16)).decode()}\n")
PY
}
