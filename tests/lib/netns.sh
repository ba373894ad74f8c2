# Shared by the suites that must run in a network namespace holding nothing but loopback, so that
# no bug can send a packet off the machine. Source it from the repository root, then:
#
#   loopback_namespace SECONDS "TOOLS…" "CRATES…" "$@"
#       outside the namespace: checks the tools, builds the crates, and re-runs the calling
#       script under `unshare --net` with a time limit; inside: brings `lo` up and refuses to go
#       on if any other interface exists.
#   suite_workdir
#       sets `work` (a temporary folder) and `pids` (background processes), both cleaned up on
#       exit.

loopback_namespace() {
  local seconds=$1 tools=$2 crates=$3
  shift 3
  if [ "${BEDSIDE_IN_NETNS:-}" != 1 ]; then
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    local tool crate args=()
    for tool in $tools; do
      command -v "$tool" >/dev/null || { echo "missing $tool (tests/install.d/30-coturn.sh)"; exit 1; }
    done
    for crate in $crates; do args+=(-p "$crate"); done
    cargo build "${args[@]}" --quiet
    exec timeout "$seconds" unshare --net env BEDSIDE_IN_NETNS=1 bash "$0" "$@"
  fi
  ip link set lo up
  local others
  others=$(ip -o link show | awk -F': ' '{print $2}' | grep -v '^lo$' || true)
  if [ -n "$others" ]; then
    echo "refusing to run: interfaces other than lo present: $others"
    exit 1
  fi
}

suite_workdir() {
  work=$(mktemp -d)
  pids=()
  trap _suite_cleanup EXIT
}

_suite_cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
