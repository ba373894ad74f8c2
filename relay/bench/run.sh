#!/usr/bin/env bash
# Side-by-side TURN relay benchmark: coturn (Debian), turn-rs (`turn-server` crate) and
# bedside-relay under identical turnutils_uclient loads, on one machine, in one go.
#
#   sudo relay/bench/run.sh            full ladder
#   sudo relay/bench/run.sh --quick    fewer, shorter steps
#   RELAYS="bedside" relay/bench/run.sh --quick   only some of the relays
#
# Every relay runs pinned to CPU 0 and the load (uclient, probe) to CPU 1, inside a network
# namespace that has nothing but loopback. The load is uclient in client-to-client mode (-y):
# each message crosses the relay twice (client -> allocation A -> allocation B -> client), so
# relayed packets = 2 x messages received. uclient paces every session with a timer, so load
# grows with the number of sessions, split over several uclient processes. For each relay:
#   - the highest offered load (relayed packets/s) on the ladder with under 0.5% loss,
#   - relayed packets/s measured there (busiest 2 s) and relayed packets per relay CPU-second in
#     the same window (from the process's utime + stime in /proc),
#   - p99 round trip of a probe (two allocations, ChannelData ping-pong) run during that load,
#   - RSS per 1,000 idle allocations (VmRSS before and while the probe holds 1,000),
# and each figure's ratio to the best of the other two. Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-relay}
tools="$CARGO_TARGET_DIR/bench-tools"

if [ "${BEDSIDE_IN_NETNS:-}" != 1 ]; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  [ "$(id -u)" = 0 ] || { echo "run as root (network namespace)"; exit 1; }
  [ "$(nproc)" -ge 2 ] || { echo "needs two CPUs"; exit 1; }
  for tool in turnserver turnutils_uclient taskset unshare ip; do
    command -v "$tool" >/dev/null || { echo "missing $tool (tests/install.d/30-coturn.sh)"; exit 1; }
  done
  cargo build --release -p bedside-relay --bin bedside-relay --example bench_probe --quiet
  if [ ! -x "$tools/bin/turn-server" ]; then
    # The UDP/TCP data plane only: the default features pull in gRPC and aws-lc.
    cargo install turn-server --version 4.1.5 --no-default-features --features udp,tcp \
      --root "$tools" --quiet
  fi
  exec unshare --net env BEDSIDE_IN_NETNS=1 bash "$0" "$@"
fi

ip link set lo up
others=$(ip -o link show | awk -F': ' '{print $2}' | grep -v '^lo$' || true)
[ -z "$others" ] || { echo "refusing to run: interfaces other than lo: $others"; exit 1; }
ulimit -n "$(ulimit -Hn)"

quick=0
[ "${1:-}" = "--quick" ] && quick=1
# Total uclient sessions per step, in uclient processes of at most 100 sessions each (uclient
# paces every session with its own timer, so load grows with sessions; turn-rs 4.1 stops
# relaying for one client process with more than about 100 sessions).
per_proc=100
# One core of uclient processes tops out near 800 sessions (about 40k relayed packets/s), so
# the ladder stops there; long sending phases keep session setup a small share of relay CPU.
if [ "$quick" = 1 ]; then
  ladder=(200 400)
  messages=600
else
  ladder=(100 200 400 600 800)
  messages=1500
fi
interval_ms=5    # per session: at most 200 messages/s
size=160         # bytes per message, like an audio frame with SRTP overhead

secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
work=$(mktemp -d)
relay_pid=
cleanup() {
  [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "${KEEP:-}" ]; then echo "logs kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
tck=$(getconf CLK_TCK)
probe="$CARGO_TARGET_DIR/release/examples/bench_probe"

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

start_relay() {
  local name=$1
  case "$name" in
    coturn)
      taskset -c 0 turnserver -n --listening-ip=127.0.0.1 --relay-ip=127.0.0.1 \
        --listening-port=3478 --min-port=50000 --max-port=59999 --realm=bedside.test \
        --use-auth-secret --static-auth-secret="$secret" --allow-loopback-peers \
        --no-tcp --no-tls --no-dtls --no-cli --relay-threads=0 --no-software-attribute \
        --simple-log --log-file=stdout >"$work/$name.log" 2>&1 &
      ;;
    turn-rs)
      cat >"$work/turn-rs.toml" <<EOF
