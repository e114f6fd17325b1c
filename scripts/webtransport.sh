#!/usr/bin/env bash
# WebTransport (API.md v1.2) beside WebSocket, measured with `pushwire bench`, each run on a
# freshly started release server on a free port, its CPU and memory read from /proc
# (--server-pid); printed as the Markdown of docs/benchmarks.md's "webtransport" block:
#   1. side by side: one run, one publish stream, FAN_CLIENTS WebTransport and FAN_CLIENTS
#      WebSocket subscribers × FAN_RATE msg/s × 100 B for FAN_DURATION: latency, nothing
#      missing, bytes per delivery on the wire;
#   2. CPU: the same load on one transport per run (the server's CPU time is not split by
#      transport), REPEAT alternating runs of each: deliveries per server CPU-second, medians;
#   3. idle memory: server RSS per idle session, IDLE_CLIENTS of one transport per run
#      ((RSS with all connected − RSS before) / N), pushwire and the Node reference, which has
#      no WebTransport: the bench reports that transport n/a there, as it does here;
#   4. browser: how long pushwire.js takes in headless Chromium from its start to being live
#      (welcome and subscribed) on WebTransport, on WebSocket alone, and with UDP blocked by the
#      lab (its deadline, then WebSocket): ROUNDS fresh pages each, the test harness's server
#      in a release build (tests/browser/webtransport.rs, measure_time_to_live_per_ladder).
# Uncompressed (100 B messages are below pushwire's compression threshold anyway). Each run also
# counts the UDP datagrams the kernel dropped for a full socket receive buffer (/proc/net/snmp
# RcvbufErrors, machine-wide): QUIC recovers them, at the cost of latency.
#
#   scripts/webtransport.sh                      # about 3 minutes on 2 cores (REPEAT=1: 2),
#                                                # and the first time the tests' release build
#   PARTS=idle IDLE_CLIENTS=5000 scripts/webtransport.sh
set -euo pipefail
cd "$(dirname "$0")/.."

FAN_CLIENTS=${FAN_CLIENTS:-1000}
FAN_RATE=${FAN_RATE:-100}
FAN_DURATION=${FAN_DURATION:-10s}
IDLE_CLIENTS=${IDLE_CLIENTS:-3000}
REPEAT=${REPEAT:-3}
PARTS=${PARTS:-side cpu idle browser}
ROUNDS=${ROUNDS:-20}
REFERENCE=${REFERENCE:-../shared/reference-node}

NAME=webtransport.sh
cargo build --release --quiet --package pushwire --package pushwire-bench
BIN=target/release/pushwire
. scripts/reference.sh

# UDP datagrams the kernel dropped so far for want of room in a socket's receive buffer
# (every socket of the machine: the server's and the bench's).
udp_drops() { awk '/^Udp:/ { if (n++) print $6 }' /proc/net/snmp; }

# measure SERVER "BENCH FLAGS" [pushwire flags...] -> JSON file path on stdout; the UDP
# drops during the run go to the same path + .udp
measure() {
  local which=$1 flags=$2 port out drops
  shift 2
  port=$(free_port)
  out=$(mktemp --suffix .json)
  start "$which" "$port" --max-connections $((2 * FAN_CLIENTS + IDLE_CLIENTS + 500)) "$@"
  drops=$(udp_drops)
  # shellcheck disable=SC2086 # the flags are words
  "$BIN" bench --url "http://127.0.0.1:$port" --server-pid "$server" --no-progress --json "$out" \
    --compression off $flags >/dev/null
  echo $(($(udp_drops) - drops)) >"$out.udp"
  kill "$server"; wait "$server" 2>/dev/null || true
  echo "$out"
}

echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem/{print $2}') GiB,"
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the start; $(date -u +%F); node $(node --version); pushwire $(git describe --always --dirty)"
echo

fan="--clients $FAN_CLIENTS --rate $FAN_RATE --duration $FAN_DURATION --payload 100"

