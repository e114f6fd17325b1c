# Sourced by bench.sh, perf.sh, compression.sh and webtransport.sh: the Node reference in a scratch copy (its dependency is
# installed there, so nothing is written into shared/), free ports, servers waited for and
# stopped on exit. Expects REFERENCE (the reference's directory) and NAME (for messages).

command -v node >/dev/null || { echo "$NAME: node is needed for the reference server" >&2; exit 1; }
[ -d "$REFERENCE" ] || { echo "$NAME: no reference server at $REFERENCE" >&2; exit 1; }

scratch=$(mktemp -d)
cp -r "$REFERENCE"/. "$scratch"
(cd "$scratch" && npm install --silent --no-audit --no-fund >/dev/null)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$scratch"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return; sleep 0.1; done; echo "$NAME: server on $1 did not start" >&2; exit 1; }

# start SERVER PORT [pushwire flags...]: the Node reference (its environment plus
# $REFERENCE_ENV, e.g. V12=1) or pushwire ($BIN) on PORT; sets $server to its pid.
start() {
  local which=$1 port=$2; shift 2
  if [ "$which" = node ]; then
    # shellcheck disable=SC2086 # REFERENCE_ENV is words: NAME=value ...
    (cd "$scratch" && exec env ${REFERENCE_ENV:-} PORT="$port" node server.js >/dev/null 2>&1) &
  else
    "$BIN" --demo-rate 0 --bind "127.0.0.1:$port" "$@" >/dev/null 2>&1 &
  fi
  server=$!
  pids+=("$server")
  wait_up "$port"
}