[server]
port-range = "50000..59999"
max-threads = 1
realm = "bedside.test"
[[server.interfaces]]
transport = "udp"
listen = "127.0.0.1:3478"
external = "127.0.0.1:3478"
idle-timeout = 60
[log]
level = "error"
[auth]
static-auth-secret = "$secret"
EOF
      taskset -c 0 "$tools/bin/turn-server" --config "$work/turn-rs.toml" >"$work/$name.log" 2>&1 &
      ;;
    bedside)
      BEDSIDE_RELAY_SECRET=$secret BEDSIDE_RELAY_REALM=bedside.test \
        BEDSIDE_RELAY_LISTEN=udp://127.0.0.1:3478 BEDSIDE_RELAY_PORT_RANGE=50000-59999 \
        BEDSIDE_RELAY_ALLOW_PEERS=127.0.0.0/8 BEDSIDE_RELAY_MAX_ALLOCATIONS=100000 \
        BEDSIDE_RELAY_MAX_ALLOCATIONS_PER_USER=100000 BEDSIDE_RELAY_UNAUTHORIZED_PER_SEC=100000 \
        BEDSIDE_RELAY_LOG_LEVEL=warn BEDSIDE_RELAY_DRAIN_SECS=0 \
        taskset -c 0 "$CARGO_TARGET_DIR/release/bedside-relay" >"$work/$name.log" 2>&1 &
      ;;
  esac
  relay_pid=$!
  sleep 1
  kill -0 "$relay_pid" 2>/dev/null || { cat "$work/$name.log"; echo "$name did not start"; exit 1; }
}

stop_relay() {
  kill "$relay_pid" 2>/dev/null || true
  wait "$relay_pid" 2>/dev/null || true
  relay_pid=
  sleep 0.5
}

# One load step: starts the uclient processes and samples, every 0.5 s, the namespace's UDP
# datagram counter and the relay's CPU time. In client-to-client mode each message is received
# three times in the namespace (by the relay from the client, by the relay from its other
# allocation, by the client), two of them by the relay, so relayed = 2/3 of the datagrams.
# The step's figures come from its busiest 2-second window: relayed packets/s, relayed packets
# per relay CPU-second and CPU% there; loss comes from uclient's totals. Prints
# "offered relayed_pps pkts_per_cpu_s loss_percent cpu_percent".
udp_in() { awk '/^Udp:/ && $2 ~ /^[0-9]+$/ { print $2 }' /proc/net/snmp; }
load_step() {
  local sessions=$1 procs=$(( ($1 + per_proc - 1) / per_proc )) i
  local per=$(( $1 / procs ))
  local loads=()
  (
    while kill -0 "$relay_pid" 2>/dev/null; do
      echo "$(date +%s.%N) $(udp_in) $(cpu_ticks "$relay_pid")"
      sleep 0.5
    done
  ) >"$work/samples" 2>/dev/null &
  local sampler=$!
  for i in $(seq "$procs"); do
    timeout 300 taskset -c 1 turnutils_uclient -y -W "$secret" -u bench -m "$per" \
      -n "$messages" -l "$size" -z "$interval_ms" -c 127.0.0.1 >"$work/uclient-$i.log" 2>&1 &
    loads+=($!)
  done
  local prober=
  if [ "${2:-}" = probe ]; then
    local tries=0
    until grep -q 'Total connect time' "$work"/uclient-*.log 2>/dev/null || [ "$tries" -gt 600 ]; do
      sleep 0.1
      tries=$((tries + 1))
    done
    taskset -c 1 "$probe" rtt 127.0.0.1:3478 "$secret" 2000 400 >"$work/rtt.log" 2>&1 &
    prober=$!
  fi
  wait "${loads[@]}" || true
  [ -n "$prober" ] && { wait "$prober" || true; }
  kill "$sampler" 2>/dev/null || true
  wait "$sampler" 2>/dev/null || true
  local sent=0 recv=0 s r f
  for f in "$work"/uclient-*.log; do
    s=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\1/p' "$f" | tail -1)
    r=$(sed -n 's/.*start_mclient: tot_send_msgs=\([0-9]*\), tot_recv_msgs=\([0-9]*\).*/\2/p' "$f" | tail -1)
    sent=$((sent + ${s:-0}))
    recv=$((recv + ${r:-0}))
  done
  rm -f "$work"/uclient-*.log
  awk -v m="$sessions" -v z="$interval_ms" -v s="$sent" -v r="$recv" -v tck="$tck" '
    { t[NR] = $1; d[NR] = $2; c[NR] = $3 }
    END {
      best = 0; eff = 0; cpu = 0
      for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++) if (t[j] - t[i] >= 2) {
        rate = (d[j] - d[i]) * 2 / 3 / (t[j] - t[i])
        if (rate > best) {
          best = rate
          secs = (c[j] - c[i]) / tck
          eff = (secs > 0) ? (d[j] - d[i]) * 2 / 3 / secs : 0
          cpu = 100 * secs / (t[j] - t[i])
        }
        break
      }
      loss = (s > 0) ? 100 * (s - r) / s : 100
      printf "%d %.0f %.0f %.2f %.0f\n", 2 * m * 1000 / z, best, eff, loss, cpu
    }' "$work/samples"
}

