#!/usr/bin/env bash
# Rooms benchmark (functions/host/benches/rooms.rs): relay throughput per core through one room
# and across 1,000 rooms, relay latency, and memory per idle connection with 10,000 clients,
# beside a bare tokio WebSocket echo server. Not part of the test suites.
#
# Runs inside a network namespace of its own with nothing but loopback, so no packet can leave
# the machine. Needs root (unshare) and about a minute; 10,000 clients need a descriptor limit
# above 10,000 per process.
set -euo pipefail
cd "$(dirname "$0")/../../.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

if [ "${BEDSIDE_BENCH_NETNS:-}" != 1 ]; then
  cargo bench -p bedside-host --bench rooms --no-run
  exec env BEDSIDE_BENCH_NETNS=1 unshare --net bash "$0" "$@"
fi

ip link set lo up
others="$(ip -o link show | awk -F': ' '{print $2}' | grep -v '^lo$' || true)"
if [ -n "$others" ]; then
  echo "refusing to run: interfaces other than lo are present: $others" >&2
  exit 1
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt 10100 ]; then
  echo "the descriptor limit ($(ulimit -n)) is too low for 10,000 clients" >&2
  exit 1
fi
BEDSIDE_LOG="${BEDSIDE_LOG:-warn}" timeout 900 cargo bench -p bedside-host --bench rooms -q
