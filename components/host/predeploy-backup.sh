#!/usr/bin/env bash
# Release step 1 (R-OPS-2): a dump set through the running backup service, before any migration runs.
#
#   predeploy-backup.sh --container NAME [--timeout SECONDS] [--reason TEXT] [--dry-run]
#
# Runs `docker exec NAME python3 -m backup dump` (the backup image's own tool, so the dump uses the backup
# role, lands on the backup volume and is counted by its metrics) and fails when the dump fails or takes
# longer than --timeout (default 1800 s). Re-running takes another dump set: idempotent in effect.
# Environment: DOCKER (default docker).
set -euo pipefail
container="" timeout_s=1800 reason="release" dry_run=0
fail() { echo "predeploy-backup: $*" >&2; exit "${2:-1}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --container) container="${2:-}"; shift 2 ;;
    --timeout) timeout_s="${2:-}"; shift 2 ;;
    --reason) reason="${2:-}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    *) fail "unknown argument $1; see --help" 2 ;;
  esac
done
[[ "$container" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$ ]] || fail "--container '${container}' is not a container name" 2
[[ "$timeout_s" =~ ^[0-9]+$ ]] && (( timeout_s >= 1 )) || fail "--timeout '${timeout_s}' is not a number of seconds" 2
docker="${DOCKER:-docker}"
cmd=("$docker" exec "$container" python3 -m backup dump)
if [[ $dry_run == 1 ]]; then
  echo "would run (timeout ${timeout_s}s): ${cmd[*]}"
  exit 0
fi
state="$(timeout --foreground 30 "$docker" inspect --format '{{.State.Running}}' "$container" 2>/dev/null || true)"
[[ "$state" == true ]] || fail "backup container ${container} is not running (state: '${state:-absent}'); the release stops before migrations. Check \`docker logs ${container}\`" 1
echo "pre-deploy backup (${reason}): ${cmd[*]}"
started=$(date +%s)
set +e
timeout --foreground --kill-after=30 "$timeout_s" "${cmd[@]}"
status=$?
set -e
elapsed=$(( $(date +%s) - started ))
if [[ $status == 124 || $status == 137 ]]; then
  fail "the pre-deploy backup did not finish within ${timeout_s}s; no migration ran. Raise host.backup_timeout_seconds or check \`docker logs ${container}\`" 1
elif [[ $status != 0 ]]; then
  fail "the pre-deploy backup failed (exit ${status}) after ${elapsed}s; no migration ran. See the lines above and \`docker logs ${container}\`" 1
fi
echo "pre-deploy backup done in ${elapsed}s (${reason})"
