#!/usr/bin/env bash
# The oauth2-proxy binary the image carries (images/build.sh builds it once from its Go module, pinned
# there: OAUTH2_PROXY_VERSION), for tests/monitoring: its metrics server runs behind the metrics gate on
# loopback. Idempotent: a cached build is reused at once; the first build needs Go and the Go module proxy.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$(bash "$ROOT/images/build.sh" --oauth2-proxy-binary)"
"$bin" --version
