#!/usr/bin/env bash
# Metrics gate (R-SEC-5): runs an exporter that has no bearer-token option on loopback, and nginx in front
# of it on the exporter's listener, answering 401 without the stack's metrics token.
#
#   metrics_gate.sh NGINX_CONF -- EXPORTER ARG...
#
# The exporter must listen on 127.0.0.1 (the upstream of NGINX_CONF, rendered by
# components/monitoring_config.py). Both run as children of this script; when either exits, the other is
# stopped and the script exits with the first one's status, so the container's restart policy restarts the
# pair. SIGTERM/SIGINT are passed on to both. NGINX_BIN overrides /usr/sbin/nginx.
set -euo pipefail

if [[ $# -lt 3 || $2 != "--" ]]; then
    echo "usage: metrics_gate.sh NGINX_CONF -- EXPORTER ARG..." >&2
    exit 64
fi
conf=$1
shift 2

"$@" &
exporter=$!
"${NGINX_BIN:-/usr/sbin/nginx}" -e stderr -c "$conf" -g "daemon off;" &
gate=$!

stop() { kill -TERM "$exporter" "$gate" 2>/dev/null || true; }
trap stop TERM INT

status=0
wait -n "$exporter" "$gate" || status=$?
stop
wait || true
exit "$status"
