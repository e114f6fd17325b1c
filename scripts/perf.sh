#!/usr/bin/env bash
# The performance issue's figures, pushwire beside the Node reference (../shared/reference-node,
# untuned), each from a freshly started server on a free port, printed as the Markdown tables of
# docs/benchmarks.md:
#   1. idle memory: server RSS per idle WebSocket, SSE stream and held long poll (`pushwire bench`
#      with --server-pid: (RSS with N connected − RSS before) / N), at IDLE_CLIENTS connections;
#      IDLE_TRANSPORTS="ws webtransport" adds WebTransport sessions (n/a on the Node reference);
#   2. fan-out: FAN_CLIENTS subscribers of one transport × FAN_RATE msg/s × 100 B for FAN_DURATION:
#      deliveries per server CPU-second, latency, nothing missing; REPEAT alternating runs of
#      each server, medians and the range of the ratio;
#   2b. batching: the same fan-out with pushwire's --write-delay at each of WRITE_DELAYS;
#   3. overload: OVERLOAD_CLIENTS WebSocket subscribers × FAN_RATE msg/s, more than 2 cores write:
#      whether the publisher keeps its rate and latency stays bounded;
#   4. churn: examples/churn.rs against a one-worker server, CHURN_CYCLES × 10,000 WebSockets.
#
#   scripts/perf.sh                       # everything, about 20 minutes (REPEAT=1: 9)
#   IDLE_CLIENTS=19000 PARTS=idle scripts/perf.sh
#   PARTS=fanout TRANSPORTS=sse scripts/perf.sh
#   PARTS=idle IDLE_TRANSPORTS="ws webtransport" IDLE_CLIENTS=3000 scripts/perf.sh
set -euo pipefail
cd "$(dirname "$0")/.."

IDLE_CLIENTS=${IDLE_CLIENTS:-5000}
FAN_CLIENTS=${FAN_CLIENTS:-1000}
FAN_RATE=${FAN_RATE:-100}
FAN_DURATION=${FAN_DURATION:-10s}
CHURN_CYCLES=${CHURN_CYCLES:-10}
OVERLOAD_CLIENTS=${OVERLOAD_CLIENTS:-5000}
WRITE_DELAYS=${WRITE_DELAYS:-10ms 25ms}
REPEAT=${REPEAT:-3}
COMPRESSION=${COMPRESSION:-off}
PARTS=${PARTS:-idle fanout batching overload churn}
TRANSPORTS=${TRANSPORTS:-ws sse long-poll}
# The idle part also takes webtransport (API.md v1.2; n/a on the Node reference).
IDLE_TRANSPORTS=${IDLE_TRANSPORTS:-$TRANSPORTS}
REFERENCE=${REFERENCE:-../shared/reference-node}

NAME=perf.sh
cargo build --release --quiet
cargo build --release --quiet --package pushwire-bench --example churn
BIN=target/release/pushwire
. scripts/reference.sh

# measure SERVER TRANSPORT CLIENTS RATE DURATION [pushwire flags...] -> JSON file path on stdout
measure() {
  local which=$1 transport=$2 clients=$3 rate=$4 duration=$5 port out
  shift 5
  if [ "$clients" -ge 10000 ]; then
    # Tens of thousands of closed loopback connections sit in TIME_WAIT for a minute,
    # holding the source ports the next run of this size needs.
    for _ in $(seq 90); do [ "$(ss -tan state time-wait | wc -l)" -lt 2000 ] && break; sleep 1; done
  fi
  port=$(free_port)
  out=$(mktemp --suffix .json)
  start "$which" "$port" --max-connections $((clients + 500)) "$@"
  # Uncompressed by default, as these figures were first taken (the Node
  # reference compresses nothing without V12=1); COMPRESSION=on measures what a
  # browser's offer costs.
  "$BIN" bench --url "http://127.0.0.1:$port" --transports "$transport" --clients "$clients" --rate "$rate" \
    --duration "$duration" --server-pid "$server" --no-progress --json "$out" --compression "$COMPRESSION" >/dev/null
  kill "$server"; wait "$server" 2>/dev/null || true
  echo "$out"
}

field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem/{print $2}') GiB,"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the start; $(date -u +%F); node $(node --version); pushwire $(git describe --always --dirty)"
echo

if [[ " $PARTS " == *" idle "* ]]; then
  echo "### Idle memory: server RSS per connection, $IDLE_CLIENTS connections"
  echo
  echo "| transport | pushwire | Node reference | ratio |"
  echo "|---|---:|---:|---:|"
  for t in $IDLE_TRANSPORTS; do
    p=$(measure pushwire "$t" "$IDLE_CLIENTS" 1 2s); n=$(measure node "$t" "$IDLE_CLIENTS" 1 2s)
    # The Node reference has no WebTransport: the bench reports that transport unavailable there.
    python3 - "$t" "$p" "$n" <<'PY'
import json, sys
t, ours, node = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
kib = lambda d: None if d["transports"][0]["unavailable"] else d["server_usage"]["rss_per_connection_bytes"] / 1024
p, n = kib(ours), kib(node)
cell = lambda k: "n/a" if k is None else f"{k:.1f} KiB"
print(f"| {t} | {cell(p)} | {cell(n)} | {'—' if p is None or n is None else f'{p / n:.2f}×'} |")
PY
  done
  echo
