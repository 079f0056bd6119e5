#!/usr/bin/env bash
# Install what the edge tests (tests/edge) run for real:
#   - Debian bookworm's nginx (nginx-core: auth_request, ssl, http_v2) and its stream module
#     (libnginx-mod-stream, the DataLens TCP proxy), plus openssl for test certificates;
#   - sslyze, pinned, in its own virtualenv: it needs cryptography<47, which the project venv outgrew.
# Idempotent: returns at once when everything is present.
#
# The tests find sslyze at $FLY_POTATO_SSLYZE (default below) and nginx at $NGINX_BIN or /usr/sbin/nginx.
set -euo pipefail

SSLYZE_VERSION="${SSLYZE_VERSION:-6.3.1}"
SSLYZE_HOME="${FLY_POTATO_SSLYZE_HOME:-$HOME/.cache/fly-potato/sslyze-${SSLYZE_VERSION}}"
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
PYTHON="${PYTHON:-python3}"

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  SUDO="sudo"
fi

if [[ -x /usr/sbin/nginx && -f "${STREAM_MODULE}" ]] && command -v openssl >/dev/null; then
  echo "nginx already installed: $(/usr/sbin/nginx -v 2>&1)"
else
  export DEBIAN_FRONTEND=noninteractive
  ${SUDO} apt-get update -qq
  # nginx-core rather than the nginx metapackage: no default site gets enabled and started.
  ${SUDO} apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends nginx-core libnginx-mod-stream openssl
  # The package starts a system nginx on :80 where systemd/invoke-rc.d allow it; the tests run their own.
  if pidof nginx >/dev/null 2>&1 && [[ -f /run/nginx.pid ]]; then
    ${SUDO} /usr/sbin/nginx -s stop || true
  fi
  /usr/sbin/nginx -v
fi

if [[ -x "${SSLYZE_HOME}/bin/sslyze" ]] && "${SSLYZE_HOME}/bin/python" -c "import sslyze" 2>/dev/null; then
  echo "sslyze ${SSLYZE_VERSION} already installed in ${SSLYZE_HOME}"
else
  if ! "${PYTHON}" -m venv --help >/dev/null 2>&1; then
    ${SUDO} apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends python3-venv
  fi
  "${PYTHON}" -m venv "${SSLYZE_HOME}"
  "${SSLYZE_HOME}/bin/pip" install --quiet --disable-pip-version-check "sslyze==${SSLYZE_VERSION}"
  echo "sslyze ${SSLYZE_VERSION} installed in ${SSLYZE_HOME}"
fi
"${SSLYZE_HOME}/bin/sslyze" --help >/dev/null
