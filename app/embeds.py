"""Short-lived JWTs for DataLens private embeds (R-APP-3).

DataLens verifies the token with the public half of the embed key it issued; the ``kid``
header names the key, so a new key can be rolled out (new file + new id) while DataLens still
knows the old one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from app.config import Settings

EMBED_SERVICE_MARK = "YC_DATALENS_EMBEDDING_SERVICE_MARK"
ALGORITHM = "PS256"


class EmbedsNotConfigured(RuntimeError):
    pass


class EmbedSigner:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def _key(self) -> RSAPrivateKey:
        if self.settings.datalens_private_key is None or not self.settings.datalens_key_id:
            raise EmbedsNotConfigured(
                "DataLens embedding is not configured: set FLY_POTATO_DATALENS_PRIVATE_KEY_FILE "
                "and FLY_POTATO_DATALENS_KEY_ID."
            )
        try:
            key = load_pem_private_key(self.settings.datalens_private_key.get_secret_value().encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise EmbedsNotConfigured("the DataLens private key is not an unencrypted PEM key") from exc
        if not isinstance(key, RSAPrivateKey):
            raise EmbedsNotConfigured("the DataLens private key must be an RSA key (DataLens signs with PS256)")
        return key

    def issue(self, dashboard: str, params: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
        embed_id = self.settings.datalens_embed_ids.get(dashboard)
        if not embed_id:
            raise EmbedsNotConfigured(
                f"no DataLens embed id for dashboard {dashboard!r}; set FLY_POTATO_DATALENS_EMBED_IDS"
            )
        issued = (now or datetime.now(UTC)).replace(microsecond=0)
        expires = issued + timedelta(seconds=self.settings.datalens_token_ttl_seconds)
        payload = {
            "embedId": embed_id,
            "dlEmbedService": EMBED_SERVICE_MARK,
            "iat": int(issued.timestamp()),
            "exp": int(expires.timestamp()),
            "params": params,
        }
        key_id = str(self.settings.datalens_key_id)
        token = jwt.encode(payload, self._key, algorithm=ALGORITHM, headers={"kid": key_id})
        return {
            "dashboard": dashboard,
            "token": token,
            "key_id": key_id,
            "expires_at": expires,
            "embed_url": f"{self.settings.datalens_embed_base_url}#dl_embed_token={token}",
        }