fi

# fan_compare TRANSPORT LABEL [pushwire flags...]: REPEAT alternating runs of Node and of
# pushwire (with the flags) under the same fan-out load. Prints each server's median run (by
# deliveries per CPU-second), the missing and duplicate counts of all runs, and the ratio of
# deliveries per CPU-second taken pair by pair: the median, and the range over the pairs.
# One run's ratio moves by ±0.2 on this kind of machine; pairs side by side share its mood.
fan_compare() {
  local t=$1 label=$2 nodes=() ours=()
  shift 2
  for _ in $(seq "$REPEAT"); do
    nodes+=("$(measure node "$t" "$FAN_CLIENTS" "$FAN_RATE" "$FAN_DURATION")")
    ours+=("$(measure pushwire "$t" "$FAN_CLIENTS" "$FAN_RATE" "$FAN_DURATION" "$@")")
  done
  python3 - "$label" "${nodes[@]}" "${ours[@]}" <<'PY'
import json, statistics, sys
label, files = sys.argv[1], sys.argv[2:]
runs = [json.load(open(f)) for f in files]
nodes, ours = runs[: len(runs) // 2], runs[len(runs) // 2 :]
rate = lambda d: d["transports"][0]["deliveries"] / d["server_usage"]["cpu_seconds"]
def median_run(group):
    return sorted(group, key=rate)[len(group) // 2]
def row(name, group, ratio):
    d = median_run(group); t = d["transports"][0]; u = d["server_usage"]
    missing = sum(r["transports"][0]["missing"] for r in group)
    dup = sum(r["transports"][0]["duplicates"] for r in group)
    print(f"| {t['transport']} | {name} | {t['deliveries']} | {missing} | {dup} | "
          f"{t['latency_us']['p50'] / 1000:.1f} | {t['latency_us']['p99'] / 1000:.1f} | {t['requests_per_delivery']:.2f} | "
          f"{u['cpu_seconds']:.2f} ({u['user_seconds']:.2f} + {u['system_seconds']:.2f}) | "
          f"{rate(d):.0f} | {ratio} |")
ratios = sorted(rate(o) / rate(n) for n, o in zip(nodes, ours))
row("node", nodes, "—")
row(label, ours, f"{statistics.median(ratios):.2f}× ({ratios[0]:.2f}–{ratios[-1]:.2f})")
PY
}

fan_header() {
  echo "Each pair of rows: the median of $REPEAT alternating runs of each server (missing and duplicates: all runs)."
  echo
  echo "| transport | server | deliveries | missing | dup | p50 ms | p99 ms | requests per delivery | server CPU s (user + kernel) | deliveries per CPU-second | vs Node: median (range) |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
}

if [[ " $PARTS " == *" fanout "* ]]; then
  echo "### Fan-out: $FAN_CLIENTS subscribers × $FAN_RATE msg/s × 100 B for $FAN_DURATION, one transport per run"
  echo
  fan_header
  for t in $TRANSPORTS; do fan_compare "$t" pushwire; done
  echo
fi

if [[ " $PARTS " == *" batching "* ]]; then
  echo "### Fan-out with \`--write-delay\`: the same load, latency traded for fewer writes"
  echo
  fan_header
  for t in $TRANSPORTS; do
    for delay in $WRITE_DELAYS; do fan_compare "$t" "pushwire --write-delay $delay" --write-delay "$delay"; done
  done
  echo
fi

if [[ " $PARTS " == *" overload "* ]]; then
  echo "### Overload: $OVERLOAD_CLIENTS WebSocket subscribers × $FAN_RATE msg/s × 100 B for $FAN_DURATION"
  echo
  echo "| server | published | publish due → answered p50 / p99 | deliveries | missing | receive p50 / p99 | server CPU s | deliveries per CPU-second |"
  echo "|---|---|---|---:|---:|---|---:|---:|"
  for which in pushwire node; do
    f=$(measure "$which" ws "$OVERLOAD_CLIENTS" "$FAN_RATE" "$FAN_DURATION")
    field "$f" "'| $which | %d in %.1f s (%.0f/s, %d connections) | %.0f ms / %.0f ms | %d | %d | %.0f ms / %.0f ms | %.1f | %.0fk |' % (d['published'], d['publish_seconds'], d['published']/d['publish_seconds'], d['publish_connections'], d['publish_delay_us']['p50']/1000, d['publish_delay_us']['p99']/1000, d['transports'][0]['deliveries'], d['transports'][0]['missing'], d['transports'][0]['latency_us']['p50']/1000, d['transports'][0]['latency_us']['p99']/1000, d['server_usage']['cpu_seconds'], d['transports'][0]['deliveries']/d['server_usage']['cpu_seconds']/1000)"
  done
  echo
fi

if [[ " $PARTS " == *" churn "* ]]; then
  echo "### Churn: $CHURN_CYCLES × 10,000 WebSocket connects and drops, server on one worker"
  echo
  port=$(free_port)
  start pushwire "$port" --workers 1
  echo '```'
  target/release/examples/churn "http://127.0.0.1:$port" "$server" 10000 "$CHURN_CYCLES"
  echo '```'
fi
