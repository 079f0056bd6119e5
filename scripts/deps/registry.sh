#!/usr/bin/env bash
# Install what the swarm lab (scripts/swarm-lab.sh, tests/swarm) runs for real: Debian's image
# registry (docker-registry, distribution 2.8.2), skopeo (copies images from the main engine into
# it without touching that engine's configuration), openssl (the lab's CA), iproute2 and iptables.
# Idempotent: returns at once when everything is present.
#
# The package's own registry service is stopped if the install started it: the lab runs its own
# registry on the lab bridge with its own config and storage.
set -euo pipefail

missing=()
[[ -x /usr/bin/docker-registry ]] || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v openssl >/dev/null || missing+=(openssl)
command -v ip >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || missing+=(iptables)
command -v nsenter >/dev/null || missing+=(util-linux)
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "docker-registry, skopeo and openssl already installed ($(/usr/bin/docker-registry --version 2>/dev/null | head -n 1))"
  exit 0
fi

SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
timeout 300 ${SUDO} apt-get -o DPkg::Lock::Timeout=300 update -qq
timeout 600 ${SUDO} apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}"

# Where invoke-rc.d was allowed to start the packaged service, stop exactly that process.
if [[ -f /run/docker-registry.pid ]]; then
  pid="$(cat /run/docker-registry.pid)"
  [[ -n "$pid" ]] && ${SUDO} kill "$pid" 2>/dev/null || true
fi
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
  ${SUDO} systemctl stop docker-registry || true
  ${SUDO} systemctl disable docker-registry || true
fi
echo "installed: ${missing[*]}"
/usr/bin/docker-registry --version
