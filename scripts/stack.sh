#!/usr/bin/env bash
# Pulumi stack operations on the local file backend kept under the repo (.pulumi-state/, git-ignored).
#   scripts/stack.sh up|preview|destroy|outputs|refresh STACK
#   scripts/stack.sh estimate STACK     what a first `make up` still has to provide, and how long it takes
# The toolchain (scripts/toolchain.sh), the Docker engine and the images are provided by the Makefile
# targets that call this; the policy pack's virtualenv (policy/.venv) too.
# Environment: PULUMI_BACKEND_URL (default: file://.pulumi-state), PULUMI_CONFIG_PASSPHRASE(_FILE) (dev:
# generated into .secrets/dev-passphrase), YES=1 (destroy without asking).
set -euo pipefail
cd "$(dirname "$0")/.."
action="${1:?usage: scripts/stack.sh up|preview|destroy|outputs|refresh|estimate STACK}"
stack="${2:-dev}"
eval "$(bash scripts/toolchain.sh --env)"
export PULUMI_DIY_BACKEND_NO_LEGACY_WARNING=true

case "$action" in
  up|preview|destroy|outputs|refresh|estimate) ;;
  *) echo "stack.sh: unknown action '$action' (up|preview|destroy|outputs|refresh|estimate)." >&2; exit 2 ;;
esac
[ -f "Pulumi.$stack.yaml" ] || { echo "stack.sh: there is no Pulumi.$stack.yaml; STACK is one of: $(ls Pulumi.*.yaml | sed 's/Pulumi\.\(.*\)\.yaml/\1/' | grep -v '^$' | tr '\n' ' ')" >&2; exit 2; }

if [ "$action" = estimate ]; then
  # Measured on 2 cores: toolchain build 16-31 min, images ~15 min, pulumi up ~3 min (docs/toolchain.md).
  todo=() minutes=3
  command -v pulumi >/dev/null 2>&1 && [ -f "$FLY_POTATO_TOOLCHAIN/.verified" ] ||
    { todo+=("build the Pulumi toolchain (16-31 min)"); minutes=$((minutes + 31)); }
  missing=$(.venv/bin/python - "$stack" <<'EOF'
import subprocess, sys, yaml
images = yaml.safe_load(open(f"Pulumi.{sys.argv[1]}.yaml"))["config"].get("fly-potato:images", {})
print(sum(subprocess.run(["docker", "image", "inspect", i], capture_output=True).returncode != 0
          for i in set(images.values())))
EOF
  ) || missing=all
  [ "$missing" = 0 ] || { todo+=("build $missing local images (~15 min)"); minutes=$((minutes + 15)); }
  if [ ${#todo[@]} -gt 0 ]; then
    printf 'make up: first run on this machine: %s, then pulumi up (~3 min): up to %d min in all.\n' \
      "$(IFS=';'; echo "${todo[*]}" | sed 's/;/, /g')" "$minutes"
  fi
  exit 0
fi

command -v pulumi >/dev/null 2>&1 || { echo "stack.sh: no Pulumi CLI in $FLY_POTATO_TOOLCHAIN/bin; run 'make toolchain'." >&2; exit 1; }
if [ "$action" != outputs ]; then
  scripts/prereqs.sh docker
fi

mkdir -p .pulumi-state .secrets
chmod 700 .secrets
export PULUMI_BACKEND_URL="${PULUMI_BACKEND_URL:-file://$PWD/.pulumi-state}"
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  if [ "$stack" != dev ]; then
    echo "stack.sh: stack $stack needs its own passphrase: export PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) from your secret store." >&2
    exit 1
  fi
  # Dev-only passphrase, generated once per checkout and never committed.
  [ -s .secrets/dev-passphrase ] || (umask 077; head -c 24 /dev/urandom | base64 > .secrets/dev-passphrase)
  export PULUMI_CONFIG_PASSPHRASE_FILE="$PWD/.secrets/dev-passphrase"
  # Pulumi writes the passphrase's salt into Pulumi.dev.yaml; from a per-checkout passphrase it would lock
  # every other checkout out of the committed file. The state keeps its own salt, and the dev config has no
  # secret values, so the file never keeps one.
  strip_salt() { sed -i '/^encryptionsalt:/d' "Pulumi.$stack.yaml"; }
  strip_salt
  trap strip_salt EXIT
fi

if ! pulumi stack select "$stack" >/dev/null 2>&1; then
  if [ "$action" != up ] && [ "$action" != preview ]; then
    echo "stack.sh: stack $stack does not exist in $PULUMI_BACKEND_URL yet; 'make up STACK=$stack' creates it." >&2
    exit 1
  fi
  pulumi stack init "$stack" >/dev/null
fi

policy_pack() {
  # The engine runs the pack with policy/.venv; without it, the analyzer never answers.
  [ -x policy/.venv/bin/python ] && policy/.venv/bin/python -c 'import pulumi_policy, crossplane' 2>/dev/null ||
    { echo "stack.sh: the policy pack's virtualenv policy/.venv is missing or incomplete; run 'make policy-venv'." >&2; exit 1; }
}

case "$action" in
  up)
    policy_pack
    # Never skip the preview: the pack's rules are stack policies, which the engine evaluates after the last
    # resource during an update but before anything is created during the preview that `up` runs first.
    pulumi up --stack "$stack" --yes --non-interactive --policy-pack policy --suppress-progress
    echo "public_url: $(pulumi stack output --stack "$stack" public_url)" ;;
  preview)
    policy_pack
    pulumi preview --stack "$stack" --non-interactive --policy-pack policy ;;
  refresh)
    pulumi refresh --stack "$stack" --yes --non-interactive --suppress-progress ;;
  destroy)
    # Prod protects its realm and database. The engine would delete everything else first and only then stop
    # at them, leaving the platform down; so refuse before anything is touched.
    protected=$(pulumi stack export --stack "$stack" | jq -r '[.deployment.resources[]? | select(.protect) | .urn | split("::") | last] | join(", ")')
    if [ -n "$protected" ]; then
      echo "stack.sh: stack $stack protects $protected; pulumi destroy would remove everything else and then stop at them, so nothing was removed. Unprotect them on purpose first (pulumi state unprotect --all --stack $stack), then destroy." >&2
      exit 1
    fi
    # The data volumes; the per-service config volumes and Keycloak's build cache are rebuilt by every up.
    volumes=$(docker volume ls -q --filter "label=org.flypotato.stack=$stack" | grep -v -e '-config$' -e '-build-' | tr '\n' ' ' || true)
    if [ -n "${volumes// }" ] && [ "${YES:-}" != 1 ]; then
      if [ ! -t 0 ]; then
        echo "stack.sh: destroying stack $stack deletes its data volumes ($volumes); rerun with YES=1 to confirm." >&2
        exit 1
      fi
      printf 'Destroying stack %s deletes its data volumes: %s\nType the stack name to confirm: ' "$stack" "$volumes"
      read -r answer
      [ "$answer" = "$stack" ] || { echo "stack.sh: not confirmed; nothing was removed." >&2; exit 1; }
    fi
    pulumi destroy --stack "$stack" --yes --non-interactive --suppress-progress ;;
  outputs) pulumi stack output --stack "$stack" --json --show-secrets ;;
esac