results="$work/results"
: >"$results"
for name in ${RELAYS:-coturn turn-rs bedside}; do
  echo "== $name" >&2
  start_relay "$name"

  base=$(rss_kib "$relay_pid")
  taskset -c 1 "$probe" allocs 127.0.0.1:3478 "$secret" 1000 4 >"$work/allocs.log" 2>&1 &
  holder=$!
  for _ in $(seq 100); do grep -q allocations= "$work/allocs.log" && break; sleep 0.1; done
  held=$(rss_kib "$relay_pid")
  wait "$holder" || true
  rss_per_k=$((held - base))
  echo "   rss: $base KiB idle, $held KiB with 1000 allocations" >&2
  stop_relay
  start_relay "$name"

  best="0 0 0 100 0"
  best_clients=0
  for clients in "${ladder[@]}"; do
    step=$(load_step "$clients")
    echo "   sessions=$clients: offered relayed_pps pkts/cpu_s loss% cpu% = $step" >&2
    loss=$(echo "$step" | awk '{ print $4 }')
    if awk -v l="$loss" 'BEGIN { exit !(l < 0.5) }'; then
      best=$step
      best_clients=$clients
    else
      break
    fi
  done

  p99=0
  if [ "$best_clients" -gt 0 ]; then
    load_step "$best_clients" probe >/dev/null
    p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' "$work/rtt.log")
    echo "   probe: $(cat "$work/rtt.log" | tail -1)" >&2
  fi
  stop_relay
  echo "$name $best ${p99:-0} $rss_per_k" >>"$results"
done

echo
awk '
  { name[NR] = $1; offered[NR] = $2; pps[NR] = $3; eff[NR] = $4; cpu[NR] = $6; p99[NR] = $7; rss[NR] = $8 }
  function best_other(arr, i, higher,    j, b, set) {
    set = 0
    # Relays without a step under 0.5% loss (zeros) do not count as the best.
    for (j = 1; j <= NR; j++) if (j != i && arr[j] > 0 && (!set || (higher ? arr[j] > b : arr[j] < b))) { b = arr[j]; set = 1 }
    return b
  }
  function ratio(a, b) { return (a > 0 && b > 0) ? sprintf("%.2fx", a / b) : "-" }
  END {
    printf "%-8s %12s %12s %14s %6s %10s %14s\n", "relay", "max load", "relayed/s", "pkts/CPU-s", "CPU%", "p99 RTT", "RSS/1k alloc"
    for (i = 1; i <= NR; i++)
      if (offered[i] > 0)
        printf "%-8s %10d/s %12d %14d %5d%% %8.2fms %11d KiB\n", name[i], offered[i], pps[i], eff[i], cpu[i], p99[i] / 1000, rss[i]
      else
        printf "%-8s %-57s %11d KiB\n", name[i], "  (no step under 0.5% loss)", rss[i]
    print ""
    print "ratios to the best of the other two (pkts/CPU-s and relayed/s: higher is better; p99 and RSS: lower is better)"
    printf "%-8s %12s %14s %10s %14s\n", "relay", "relayed/s", "pkts/CPU-s", "p99 RTT", "RSS/1k alloc"
    for (i = 1; i <= NR; i++)
      printf "%-8s %12s %14s %10s %14s\n", name[i], ratio(pps[i], best_other(pps, i, 1)), ratio(eff[i], best_other(eff, i, 1)), ratio(p99[i], best_other(p99, i, 0)), ratio(rss[i], best_other(rss, i, 0))
  }' "$results"
