#!/usr/bin/env bash
# Regenerates the figures of docs/benchmarks.md and docs/benchmarks-bench.md on this
# machine: every table between a pair of markers
#   <!-- scripts/benchmarks.sh: NAME -->  …  <!-- end NAME -->
# is replaced by what the script that makes it prints now; the prose around them is
# not touched (read it again against the new figures). About 45 minutes; run it on an
# otherwise idle machine, since the figures are CPU seconds and latencies.
#
#   scripts/benchmarks.sh             # everything
#   ONLY=perf scripts/benchmarks.sh   # one block
set -euo pipefail
cd "$(dirname "$0")/.."

ONLY=${ONLY:-}

# splice FILE NAME TEXT: replaces the block NAME of FILE with TEXT.
splice() {
  BLOCK="$3" python3 - "$1" "$2" <<'PY'
import os, re, sys
path, name = sys.argv[1], sys.argv[2]
text = open(path).read()
begin, end = f"<!-- scripts/benchmarks.sh: {name} -->", f"<!-- end {name} -->"
pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
if not pattern.search(text):
    sys.exit(f"benchmarks.sh: no block {name!r} in {path}")
body = os.environ["BLOCK"].strip()
text = pattern.sub(lambda _: f"{begin}\n\n{body}\n\n{end}", text)
open(path, "w").write(text)
PY
}

# block FILE NAME COMMAND...: runs COMMAND (unless ONLY names another block) into the block.
block() {
  local file=$1 name=$2; shift 2
  if [ -n "$ONLY" ] && [ "$ONLY" != "$name" ]; then return; fi
  echo "benchmarks.sh: $name ($*)" >&2
  local out
  out=$("$@" | tee "${TMPDIR:-/tmp}/benchmarks-$name.md")
  splice "$file" "$name" "$out"
}

# 19,000 connections first: the other runs leave tens of thousands of loopback ports in
# TIME_WAIT for a minute, and the 19,000 would not find enough free.
block docs/benchmarks.md perf-19000 env IDLE_CLIENTS=19000 PARTS=idle scripts/perf.sh
fenced() { echo '```'; "$@"; echo '```'; }
block docs/benchmarks-bench.md bench fenced scripts/bench.sh
block docs/benchmarks.md perf scripts/perf.sh
# Compression and encoding (API.md v1.2), against the Node reference with V12=1: about 9 minutes.
block docs/benchmarks.md compression scripts/compression.sh
# WebTransport beside WebSocket (API.md v1.2; the Node reference has none): about 3 minutes.
block docs/benchmarks.md webtransport scripts/webtransport.sh
echo "benchmarks.sh: done; git diff docs/ shows what changed" >&2
