#!/usr/bin/env bash
# Release step 4 (R-OPS-2): /health/ready through nginx answers 200 "ready" within --timeout, or the release fails.
#
#   smoke.sh --url URL [--resolve HOST:PORT:ADDRESS] [--cacert-stdin] [--timeout SECONDS] [--interval SECONDS] [--dry-run]
#
# Polls URL with curl until it answers 200 with "status": "ready" (the backend's readiness, which checks
# the database) or --timeout (default 180 s) passes; each attempt has its own 5 s limit. --resolve pins
# the public name to the address nginx listens on (as curl --resolve), so the check takes the users' path
# through TLS and nginx without depending on DNS. --cacert-stdin reads the CA certificate (PEM) to trust.
set -euo pipefail
url="" resolve="" cacert_stdin=0 timeout_s=180 interval=3 dry_run=0
fail() { echo "smoke: $*" >&2; exit "${2:-1}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --url) url="${2:-}"; shift 2 ;;
    --resolve) resolve="${2:-}"; shift 2 ;;
    --cacert-stdin) cacert_stdin=1; shift ;;
    --timeout) timeout_s="${2:-}"; shift 2 ;;
    --interval) interval="${2:-}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    *) fail "unknown argument $1; see --help" 2 ;;
  esac
done
[[ "$url" =~ ^https?://[^[:space:]]+$ ]] || fail "--url '${url}' must be an http:// or https:// URL" 2
[[ -z "$resolve" || "$resolve" =~ ^[A-Za-z0-9.-]+:[0-9]+:[0-9a-fA-F.:]+$ ]] || fail "--resolve '${resolve}' must be HOST:PORT:ADDRESS" 2
[[ "$timeout_s" =~ ^[0-9]+$ ]] && (( timeout_s >= 1 )) || fail "--timeout '${timeout_s}' is not a number of seconds" 2
[[ "$interval" =~ ^[0-9]+$ ]] && (( interval >= 1 )) || fail "--interval '${interval}' is not a number of seconds" 2
command -v curl >/dev/null || fail "curl is not installed on this host; install it (apt-get install curl) and run again" 2

args=(--silent --show-error --max-time 5 --output - --write-out '\n%{http_code}')
[[ -z "$resolve" ]] || args+=(--resolve "$resolve")
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
if [[ $cacert_stdin == 1 ]]; then
  cat >"$workdir/ca.pem"
  grep -q -- '-----BEGIN CERTIFICATE-----' "$workdir/ca.pem" || fail "--cacert-stdin: no PEM certificate on stdin" 2
  args+=(--cacert "$workdir/ca.pem")
fi
if [[ $dry_run == 1 ]]; then
  echo "would poll every ${interval}s for up to ${timeout_s}s: curl ${args[*]} ${url}"
  exit 0
fi

echo "smoke: waiting up to ${timeout_s}s for ${url}${resolve:+ (resolved as ${resolve})} to answer 200 ready"
deadline=$(( $(date +%s) + timeout_s ))
attempt=0 last=""
while :; do
  attempt=$((attempt + 1))
  if response="$(curl "${args[@]}" "$url" 2>&1)"; then
    code="${response##*$'\n'}"
    body="${response%$'\n'*}"
    if [[ "$code" == 200 ]] && grep -Eq '"status" *: *"ready"' <<<"$body"; then
      echo "smoke: ready after ${attempt} attempt(s): ${body}"
      exit 0
    fi
    last="HTTP ${code}: ${body:0:300}"
  else
    last="${response:0:300}"
  fi
  echo "smoke: attempt ${attempt}: ${last}"
  (( $(date +%s) + interval <= deadline )) || break
  sleep "$interval"
done
hint=""
[[ "$last" == "HTTP 30"* ]] && hint=" (a redirect: nginx may be sending /health/ready to sign-in instead of the backend)"
fail "${url} was not ready within ${timeout_s}s after ${attempt} attempt(s); last answer: ${last}${hint}. The new backend is running but not ready: check \`docker logs\` of the backend and nginx, or roll back (docs/release.md)" 1
