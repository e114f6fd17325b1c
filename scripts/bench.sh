#!/usr/bin/env bash
# Side-by-side figures: the same `pushwire bench` load against the Node reference
# (../shared/reference-node, untuned) and a release pushwire, one after the other on
# fresh servers, on this machine. Writes the JSON and SVG of each run to docs/bench/
# and prints both tables; docs/benchmarks-bench.md reads them. Clients ask for no
# compression (COMPRESSION=off): the untuned reference has none, and the comparison is of
# the v1.1 wire both speak; scripts/compression.sh measures compression.
#
#   scripts/bench.sh                      # 200 clients per transport, 100 msg/s, 100 B, 20 s
#   CLIENTS=50 DURATION=5s scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${CLIENTS:-200}
RATE=${RATE:-100}
PAYLOAD=${PAYLOAD:-100}
DURATION=${DURATION:-20s}
COMPRESSION=${COMPRESSION:-off}
TRANSPORTS=${TRANSPORTS:-ws,sse,long-poll,poll,webtransport}
REFERENCE=${REFERENCE:-../shared/reference-node}
OUT=${OUT:-docs/bench}

NAME=bench.sh
cargo build --release --quiet
mkdir -p "$OUT"
. scripts/reference.sh

run() { # name port pid
  # All five transports: against the Node reference, which has no WebTransport, its row is n/a.
  target/release/pushwire bench --url "http://127.0.0.1:$2" --transports "$TRANSPORTS" --clients "$CLIENTS" --rate "$RATE" \
    --payload "$PAYLOAD" --duration "$DURATION" --compression "$COMPRESSION" --server-pid "$3" --no-progress \
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
