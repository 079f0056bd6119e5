#!/usr/bin/env bash
# actionlint (GitHub workflow validator) built from its Go module into the toolchain cache. Idempotent.
set -euo pipefail
version=v1.7.12
bin="${FLY_POTATO_TOOLCHAIN:-$HOME/.cache/fly-potato/toolchain}/bin"
if [ -x "$bin/actionlint" ] && "$bin/actionlint" -version 2>/dev/null | head -1 | grep -qx "${version#v}"; then
  exit 0
fi
command -v go >/dev/null || { echo "Go is required to build actionlint: install golang (apt-get install golang) and re-run." >&2; exit 1; }
mkdir -p "$bin"
echo "actionlint: building $version from its Go module"
GOBIN="$bin" GOFLAGS=-mod=mod go install "github.com/rhysd/actionlint/cmd/actionlint@$version"
