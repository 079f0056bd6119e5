#!/usr/bin/env bash
# Checks one prerequisite and explains in one line how to get it; never a stack trace.
#   scripts/prereqs.sh docker|pulumi|python
set -euo pipefail
toolchain="${FLY_POTATO_TOOLCHAIN:-$HOME/.cache/fly-potato/toolchain}"
case "${1:-}" in
  python)
    command -v python3 >/dev/null && python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
      || { echo "Python 3.11 is required (python3 --version); install it from your distribution or pyenv." >&2; exit 1; } ;;
  docker)
    docker info >/dev/null 2>&1 \
      || { echo "No Docker engine answers: run 'make engine' (installs docker.io and starts dockerd as root), or point DOCKER_HOST at a running engine." >&2; exit 1; } ;;
  pulumi)
    PATH="$toolchain/bin:$PATH" command -v pulumi >/dev/null \
      || { echo "The Pulumi CLI is missing: run 'make toolchain' (the release download, or a build from source when offline)." >&2; exit 1; } ;;
  *) echo "usage: $0 docker|pulumi|python" >&2; exit 2 ;;
esac
