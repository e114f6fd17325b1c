#!/bin/sh
# Publish and pub/sub throughput of one Redis and of a 3-shard Redis Cluster,
# with pushwire's own publish script, on private redis-servers on free ports.
# Figures for docs/scaling.md. Usage: scripts/scaling-bench.sh [requests]
set -eu
N=${1:-200000}
DIR=$(mktemp -d /tmp/pushwire-scaling.XXXXXX)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
# The final "N requests per second" line of a quiet redis-benchmark run.
rate() { tr '\r' '\n' | grep 'requests per second' | sed 's/^.*: \([0-9.]* requests per second\).*/  \1/'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() { # port [cluster bus port]
    mkdir -p "$DIR/$1"
    if [ $# -gt 1 ]; then extra="--cluster-enabled yes --cluster-port $2"; else extra=""; fi
    # shellcheck disable=SC2086
    redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR/$1" --daemonize no \
        --loglevel warning $extra >/dev/null 2>&1 &
    PIDS="$PIDS $!"
    until redis-cli -p "$1" ping >/dev/null 2>&1; do sleep 0.05; done
}
SCRIPT="$(cat src/hub/redis/shared.lua src/hub/redis/publish.lua)"
DATA='{"text":"a-notification-of-about-a-hundred-bytes-as-the-benchmarks-publish-it","n":1}'
# ARGV of publish.lua: channel, data, history size, max age (µs), candidate epoch,
# live channel, history TTL, meta TTL, idempotency TTL (ms), mode.
args() { echo "c $DATA 1000 600000000 bench0epoch $1 600000 1200000 300000 $2"; }

echo "== one Redis"
P=$(free_port); start "$P"
SHA=$(redis-cli -p "$P" script load "$SCRIPT")
echo "publish.lua (EVALSHA):"; redis-benchmark -p "$P" -q -n "$N" -c 50 -P 16 -r 10000 EVALSHA "$SHA" 3 \
    pw:ch:c__rand_int__:meta pw:ch:c__rand_int__:frames pw:epoch $(args pw:live:c single) | rate
echo "PUBLISH, no subscriber:"
redis-benchmark -p "$P" -q -n "$N" -c 50 -P 16 PUBLISH pw:live:c "$DATA" | rate
# One subscriber (an instance's link) on the channel: each publish is also a delivery.
redis-cli -p "$P" subscribe pw:live:c >/dev/null & PIDS="$PIDS $!"
until [ "$(redis-cli -p "$P" pubsub numsub pw:live:c | tail -1)" = 1 ]; do sleep 0.05; done
echo "PUBLISH, one subscriber (deliveries per second = publishes):"
redis-benchmark -p "$P" -q -n "$N" -c 50 -P 16 PUBLISH pw:live:c "$DATA" | rate

echo "== Redis Cluster, 3 primaries (no replicas)"
PORTS=""; for i in 1 2 3; do p=$(free_port); b=$(free_port); start "$p" "$b"; PORTS="$PORTS 127.0.0.1:$p"; done
# shellcheck disable=SC2086
redis-cli --cluster create $PORTS --cluster-yes >/dev/null
FIRST=$(echo "$PORTS" | awk '{print $1}' | cut -d: -f2)
until redis-cli -p "$FIRST" cluster info | grep -q cluster_state:ok; do sleep 0.05; done
for hp in $PORTS; do redis-cli -p "${hp#*:}" script load "$SCRIPT" >/dev/null; done
echo "publish.lua (EVALSHA):"; redis-benchmark --cluster -p "$FIRST" -q -n "$N" -c 50 -P 16 EVALSHA "$SHA" 3 \
    'pw:ch:{tag}:meta' 'pw:ch:{tag}:frames' 'pw:ch:{tag}:epoch' $(args 'pw:live:{tag}' cluster) | rate
echo "SPUBLISH, no subscriber:"
redis-benchmark --cluster -p "$FIRST" -q -n "$N" -c 50 -P 16 SPUBLISH 'pw:live:{tag}' "$DATA" | rate
