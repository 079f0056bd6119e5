"""The stack outputs the app reads: its half of the contract with the Pulumi program.

The program exports these snake_case keys (``pulumi stack output --json``); the app's settings
(:mod:`app.config`) read each of them into the field of the same name. A test compares
:data:`APP_STACK_OUTPUT_KEYS` with the keys the program exports (``components/outputs.py``).

Keys the program exports for other readers (``port_matrix``, ``oidc_client_secret``,
``datalens_dsn``, …) are deliberately not read: the app needs neither the oauth2-proxy client
secret nor the DataLens connection string.
"""

from typing import Final

PROFILE: Final = "profile"
PUBLIC_URL: Final = "public_url"
DATABASE_URL: Final = "database_url"
MIGRATOR_URL: Final = "migrator_url"
KEYCLOAK_ISSUER_URL: Final = "keycloak_issuer_url"
KEYCLOAK_JWKS_URL: Final = "keycloak_jwks_url"
OIDC_CLIENT_ID: Final = "oidc_client_id"
CORS_ORIGINS: Final = "cors_origins"
DATALENS_EMBED_ORIGINS: Final = "datalens_embed_origins"

APP_STACK_OUTPUT_KEYS: Final[tuple[str, ...]] = (
    PROFILE,
    PUBLIC_URL,
    DATABASE_URL,
    MIGRATOR_URL,
    KEYCLOAK_ISSUER_URL,
    KEYCLOAK_JWKS_URL,
    OIDC_CLIENT_ID,
    CORS_ORIGINS,
    DATALENS_EMBED_ORIGINS,
)

# Stack outputs holding secrets; never logged or written to flow_events unmasked.
SECRET_STACK_OUTPUT_KEYS: Final = frozenset({DATABASE_URL, MIGRATOR_URL})

ENV_PREFIX: Final = "FLY_POTATO_"
STACK_OUTPUTS_FILE_ENV: Final = "FLY_POTATO_STACK_OUTPUTS"
STACK_NAME_ENV: Final = "FLY_POTATO_STACK"
