"""Dependencies, declared once as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import JwksUnavailable, Principal, Role, TokenError, TokenVerifier
from app.config import Settings

TOKEN_HEADERS = ("x-forwarded-access-token", "x-auth-request-access-token")


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # oauth2-proxy passes the access token in one of these when nginx forwards it.
    for name in TOKEN_HEADERS:
        if value := request.headers.get(name):
            return value.strip()
    return None


def _unauthorised(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


async def get_principal(request: Request) -> Principal:
    token = _bearer(request)
    if token is None:
        raise _unauthorised("a bearer access token from Keycloak is required")
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        return await verifier.verify(token)
    except TokenError as exc:
        raise _unauthorised(str(exc)) from exc
    except JwksUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail="identity provider keys unavailable") from exc


CurrentUser = Annotated[Principal, Depends(get_principal)]


def require(role: Role) -> object:
    async def _check(user: CurrentUser, settings: SettingsDep) -> Principal:
        if role not in user.roles:
            group = (
                settings.admin_group if role is Role.IMPORTER else f"{settings.analyst_group} or {settings.admin_group}"
            )
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=f"requires membership in the Keycloak group {group}")
        return user

    return Depends(_check)


Reader = Annotated[Principal, require(Role.READER)]
Importer = Annotated[Principal, require(Role.IMPORTER)]
