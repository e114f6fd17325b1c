#!/usr/bin/env bash
# Side-by-side figures: the same `pushwire bench` load against the Node reference
# (../shared/reference-node, untuned) and a release pushwire, one after the other on
# fresh servers, on this machine. Writes the JSON and SVG of each run to docs/bench/
# and prints both tables; docs/benchmarks-bench.md reads them.
#
#   scripts/bench.sh                      # 200 clients per transport, 100 msg/s, 100 B, 20 s
#   CLIENTS=50 DURATION=5s scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-200}
RATE=${RATE:-100}
PAYLOAD=${PAYLOAD:-100}
DURATION=${DURATION:-20s}
REFERENCE=${REFERENCE:-../shared/reference-node}
OUT=${OUT:-docs/bench}

command -v node >/dev/null || { echo "bench.sh: node is needed for the reference server" >&2; exit 1; }
[ -d "$REFERENCE" ] || { echo "bench.sh: no reference server at $REFERENCE" >&2; exit 1; }
cargo build --release --quiet
mkdir -p "$OUT"

# The reference installs its dependency into a scratch copy, so nothing is written into shared/.
scratch=$(mktemp -d)
cp -r "$REFERENCE"/. "$scratch"
(cd "$scratch" && npm install --silent --no-audit --no-fund >/dev/null)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return; sleep 0.1; done; echo "bench.sh: server on $1 did not start" >&2; exit 1; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$scratch"; }
trap cleanup EXIT

run() { # name port pid
  target/release/pushwire bench --url "http://127.0.0.1:$2" --clients "$CLIENTS" --rate "$RATE" \
    --payload "$PAYLOAD" --duration "$DURATION" --server-pid "$3" --no-progress \
    --json "$OUT/$1.json" --svg "$OUT/$1.svg"
}

port=$(free_port)
(cd "$scratch" && PORT=$port exec node server.js >/dev/null 2>&1) &
pids+=($!)
wait_up "$port"
echo "== Node reference (pid ${pids[-1]})"
run node "$port" "${pids[-1]}"
kill "${pids[-1]}"

port=$(free_port)
target/release/pushwire --demo-rate 0 --bind "127.0.0.1:$port" >/dev/null 2>&1 &
pids+=($!)
wait_up "$port"
echo "== pushwire (pid ${pids[-1]})"
run pushwire "$port" "${pids[-1]}"