if [[ " $PARTS " == *" side "* ]]; then
  echo "### Side by side: $FAN_CLIENTS WebTransport and $FAN_CLIENTS WebSocket subscribers in one run × $FAN_RATE msg/s × 100 B for $FAN_DURATION"
  echo
  f=$(measure pushwire "--transports webtransport,ws $fan")
  python3 - "$f" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("| transport | connected | deliveries | missing | dup | p50 ms | p99 ms | p99.9 ms | max ms | "
      "client wire B per delivery (both ways) | server sent B per delivery |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for t in d["transports"]:
    l = t["latency_us"]
    print(f"| {t['transport']} | {t['connected']}/{t['clients']} | {t['deliveries']} | {t['missing']} | {t['duplicates']} | "
          f"{l['p50'] / 1000:.1f} | {l['p99'] / 1000:.1f} | {l['p999'] / 1000:.1f} | {l['max'] / 1000:.1f} | "
          f"{t['wire_bytes_per_delivery']:.0f} | {t['server_bytes_sent_per_delivery']:.0f} |")
u = d["server_usage"]
print()
drops = open(sys.argv[1] + ".udp").read().strip()
print(f"Published {d['published']} in {d['publish_seconds']:.1f} s. Server: {u['cpu_seconds']:.2f} s CPU for "
      f"{u['deliveries']} deliveries of both transports, {u['deliveries_per_cpu_second']:.0f} per CPU-second; "
      f"RSS {u['rss_peak_bytes'] / 2**20:.0f} MiB at its peak. UDP datagrams dropped by the kernel for a full "
      f"receive buffer during the run: {drops}.")
PY
  echo
fi

if [[ " $PARTS " == *" cpu "* ]]; then
  echo "### Server CPU: the same load, one transport per run"
  echo
  echo "Each row: the median of $REPEAT alternating runs (by deliveries per CPU-second; missing and duplicates: all runs)."
  echo
  wts=() wss=()
  for _ in $(seq "$REPEAT"); do
    wts+=("$(measure pushwire "--transports webtransport $fan")")
    wss+=("$(measure pushwire "--transports ws $fan")")
  done
  python3 - "$REPEAT" "${wts[@]}" "${wss[@]}" <<'PY'
import json, sys
repeat, files = int(sys.argv[1]), sys.argv[2:]
runs = [json.load(open(f)) for f in files]
rate = lambda d: d["transports"][0]["deliveries"] / d["server_usage"]["cpu_seconds"]
drops = lambda d: sum(int(open(f + ".udp").read()) for f, r in zip(files, runs) if r is d)
print("| transport | deliveries | missing | dup | p50 ms | p99 ms | server CPU s (user + kernel) | "
      "server CPU µs per delivery | deliveries per CPU-second | server sent B per delivery | UDP drops |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for group in (runs[:repeat], runs[repeat:]):
    d = sorted(group, key=rate)[len(group) // 2]
    t, u = d["transports"][0], d["server_usage"]
    missing = sum(r["transports"][0]["missing"] for r in group)
    dup = sum(r["transports"][0]["duplicates"] for r in group)
    print(f"| {t['transport']} | {t['deliveries']} | {missing} | {dup} | {t['latency_us']['p50'] / 1000:.1f} | "
          f"{t['latency_us']['p99'] / 1000:.1f} | {u['cpu_seconds']:.2f} ({u['user_seconds']:.2f} + {u['system_seconds']:.2f}) | "
          f"{t['server_cpu_us_per_delivery']:.2f} | {rate(d):.0f} | {t['server_bytes_sent_per_delivery']:.0f} | {drops(d)} |")
PY
  echo
fi

if [[ " $PARTS " == *" idle "* ]]; then
  echo "### Idle memory: server RSS per session, $IDLE_CLIENTS sessions of one transport per run"
  echo
  files=()
  for which in pushwire node; do
    for t in webtransport ws; do
      files+=("$(measure "$which" "--transports $t --clients $IDLE_CLIENTS --rate 1 --duration 2s")")
    done
  done
  python3 - "${files[@]}" <<'PY'
import json, sys
runs = [json.load(open(f)) for f in sys.argv[1:]]
def cell(d):
    t, u = d["transports"][0], d["server_usage"]
    if t["unavailable"]:
        return "n/a: " + t["unavailable"]
    return f"{u['rss_per_connection_bytes'] / 1024:.1f} KiB ({t['connected']} connected)"
print("| transport | pushwire | Node reference |")
print("|---|---:|---|")
for i, name in enumerate(["webtransport", "websocket"]):
    print(f"| {name} | {cell(runs[i])} | {cell(runs[2 + i])} |")
PY
  echo
fi

if [[ " $PARTS " == *" browser "* ]]; then
  echo "### Time to live in Chromium: pushwire.js from its start to welcome and subscribed"
  echo
  echo "Headless Chromium $(chromium --version 2>/dev/null | awk '{print $2}'), page and server on 127.0.0.1, $ROUNDS fresh pages per ladder."
  echo
  ROUNDS=$ROUNDS cargo test --release --quiet --test browser measure_time_to_live_per_ladder -- --ignored --nocapture 2>/dev/null |
    grep '^|'
  echo
fi
