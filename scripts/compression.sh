#!/usr/bin/env bash
# API.md v1.2's compression and MessagePack, measured: pushwire beside the Node reference
# (../shared/reference-node started with V12=1: ws permessage-deflate, gzip, @msgpack/msgpack),
# each from a freshly started server on a free port, printed as the Markdown of
# docs/benchmarks.md's "compression and encoding" block:
#   1. compress once: FAN_CLIENTS WebSocket subscribers × FAN_RATE msg/s × 1 KB of repetitive
#      JSON for FAN_DURATION, every subscriber negotiating permessage-deflate: Node V12,
#      pushwire, and pushwire --ws-compression off; deliveries per server CPU-second, latency,
#      bytes per delivery; REPEAT alternating runs of each, medians;
#   2. bytes per delivery with compression and without, per transport, for 1 KB of repetitive
#      and of random (incompressible) JSON;
#   3. MessagePack against JSON, per transport, at 100 B and 1 KB (uncompressed bytes).
# Parts 2 and 3 come from one `pushwire bench --compression on,off --encoding json,msgpack`
# run per server and payload (MIX_CLIENTS per transport × MIX_RATE msg/s for MIX_DURATION);
# pushwire's 1 KB repetitive one also draws docs/bench/compression.svg.
#
#   scripts/compression.sh                          # about 9 minutes (REPEAT=1: 5)
#   PARTS=bytes MIX_DURATION=3s scripts/compression.sh
set -euo pipefail
cd "$(dirname "$0")/.."

FAN_CLIENTS=${FAN_CLIENTS:-1000}
FAN_RATE=${FAN_RATE:-100}
FAN_DURATION=${FAN_DURATION:-10s}
MIX_CLIENTS=${MIX_CLIENTS:-50}
MIX_RATE=${MIX_RATE:-20}
MIX_DURATION=${MIX_DURATION:-5s}
REPEAT=${REPEAT:-3}
PARTS=${PARTS:-once bytes}
REFERENCE=${REFERENCE:-../shared/reference-node}
OUT=${OUT:-docs/bench}

NAME=compression.sh
cargo build --release --quiet
BIN=target/release/pushwire
# The reference with its v1.2 compression and MessagePack on.
REFERENCE_ENV="V12=1"
. scripts/reference.sh
mkdir -p "$OUT"

# measure SERVER "BENCH FLAGS" [pushwire flags...] -> JSON file path on stdout
measure() {
  local which=$1 flags=$2 port out
  shift 2
  port=$(free_port)
  out=$(mktemp --suffix .json)
  start "$which" "$port" --max-connections 5000 "$@"
  # shellcheck disable=SC2086 # the flags are words
  "$BIN" bench --url "http://127.0.0.1:$port" --server-pid "$server" --no-progress --json "$out" $flags >/dev/null
  kill "$server"; wait "$server" 2>/dev/null || true
  echo "$out"
}

echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem/{print $2}') GiB,"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the start; $(date -u +%F); node $(node --version) (V12=1); pushwire $(git describe --always --dirty)"
echo

if [[ " $PARTS " == *" once "* ]]; then
  echo "### Compress once: $FAN_CLIENTS WebSocket subscribers × $FAN_RATE msg/s × 1 KB repetitive JSON for $FAN_DURATION, every one offering permessage-deflate"
  echo
  echo "Each row: the median of $REPEAT alternating runs (by deliveries per CPU-second; missing: all runs)."
  echo
  fan="--transports ws --clients $FAN_CLIENTS --rate $FAN_RATE --duration $FAN_DURATION --payload 1024 --payload-kind repetitive --compression on"
  nodes=() ours=() plain=()
  for _ in $(seq "$REPEAT"); do
    nodes+=("$(measure node "$fan")")
    ours+=("$(measure pushwire "$fan")")
    plain+=("$(measure pushwire "$fan" --ws-compression off)")
  done
  python3 - "$REPEAT" "${nodes[@]}" "${ours[@]}" "${plain[@]}" <<'PY'
import json, statistics, sys
repeat, files = int(sys.argv[1]), sys.argv[2:]
runs = [json.load(open(f)) for f in files]
groups = [("node V12", runs[:repeat]), ("pushwire", runs[repeat:2 * repeat]),
          ("pushwire --ws-compression off", runs[2 * repeat:])]
