#!/usr/bin/env bash
# Tools the host-side release and firewall scripts and their tests need (components/host/, tests/host/):
# iptables (nf_tables backend, as Docker uses), iproute2 (network namespaces, veth), curl (smoke step).
# Idempotent: returns at once when all are present.
set -euo pipefail
missing=()
command -v iptables >/dev/null || missing+=(iptables)
command -v iptables-restore >/dev/null || missing+=(iptables)
command -v ip >/dev/null || missing+=(iproute2)
command -v curl >/dev/null || missing+=(curl)
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "iptables, iproute2 and curl already installed ($(iptables --version))"
  exit 0
fi
SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
timeout 300 ${SUDO} apt-get update -qq
timeout 600 ${SUDO} apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${missing[@]}" | sort -u)
echo "installed: $(printf '%s ' "${missing[@]}" | tr ' ' '\n' | sort -u | tr '\n' ' ')"
iptables --version
