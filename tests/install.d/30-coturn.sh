#!/usr/bin/env bash
# coturn's client tools (turnutils_uclient, turnutils_peer) drive the relay suite; iproute2 brings
# `ip` to bring up loopback inside the suite's network namespace; curl calls the relay's metrics
# and control endpoints; openssl makes throwaway certificates.
set -euo pipefail
if command -v turnutils_uclient >/dev/null && command -v turnutils_peer >/dev/null \
  && command -v ip >/dev/null && command -v unshare >/dev/null && command -v openssl >/dev/null \
  && command -v curl >/dev/null && command -v taskset >/dev/null; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends coturn iproute2 util-linux openssl curl ca-certificates
# The package enables a system service on some images; the suite starts its own servers only.
if command -v systemctl >/dev/null && systemctl is-active --quiet coturn 2>/dev/null; then
  systemctl stop coturn || true
fi
