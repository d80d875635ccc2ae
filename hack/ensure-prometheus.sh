#!/usr/bin/env bash
# The metrics test scrapes the operator with a real Prometheus server: Debian's
# `prometheus` package. Install it when missing (CI machines start without it).
set -euo pipefail
if command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "prometheus is missing: run 'sudo apt-get install -y prometheus'" >&2
  exit 1
fi
echo "[ensure-prometheus] apt-get install prometheus" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
# --no-install-recommends: the server binary only, no node exporter or web assets' extras.
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package starts a system service where systemd runs; the test starts its own.
command -v prometheus >/dev/null
