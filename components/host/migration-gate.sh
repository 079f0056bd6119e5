#!/usr/bin/env bash
# Release step 2 (R-OPS-2): the one-shot migration container must have exited 0 before the backend is replaced.
#
#   migration-gate.sh --container NAME --exit-code CODE [--dry-run]
#
# The Docker provider waits for the attached container and records its exit code without failing on a
# non-zero one; this gate turns that code into the release's verdict. On failure it prints the container's
# last log lines and exits 1, so `pulumi up` stops before the backend: the previous backend keeps serving.
# Environment: DOCKER (default docker).
set -euo pipefail
container="" code="" dry_run=0
fail() { echo "migration-gate: $*" >&2; exit "${2:-1}"; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --container) container="${2:-}"; shift 2 ;;
    --exit-code) code="${2:-}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
    *) fail "unknown argument $1; see --help" 2 ;;
  esac
done
[[ "$container" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$ ]] || fail "--container '${container}' is not a container name" 2
if [[ $dry_run == 1 ]]; then
  echo "would check that migration container ${container} exited 0 (recorded: '${code}')"
  exit 0
fi
if [[ "$code" == 0 ]]; then
  echo "migration ${container} exited 0; the backend may be replaced"
  exit 0
fi
echo "--- last log lines of ${container} ---" >&2
timeout --foreground 30 "${DOCKER:-docker}" logs --tail 60 "$container" >&2 2>&1 || echo "(no logs: the container is gone or docker is unreachable)" >&2
echo "---" >&2
if [[ -z "$code" || "$code" == null || ! "$code" =~ ^[0-9]+$ ]]; then
  fail "migration ${container} reported no exit code ('${code}'); the backend was not replaced. Check \`docker inspect ${container}\`" 1
fi
fail "migration ${container} exited ${code}; the backend was not replaced and the previous one keeps serving. Fix the migration and run pulumi up again, or roll back (docs/release.md)" 1
