#!/usr/bin/env bash
# Roll a stack back to the previous release (R-OPS-2): alembic downgrade, previous image, redeploy.
#
#   scripts/rollback.sh STACK --to GIT_REF                     # image and schema revision of that release
#   scripts/rollback.sh STACK --image IMAGE --revision REV     # or give both
#       [--via docker|local] [--migrator-url-file FILE] [--config FILE] [--step schema|config|deploy]…
#       [--dry-run] [--yes]
#
# Steps, in this order (each prints what it does; --step limits the run to some of them):
#   schema  `alembic downgrade REV` with the image that ran the newest migration (only it knows how to
#           undo its own revisions): a one-shot container on the stack's data network with the migration
#           container's config volume (migrator role), or --via local: this checkout's alembic with
#           FLY_POTATO_MIGRATOR_URL_FILE (e.g. through the operator tunnel, docs/remote-docker-host.md).
#           Already at REV: nothing to do.
#   config  images.backend and images.migration := IMAGE in Pulumi.STACK.yaml (or --config FILE).
#   deploy  scripts/stack.sh up STACK: the release order runs again — backup, migration (a no-op: the
#           schema is at the old image's head), backend replaced, smoke through nginx.
# A migration that dropped data cannot be undone this way: restore the pre-release dump (docs/runbook.md).
# Environment: ROLLBACK_TIMEOUT (downgrade, default 900 s), PYTHON (default .venv/bin/python), DOCKER.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "rollback: $*" >&2; exit "${2:-1}"; }
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[[ $# -ge 1 && "$1" != -* ]] || usage
stack="$1"; shift
ref="" image="" revision="" via="docker" url_file="" config="" dry_run=0 yes=0 steps=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --to) ref="${2:-}"; shift 2 ;;
    --image) image="${2:-}"; shift 2 ;;
    --revision) revision="${2:-}"; shift 2 ;;
    --via) via="${2:-}"; shift 2 ;;
    --migrator-url-file) url_file="${2:-}"; shift 2 ;;
    --config) config="${2:-}"; shift 2 ;;
    --step) steps+=("${2:-}"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --yes) yes=1; shift ;;
    -h|--help) usage ;;
    *) fail "unknown argument $1; see --help" 2 ;;
  esac
done

