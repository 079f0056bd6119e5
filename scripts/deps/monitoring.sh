#!/usr/bin/env bash
# Install Debian bookworm's Prometheus tools for tests/monitoring: prometheus + promtool (package
# prometheus), alertmanager + amtool (package prometheus-alertmanager), blackbox_exporter (its
# --config.check validates the probe modules; the certificate probe runs against a real TLS server),
# sql_exporter (prometheus-sql-exporter: the live scrape runs the rendered custom queries), and
# node_exporter + postgres_exporter (the metrics gate in front of every exporter is tested with them).
# The versions match the images of the stacks (prometheus 2.42, alertmanager 0.25, blackbox_exporter
# 0.23, node_exporter 1.5.0, postgres_exporter 0.11.1, sql_exporter 0.4.5).
# Idempotent: returns at once when every binary is present; runs apt-get update at most once.
set -euo pipefail

declare -A PACKAGE_OF=(
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-alertmanager]=prometheus-alertmanager
  [amtool]=prometheus-alertmanager
  [prometheus-blackbox-exporter]=prometheus-blackbox-exporter
  [prometheus-sql-exporter]=prometheus-sql-exporter
  [prometheus-node-exporter]=prometheus-node-exporter
  [prometheus-postgres-exporter]=prometheus-postgres-exporter
)

missing=()
for binary in "${!PACKAGE_OF[@]}"; do
  command -v "${binary}" >/dev/null 2>&1 || missing+=("${PACKAGE_OF[${binary}]}")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "prometheus, promtool, alertmanager, amtool and the blackbox, sql, node and postgres exporters already installed"
  exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  SUDO="sudo"
fi

mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
export DEBIAN_FRONTEND=noninteractive
# The packages' maintainer scripts would start their daemons; the tests start their own on loopback.
policy_rc=""
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  policy_rc=/usr/sbin/policy-rc.d
  printf '#!/bin/sh\nexit 101\n' | ${SUDO} tee "${policy_rc}" >/dev/null
  ${SUDO} chmod 0755 "${policy_rc}"
  trap '${SUDO} rm -f "${policy_rc}"' EXIT
fi
${SUDO} apt-get update -qq
${SUDO} apt-get install -y -qq --no-install-recommends "${packages[@]}"

promtool --version 2>&1 | head -n1
amtool --version 2>&1 | head -n1
prometheus-blackbox-exporter --version 2>&1 | head -n1
prometheus-node-exporter --version 2>&1 | head -n1
prometheus-postgres-exporter --version 2>&1 | head -n1
