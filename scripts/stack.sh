#!/usr/bin/env bash
# Pulumi stack operations on the local file backend kept under the repo (git-ignored).
#   scripts/stack.sh up|preview|destroy|outputs STACK [--recreate]
# Without a Pulumi CLI on PATH, scripts/toolchain.sh provides it. When no source of it is reachable from
# here (toolchain.sh exits 3, see docs/toolchain.md), the dev stack falls back to scripts/local_stack.py:
# the program's recorded graph applied directly to the local Docker engine, without Pulumi state
# (up [--recreate]; destroy keeps the volumes unless VOLUMES=1; outputs). Prod is refused without Pulumi.
set -euo pipefail
cd "$(dirname "$0")/.."
action="${1:?usage: scripts/stack.sh up|preview|destroy|outputs STACK [--recreate]}"
stack="${2:-dev}"
shift $(( $# < 2 ? $# : 2 ))
toolchain="${FLY_POTATO_TOOLCHAIN:-$HOME/.cache/fly-potato/toolchain}"
export PATH="$toolchain/bin:$PATH"
export PULUMI_HOME="${PULUMI_HOME:-$toolchain/pulumi-home}"
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DIY_BACKEND_NO_LEGACY_WARNING=true

case "$action" in
  up|preview|destroy|outputs) ;;
  *) echo "unknown action $action (up|preview|destroy|outputs)" >&2; exit 2 ;;
esac

# -- no Pulumi CLI: provide it, or fall back when it cannot be obtained here -----------------------------
if ! command -v pulumi >/dev/null 2>&1; then
  mkdir -p "$toolchain/logs"
  log="$toolchain/logs/stack-toolchain.log"
  rc=0
  bash scripts/toolchain.sh >"$log" 2>&1 || rc=$?
  if (( rc != 0 && rc != 3 )); then
    cat "$log" >&2
    exit "$rc"
  fi
  if (( rc == 3 )); then
    if [ "$stack" != dev ]; then
      echo "Stack $stack needs the Pulumi engine and its state, and the Pulumi CLI is not installable here (see docs/toolchain.md, $log): only the dev stack can be applied without them." >&2
      exit 1
    fi
    python=.venv/bin/python
    [ -x "$python" ] || { echo "The project virtualenv is missing: run 'make venv'." >&2; exit 1; }
    case "$action" in
      up)
        scripts/prereqs.sh docker
        echo "The Pulumi CLI is not installable here (see docs/toolchain.md): applying the $stack stack from the program's recorded graph directly to the local Docker engine (no Pulumi state; 'make destroy' removes it)."
        exec "$python" -m scripts.local_stack up "$stack" "$@" ;;
      destroy)
        scripts/prereqs.sh docker
        if [ "${VOLUMES:-}" = 1 ]; then
          echo "The Pulumi CLI is not installable here (see docs/toolchain.md): removing the containers, networks and volumes (VOLUMES=1) of the $stack stack from the local Docker engine."
          exec "$python" -m scripts.local_stack destroy "$stack" --volumes
        fi
        echo "The Pulumi CLI is not installable here (see docs/toolchain.md): removing the containers and networks of the $stack stack from the local Docker engine; its volumes stay unless VOLUMES=1."
        exec "$python" -m scripts.local_stack destroy "$stack" ;;
      outputs)
        echo "The Pulumi CLI is not installable here (see docs/toolchain.md): outputs of the $stack stack from the program's recorded graph, with the generated secrets of .secrets/$stack/." >&2
        exec "$python" -m scripts.local_stack outputs "$stack" ;;
      preview)
        echo "pulumi preview needs the Pulumi CLI, which is not installable here (see docs/toolchain.md); 'make plan' evaluates the program and its policies offline." >&2
        exit 1 ;;
    esac
  fi
fi

# -- the Pulumi engine -----------------------------------------------------------------------------------
if [ $# -gt 0 ]; then
  echo "stack.sh: '$*' applies only to the local fallback without the Pulumi CLI; ignored (pulumi up --replace recreates a resource)." >&2
fi
scripts/prereqs.sh pulumi
[ "$action" = outputs ] || scripts/prereqs.sh docker

mkdir -p .pulumi-state .secrets
chmod 700 .secrets
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$PWD/.pulumi-state}"
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  if [ "$stack" != dev ]; then
    echo "Stack $stack needs its own passphrase: export PULUMI_CONFIG_PASSPHRASE (or _FILE) from your secret store." >&2
    exit 1
  fi
  # Dev-only passphrase, generated once per checkout and never committed.
  [ -s .secrets/dev-passphrase ] || (umask 077; head -c 24 /dev/urandom | base64 > .secrets/dev-passphrase)
  export PULUMI_CONFIG_PASSPHRASE_FILE="$PWD/.secrets/dev-passphrase"
fi

pulumi stack select "$stack" >/dev/null 2>&1 || pulumi stack init "$stack" >/dev/null

case "$action" in
  up)
    pulumi up --stack "$stack" --yes --skip-preview --non-interactive --policy-pack policy
    pulumi stack output --stack "$stack" public_url ;;
  preview) pulumi preview --stack "$stack" --non-interactive --policy-pack policy ;;
  destroy) pulumi destroy --stack "$stack" --yes --non-interactive ;;
  outputs) pulumi stack output --stack "$stack" --json --show-secrets ;;
esac
