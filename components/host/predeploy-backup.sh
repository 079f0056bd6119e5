#!/usr/bin/env bash
# Release step 1 (R-OPS-2): a dump set through the running backup service, before any migration runs.
#
#   predeploy-backup.sh --container NAME | --service NAME [--timeout SECONDS] [--reason TEXT] [--dry-run]
#
# Runs `docker exec NAME python3 -m backup dump` (the backup image's own tool, so the dump uses the backup
# role, lands on the backup volume and is counted by its metrics) and fails when the dump fails or takes
# longer than --timeout (default 1800 s). Re-running takes another dump set: idempotent in effect.
# --service NAME (a swarm): the running task container of that service on the node DOCKER_HOST names.
# Environment: DOCKER (default docker), DOCKER_HOST.
set -euo pipefail
container="" service="" by=container timeout_s=1800 reason="release" dry_run=0
fail() { echo "predeploy-backup: $*" >&2; exit "${2:-1}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --container) container="${2:-}"; shift 2 ;;
    --service) service="${2:-}" by=service; shift 2 ;;
    --timeout) timeout_s="${2:-}"; shift 2 ;;
    --reason) reason="${2:-}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    *) fail "unknown argument $1; see --help" 2 ;;
  esac
done
if [[ $by == service ]]; then
  [[ -z "$container" ]] || fail "give --container or --service, not both" 2
  [[ "$service" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$ ]] || fail "--service '${service}' is not a service name" 2
else
  [[ "$container" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$ ]] || fail "--container '${container}' is not a container name" 2
fi
[[ "$timeout_s" =~ ^[0-9]+$ ]] && (( timeout_s >= 1 )) || fail "--timeout '${timeout_s}' is not a number of seconds" 2
docker="${DOCKER:-docker}"
if [[ $by == service ]]; then
  if [[ $dry_run == 1 ]]; then
    echo "would run (timeout ${timeout_s}s): $docker exec <running task of ${service}> python3 -m backup dump"
    exit 0
  fi
  # The swarm's own labels on a task's container; the newest running one (a single replica: the only one).
  tasks="$(timeout --foreground 30 "$docker" ps --filter "label=com.docker.swarm.service.name=${service}" \
    --filter status=running --format '{{.Names}}' 2>/dev/null || true)"
  container="${tasks%%$'\n'*}"
  [[ -n "$container" ]] || fail "no running task of backup service ${service} on ${DOCKER_HOST:-this node}; the release stops before migrations. Check \`docker service ps ${service}\`" 1
  echo "backup service ${service}: task ${container}"
fi
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