[[ "$stack" =~ ^[a-z0-9][a-z0-9_.-]{0,62}$ ]] || fail "stack '${stack}' is not a stack name (dev, prod, …)" 2
config="${config:-Pulumi.${stack}.yaml}"
[[ -f "$config" ]] || fail "${config} does not exist; name a stack of this project (Pulumi.<stack>.yaml)" 2
[[ ${#steps[@]} -gt 0 ]] || steps=(schema config deploy)
for s in "${steps[@]}"; do [[ "$s" =~ ^(schema|config|deploy)$ ]] || fail "--step '${s}' must be schema, config or deploy" 2; done
wants() { local s; for s in "${steps[@]}"; do [[ "$s" == "$1" ]] && return 0; done; return 1; }
[[ "$via" == docker || "$via" == local ]] || fail "--via '${via}' must be docker or local" 2
python="${PYTHON:-.venv/bin/python}"
[[ -x "$python" ]] || python="$(command -v python3)"
timeout_s="${ROLLBACK_TIMEOUT:-900}"
docker="${DOCKER:-docker}"

if [[ -n "$ref" ]]; then
  [[ -z "$image" && -z "$revision" ]] || fail "give --to REF or --image with --revision, not both" 2
  git rev-parse --verify --quiet "${ref}^{commit}" >/dev/null || fail "--to '${ref}' is not a commit of this repository" 2
  # The previous release: its backend image from its stack file, its newest revision from its migrations.
  read -r image revision < <("$python" - "$ref" "$stack" <<'PY'
import re, subprocess, sys
import yaml
ref, stack = sys.argv[1], sys.argv[2]
def show(path):
    return subprocess.run(["git", "show", f"{ref}:{path}"], capture_output=True, text=True, check=True).stdout
config = (yaml.safe_load(show(f"Pulumi.{stack}.yaml")) or {}).get("config", {})
image = (config.get("fly-potato:images") or {}).get("backend", "")
names = subprocess.run(["git", "ls-tree", "--name-only", ref, "migrations/versions/"], capture_output=True, text=True, check=True).stdout.split()
revisions, downs = set(), set()
for name in names:
    if name.endswith(".py"):
        text = show(name)
        rev = re.search(r'^revision(?:: *[^=]+)? *= *["\']([^"\']+)["\']', text, re.M)
        down = re.search(r'^down_revision(?:: *[^=]+)? *= *["\']([^"\']+)["\']', text, re.M)
        if rev:
            revisions.add(rev.group(1))
        if down:
            downs.add(down.group(1))
heads = sorted(revisions - downs)
print(image or "-", heads[0] if len(heads) == 1 else "-")
PY
  )
  [[ "$image" != "-" ]] || fail "Pulumi.${stack}.yaml at ${ref} names no images.backend" 2
  [[ "$revision" != "-" ]] || fail "the migrations at ${ref} do not have exactly one head revision; give --image and --revision" 2
fi
if wants schema; then
  [[ -n "$revision" ]] || fail "the schema step needs --revision REV (or --to REF)" 2
  [[ "$revision" =~ ^[A-Za-z0-9_+-]{1,64}$ ]] || fail "--revision '${revision}' is not an alembic revision" 2
fi
if wants config; then
  [[ -n "$image" ]] || fail "the config step needs --image IMAGE (or --to REF)" 2
  [[ "$image" =~ ^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$ ]] || fail "--image '${image}' is not an image reference" 2
fi
if [[ "$via" == local ]] && wants schema; then
  [[ -n "$url_file" ]] || fail "--via local needs --migrator-url-file FILE (the migrator role's URL, e.g. through the SSH tunnel)" 2
  [[ -r "$url_file" ]] || fail "--migrator-url-file ${url_file} is not readable" 2
fi

prefix="fly-potato-${stack}"
profile="$(sed -n 's/^ *fly-potato:profile: *\([a-z]*\).*/\1/p' "$config" | head -n1)"
alembic_local=(env "FLY_POTATO_MIGRATOR_URL_FILE=${url_file}" "FLY_POTATO_PROFILE=${profile:-dev}" "$python" -m alembic)
alembic_docker() {  # the image that ran the newest migration, as the migrator role, on the data network
  local current
  current="$(timeout --foreground 30 "$docker" inspect --format '{{.Config.Image}}' "${prefix}-migration" 2>/dev/null || true)"
  [[ -n "$current" ]] || current="<image-of-${prefix}-migration>"
  echo "$docker" run --rm --network "${prefix}-data" --user 10020:10020 --read-only --tmpfs /tmp \
    --cap-drop ALL --security-opt no-new-privileges:true \
    --mount "type=volume,src=${prefix}-migration-config,dst=/etc/fly-potato,readonly" \
    -e "FLY_POTATO_PROFILE=${profile:-dev}" -e FLY_POTATO_MIGRATOR_URL_FILE=/etc/fly-potato/secrets/migrator_url \
    "$current" alembic
}

echo "rollback of stack ${stack}: steps ${steps[*]}"
! wants schema || echo "  schema: alembic downgrade ${revision} (via ${via})"
! wants config || echo "  config: images.backend, images.migration := ${image} in ${config}"
! wants deploy || echo "  deploy: scripts/stack.sh up ${stack} (backup -> migration -> backend -> smoke)"
if [[ $dry_run == 0 && $yes == 0 ]]; then
  [[ -t 0 ]] || fail "not a terminal: pass --yes to roll back without a prompt (or --dry-run to see the plan)" 2
  read -r -p "Roll back stack ${stack}? [y/N] " answer
  [[ "$answer" == y || "$answer" == Y ]] || fail "cancelled; nothing changed" 1
fi

if wants schema; then
  if [[ "$via" == local ]]; then alembic=("${alembic_local[@]}"); else read -r -a alembic < <(alembic_docker); fi
  if [[ $dry_run == 1 ]]; then
    echo "[schema] would run (timeout ${timeout_s}s): ${alembic[*]} downgrade ${revision}"
  else
    current="$(timeout --foreground 120 "${alembic[@]}" current 2>/dev/null | awk 'NF {print $1}' | tail -n1 || true)"
    if [[ "$current" == "$revision" ]]; then
      echo "[schema] already at ${revision}; nothing to downgrade"
    else
      echo "[schema] ${current:-unknown} -> ${revision}: ${alembic[*]} downgrade ${revision}"
      timeout --foreground --kill-after=30 "$timeout_s" "${alembic[@]}" downgrade "$revision" \
        || fail "alembic downgrade ${revision} failed; the schema is unchanged where the downgrade runs in one transaction. Restore the pre-release dump if a revision cannot be undone (docs/runbook.md)" 1
      after="$(timeout --foreground 120 "${alembic[@]}" current 2>/dev/null | awk 'NF {print $1}' | tail -n1 || true)"
      [[ "$after" == "$revision" ]] || fail "after the downgrade alembic reports '${after}', not ${revision}" 1
      echo "[schema] now at ${revision}"
    fi
  fi
fi

if wants config; then
  if [[ $dry_run == 1 ]]; then
    echo "[config] would set images.backend and images.migration to ${image} in ${config}"
  else
    "$python" - "$config" "$image" <<'PY'
import re, sys
import yaml
path, image = sys.argv[1], sys.argv[2]
lines = open(path).read().splitlines(keepends=True)
inside, indent, changed = False, None, []
for i, line in enumerate(lines):
    if re.match(r"^\s*fly-potato:images:\s*$", line):
        inside, indent = True, None
        continue
    if not inside or not line.strip() or line.lstrip().startswith("#"):
        continue
    width = len(line) - len(line.lstrip())
    indent = width if indent is None else indent
    if width < indent or width == 0:
        inside = False
        continue
    m = re.match(r"^(\s+)(\w+):\s*(\S+)", line)
    if m and width == indent and m.group(2) in ("backend", "migration"):
        if m.group(3) != image:
            changed.append(f"{m.group(2)}: {m.group(3)} -> {image}")
        lines[i] = f"{m.group(1)}{m.group(2)}: {image}\n"
open(path, "w").write("".join(lines))
images = yaml.safe_load(open(path))["config"]["fly-potato:images"]
assert images["backend"] == image and images["migration"] == image, f"{path}: images not updated"
print("[config] " + ("; ".join(changed) if changed else f"images.backend and images.migration already {image}") + f" ({path})")
PY
  fi
fi

if wants deploy; then
  if [[ $dry_run == 1 ]]; then
    echo "[deploy] would run: scripts/stack.sh up ${stack}"
  else
    echo "[deploy] scripts/stack.sh up ${stack}"
    scripts/stack.sh up "$stack"
  fi
fi
echo "rollback of stack ${stack}: ${steps[*]} $([[ $dry_run == 1 ]] && echo planned || echo done)"
