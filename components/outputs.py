"""Stack-output keys: the contract between the Pulumi program and its readers (the app, CI, docs).

Keys are snake_case and never renamed casually; ``app/contract.py`` lists the ones the app reads and a
test checks both sides agree.
"""

from typing import Final

PROFILE: Final = "profile"
PUBLIC_URL: Final = "public_url"
PORT_MATRIX: Final = "port_matrix"
ZONES: Final = "zones"
INTERNAL_URLS: Final = "internal_urls"
CONTAINERS: Final = "containers"
DATABASE_URL: Final = "database_url"
MIGRATOR_URL: Final = "migrator_url"
DATALENS_DSN: Final = "datalens_dsn"
KEYCLOAK_ISSUER_URL: Final = "keycloak_issuer_url"
KEYCLOAK_JWKS_URL: Final = "keycloak_jwks_url"
OIDC_CLIENT_ID: Final = "oidc_client_id"
OIDC_CLIENT_SECRET: Final = "oidc_client_secret"  # noqa: S105 (a key name)
KEYCLOAK_ADMIN: Final = "keycloak_admin"  # bootstrap admin of the master realm, for operators
KEYCLOAK_TEST_USERS: Final = "keycloak_test_users"  # dev: test username -> generated password
CORS_ORIGINS: Final = "cors_origins"
DATALENS_EMBED_ORIGINS: Final = "datalens_embed_origins"

# Outputs whose values are Pulumi secrets.
SECRET_KEYS: Final = frozenset(
    {DATABASE_URL, MIGRATOR_URL, DATALENS_DSN, OIDC_CLIENT_SECRET, KEYCLOAK_ADMIN, KEYCLOAK_TEST_USERS}
)
