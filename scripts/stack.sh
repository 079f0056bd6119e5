#!/usr/bin/env bash
# Pulumi stack operations on the local file backend kept under the repo (git-ignored).
#   scripts/stack.sh up|preview|destroy|outputs STACK
set -euo pipefail
cd "$(dirname "$0")/.."
action="${1:?usage: scripts/stack.sh up|preview|destroy|outputs STACK}"
stack="${2:-dev}"
toolchain="${FLY_POTATO_TOOLCHAIN:-$HOME/.cache/fly-potato/toolchain}"
export PATH="$toolchain/bin:$PATH"
export PULUMI_HOME="${PULUMI_HOME:-$toolchain/pulumi-home}"
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DIY_BACKEND_NO_LEGACY_WARNING=true

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
  *) echo "unknown action $action (up|preview|destroy|outputs)" >&2; exit 2 ;;
esac
