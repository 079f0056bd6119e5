"""Keycloak access-token verification (issuer, audience, signature via JWKS, expiry) and roles."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from app.config import Settings

ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
# A token naming an unknown kid may trigger a JWKS refresh at most this often (key rotation, not abuse).
MIN_REFRESH_INTERVAL_S = 10.0


class Role(StrEnum):
    IMPORTER = "importer"
    READER = "reader"


class TokenError(Exception):
    """The bearer token is missing or invalid; ``str()`` is safe to return to the client."""


class JwksUnavailable(Exception):
    """Keycloak's JWKS endpoint could not be reached."""


@dataclass(frozen=True)
class Principal:
    subject: str
    username: str | None
    email: str | None
    groups: frozenset[str]
    roles: frozenset[Role]
    claims: dict[str, Any] = field(repr=False, compare=False)


def normalise_groups(raw: Any) -> frozenset[str]:
    """Keycloak's group mapper emits ``admins`` or, with full path, ``/admins`` or ``/org/admins``."""
    if not isinstance(raw, list):
        return frozenset()
    return frozenset(str(g).rstrip("/").rsplit("/", 1)[-1] for g in raw if isinstance(g, str) and g.strip("/"))


def roles_for(groups: frozenset[str], settings: Settings) -> frozenset[Role]:
    roles: set[Role] = set()
    if settings.admin_group in groups:
        roles |= {Role.IMPORTER, Role.READER}
    if settings.analyst_group in groups:
        roles.add(Role.READER)
    return frozenset(roles)


class JwksCache:
    """Keys from the JWKS URL, cached for ``ttl`` seconds and refreshed when an unknown kid arrives."""

    def __init__(self, url: str, ttl: float, client: httpx.AsyncClient | None = None) -> None:
        self.url = url
        self.ttl = ttl
        self._client = client
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def get(self, kid: str | None) -> PyJWK:
        now = time.monotonic()
        if not self._keys or now - self._fetched_at > self.ttl:
            await self._refresh()
        key = self._lookup(kid)
        if key is None and time.monotonic() - self._fetched_at > MIN_REFRESH_INTERVAL_S:
            await self._refresh()
            key = self._lookup(kid)
        if key is None:
            raise TokenError("token signed with an unknown key")
        return key

    def _lookup(self, kid: str | None) -> PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        async with self._lock:
            try:
                if self._client is not None:
                    response = await self._client.get(self.url, timeout=5.0)
                else:
                    async with httpx.AsyncClient() as client:
                        response = await client.get(self.url, timeout=5.0)
                response.raise_for_status()
                document = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                if self._keys:  # keep serving with the keys we have
                    return
                raise JwksUnavailable(f"JWKS at {self.url} unavailable: {exc.__class__.__name__}") from exc
            keys: dict[str, PyJWK] = {}
            for entry in document.get("keys", []):
                if entry.get("use", "sig") != "sig":
                    continue
                try:
                    keys[entry.get("kid", "")] = PyJWK(entry)
                except jwt.PyJWTError:
                    continue  # algorithms we do not support (e.g. RSA-OAEP encryption keys)
            self._keys = keys
            self._fetched_at = time.monotonic()


class TokenVerifier:
    def __init__(self, settings: Settings, jwks: JwksCache | None = None) -> None:
        self.settings = settings
        self.jwks = jwks or JwksCache(settings.keycloak_jwks_url, settings.jwks_cache_seconds)

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise TokenError("token algorithm not allowed")
        key = await self.jwks.get(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self.settings.oidc_client_id,
                issuer=self.settings.keycloak_issuer_url,
                leeway=self.settings.token_leeway_seconds,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("token audience does not match") from exc
        except jwt.InvalidIssuerError as exc:
            raise TokenError("token issuer does not match") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("invalid token") from exc
        groups = normalise_groups(claims.get("groups"))
        return Principal(
            subject=str(claims["sub"]),
            username=claims.get("preferred_username"),
            email=claims.get("email"),
            groups=groups,
            roles=roles_for(groups, self.settings),
            claims=claims,
        )
