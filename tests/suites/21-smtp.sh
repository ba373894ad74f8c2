#!/usr/bin/env bash
# The native host delivers activation mail over SMTP: a loopback SMTP sink receives it, and the
# code in the mail activates the account.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/conformance/tools/host.sh

build_host
data="$(mktemp -d)"
work="$(mktemp -d)"
smtp_port="$(free_port)"
port="$(free_port)"
cleanup() {
  local status=$?
  stop_all
  if [ "$status" != 0 ]; then
    echo "--- server log (last 40 lines)"
    tail -n 40 "$work/server.log" 2>/dev/null || true
    echo "--- smtp sink log"
    tail -n 20 "$work/smtp.log" 2>/dev/null || true
  fi
  rm -rf "$data" "$work"
}
trap cleanup EXIT

start_bg smtp-sink "$work/smtp.log" "$BEDSIDE_PY" tests/conformance/tools/smtp_sink.py "$smtp_port" "$work/mail.jsonl"
deadline=$((SECONDS + 20))
until grep -q "smtp sink on" "$work/smtp.log" 2>/dev/null; do
  [ "$SECONDS" -lt "$deadline" ] || { echo "smtp sink did not start" >&2; exit 1; }
  sleep 0.1
done

start_bg bedside "$work/server.log" env \
  BEDSIDE_SMTP_URL="smtp://127.0.0.1:$smtp_port" \
  BEDSIDE_SMTP_FROM="noreply@bedside.test" \
  "$BEDSIDE_BIN" serve --listen "127.0.0.1:$port" --data-dir "$data"
wait_http "http://127.0.0.1:$port/healthz" 60

BEDSIDE_BASE_URL="http://127.0.0.1:$port" \
  BEDSIDE_SMTP_SINK="$work/mail.jsonl" \
  BEDSIDE_SMTP_FROM="noreply@bedside.test" \
  BEDSIDE_OUTBOX="$data/outbox.jsonl" \
  timeout 300 tests/.venv/bin/python -m pytest tests/conformance/test_smtp.py -q "$@"