rate = lambda d: d["transports"][0]["deliveries"] / d["server_usage"]["cpu_seconds"]
node_rate = statistics.median(rate(d) for d in groups[0][1])
fmt = lambda v, f: "n/a" if v is None else f.format(v)
print("| server | deliveries | missing | compressed messages | p50 ms | p99 ms | wire B per delivery | "
      "uncompressed B per delivery | server CPU s | deliveries per CPU-second | vs Node |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, group in groups:
    d = sorted(group, key=rate)[len(group) // 2]
    t, u = d["transports"][0], d["server_usage"]
    missing = sum(r["transports"][0]["missing"] for r in group)
    print(f"| {name} | {t['deliveries']} | {missing} | {t['compressed_messages']} | "
          f"{t['latency_us']['p50'] / 1000:.1f} | {t['latency_us']['p99'] / 1000:.1f} | "
          f"{fmt(t['server_bytes_sent_per_delivery'], '{:.0f}')} | "
          f"{fmt(t['server_bytes_sent_uncompressed_per_delivery'], '{:.0f}')} | "
          f"{u['cpu_seconds']:.2f} | {rate(d):.0f} | {rate(d) / node_rate:.2f}× |")
PY
  echo
fi

if [[ " $PARTS " == *" bytes "* ]]; then
  mix="--transports ws,sse,long-poll,poll --clients $MIX_CLIENTS --rate $MIX_RATE --duration $MIX_DURATION --compression on,off --encoding json,msgpack"
  files=()
  for which in pushwire node; do
    for payload in "1024 repetitive" "1024 random" "100 repetitive"; do
      set -- $payload
      svg=""
      if [ "$which $1 $2" = "pushwire 1024 repetitive" ]; then svg="--svg $OUT/compression.svg"; fi
      files+=("$which:$1:$2:$(measure "$which" "$mix --payload $1 --payload-kind $2 $svg")")
    done
  done
  python3 - "$MIX_CLIENTS" "$MIX_RATE" "$MIX_DURATION" "${files[@]}" <<'PY'
import json, sys
clients, rate, duration, entries = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
rows = {}  # (server, payload, kind, transport, compression, encoding) -> transport row
for entry in entries:
    server, payload, kind, path = entry.split(":", 3)
    for run in json.load(open(path))["runs"]:
        p = run["parameters"]
        for t in run["transports"]:
            rows[(server, payload, kind, t["transport"], p["compression"], p["encoding"])] = t
servers = ["pushwire", "node"]
transports = ["websocket", "sse", "long-poll", "poll"]
label = {"pushwire": "pushwire", "node": "node V12"}
def wire(t):
    if t is None: return None
    v = t["server_bytes_sent_per_delivery"]
    return v if v is not None else t["wire_bytes_received"] / max(t["deliveries"], 1)
def raw(t):
    return None if t is None else t["server_bytes_sent_uncompressed_per_delivery"]
cell = lambda v: "—" if v is None else f"{v:.0f}"
ratio = lambda a, b: "—" if a is None or b is None or b == 0 else f"{a / b:.2f}"

print(f"### Bytes per delivery, compressed and not: {clients} subscribers per transport × {rate} msg/s for {duration}, JSON")
print()
print("Server → client bytes per delivery, headers and framing included (the server's `/api/stats`); "
      "\"compressed\" is what clients that ask for compression (as browsers do) cost, \"raw JSON\" the same "
      "clients without it.")
print()
print("| payload | transport | server | raw JSON | compressed | compressed / raw |")
print("|---|---|---|---:|---:|---:|")
for payload, kind in [("1024", "repetitive"), ("1024", "random")]:
    for t in transports:
        for s in servers:
            on = rows.get((s, payload, kind, t, "on", "json"))
            off = rows.get((s, payload, kind, t, "off", "json"))
            print(f"| {payload} B {kind} | {t} | {label[s]} | {cell(wire(off))} | {cell(wire(on))} | {ratio(wire(on), wire(off))} |")
print()
print(f"### MessagePack against JSON: the same runs, uncompressed bytes per delivery")
print()
print("SSE is a text protocol: no MessagePack. With compression on, both shrink further (the chart).")
print()
print("| payload | transport | server | JSON | MessagePack | MessagePack / JSON |")
print("|---|---|---|---:|---:|---:|")
for payload in ["100", "1024"]:
    for t in ["websocket", "long-poll", "poll"]:
        for s in servers:
            js = rows.get((s, payload, "repetitive", t, "off", "json"))
            mp = rows.get((s, payload, "repetitive", t, "off", "msgpack"))
            print(f"| {payload} B repetitive | {t} | {label[s]} | {cell(wire(js))} | {cell(wire(mp))} | {ratio(wire(mp), wire(js))} |")
print()
print(f"![bytes per delivery, pushwire, 1 KB repetitive](bench/compression.svg)")
PY
fi
