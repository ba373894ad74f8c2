# Shell helpers for suites that run the native host on loopback. Source it, then:
#   build_host                 cargo build; sets BEDSIDE_BIN
#   free_port                  prints a free TCP port on 127.0.0.1
#   start_bg NAME LOG CMD...   starts CMD in a process group of its own; remembers its PID
#   wait_http URL SECONDS      polls until URL answers 200
#   stop_all                   ends every started process group (use in a trap)

BEDSIDE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
BEDSIDE_PY="$BEDSIDE_ROOT/tests/.venv/bin/python"
started_pids=()

build_host() {
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  (cd "$BEDSIDE_ROOT" && cargo build -p bedside-host --locked)
  BEDSIDE_BIN="${CARGO_TARGET_DIR:-$BEDSIDE_ROOT/target}/debug/bedside"
  case "$BEDSIDE_BIN" in /*) ;; *) BEDSIDE_BIN="$BEDSIDE_ROOT/$BEDSIDE_BIN" ;; esac
  export BEDSIDE_BIN
}

free_port() {
  "$BEDSIDE_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_bg() {
  local name="$1" log="$2"
  shift 2
  # setsid: the process leads a new process group whose id is its PID, so stop_all can end it
  # and anything it spawned.
  setsid "$@" >"$log" 2>&1 &
  started_pids+=("$!")
  echo "started $name (pid $!)"
}

wait_http() {
  local url="$1" seconds="$2"
  local deadline=$((SECONDS + seconds))
  while [ "$SECONDS" -lt "$deadline" ]; do
    for pid in "${started_pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "process $pid exited early" >&2; return 1; }
    done
    if "$BEDSIDE_PY" -c 'import sys, httpx; sys.exit(httpx.get(sys.argv[1], timeout=1).status_code != 200)' "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "no answer from $url within ${seconds}s" >&2
  return 1
}

stop_all() {
  local pid
  for pid in "${started_pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pid in "${started_pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  started_pids=()
}
