#!/usr/bin/env bash
# Install the OpenSSH server and client (Debian) for the swarm lab's operator tunnel: scripts/swarm-lab.sh
# runs its own sshd inside the manager's network namespace, with its own config, keys and pidfile.
# Idempotent: returns at once when both are present.
#
# The host gets no sshd of its own from this: invoke-rc.d is denied (policy-rc.d) during the install, and
# /etc/ssh/sshd_not_to_be_run (Debian's switch, honoured by the init script and ssh.service) keeps the
# packaged service from starting at a later boot. Afterwards no sshd may listen in the host's namespace.
set -euo pipefail

missing=()
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v ssh-keygen >/dev/null || missing+=(openssh-client)
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "openssh-server and openssh-client already installed ($(ssh -V 2>&1))"
  exit 0
fi

SUDO=""
[[ "$(id -u)" == 0 ]] || SUDO="sudo"
policy=/usr/sbin/policy-rc.d
made_policy=""
if [[ ! -e "$policy" ]]; then
  printf '#!/bin/sh\n# fly-potato scripts/deps/sshd.sh: no service starts during this install\nexit 101\n' \
    | ${SUDO} tee "$policy" >/dev/null
  ${SUDO} chmod 755 "$policy"
  made_policy=1
fi
trap '[[ -z "$made_policy" ]] || ${SUDO} rm -f "$policy"' EXIT
if [[ ! -x /usr/sbin/sshd ]]; then
  ${SUDO} mkdir -p /etc/ssh
  ${SUDO} touch /etc/ssh/sshd_not_to_be_run
fi

export DEBIAN_FRONTEND=noninteractive
timeout 300 ${SUDO} apt-get -o DPkg::Lock::Timeout=300 update -qq
timeout 600 ${SUDO} apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends \
  $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null

# Where a service manager started or enabled the packaged sshd anyway, stop and disable exactly that.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  ${SUDO} systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
fi
if [[ -f /run/sshd.pid ]]; then
  pid="$(cat /run/sshd.pid)"
  [[ -n "$pid" ]] && ${SUDO} kill "$pid" 2>/dev/null || true
fi
sleep 0.2
if ss -Hltnp 2>/dev/null | grep -q '"sshd"'; then
  echo "deps/sshd.sh: an sshd listens in the host's network namespace after the install:" >&2
  ss -Hltnp | grep '"sshd"' >&2
  exit 1
fi
echo "installed: $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')(no sshd started on the host)"
ssh -V
