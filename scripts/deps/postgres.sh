#!/usr/bin/env bash
# Install PostgreSQL 15 + PostGIS 3 from Debian bookworm packages (used by tests/support/postgres.py).
# Idempotent: returns at once when both are present.
set -euo pipefail

PG_MAJOR="${PG_MAJOR:-15}"
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
POSTGIS_CONTROL="/usr/share/postgresql/${PG_MAJOR}/extension/postgis.control"

if [[ -x "${PG_BIN}/initdb" && -x "${PG_BIN}/postgres" && -f "${POSTGIS_CONTROL}" ]]; then
  echo "postgresql-${PG_MAJOR} and PostGIS 3 already installed (${PG_BIN})"
  exit 0
fi

SUDO=""
if [[ "$(id -u)" != "0" ]]; then
  SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
${SUDO} apt-get update -qq
${SUDO} apt-get install -y -qq --no-install-recommends \
  "postgresql-${PG_MAJOR}" "postgresql-${PG_MAJOR}-postgis-3" "postgresql-client-${PG_MAJOR}"

"${PG_BIN}/postgres" --version
test -f "${POSTGIS_CONTROL}" && echo "PostGIS: $(grep default_version "${POSTGIS_CONTROL}")"
