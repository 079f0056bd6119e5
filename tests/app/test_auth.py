"""Keycloak token verification on /api: issuer, audience, signature via JWKS, expiry, groups → roles."""

from __future__ import annotations

import httpx
import pytest

from app.auth import normalise_groups
from tests.app.data import FLIGHTS_CSV, csv_file
from tests.app.oidc import FakeKeycloak, new_rsa_key

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_valid_analyst_token_reads(client: httpx.AsyncClient, keycloak: FakeKeycloak) -> None:
    response = await client.get("/api/stats/overview", headers=keycloak.headers(["analysts"]))
    assert response.status_code == 200


async def test_oauth2_proxy_header_is_accepted(client: httpx.AsyncClient, keycloak: FakeKeycloak) -> None:
    response = await client.get("/api/regions", headers={"X-Forwarded-Access-Token": keycloak.token(["analysts"])})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "detail"),
    [
        ({"audience": "some-other-client"}, "token audience does not match"),
        ({"expires_in": -3600}, "token expired"),
        ({"issuer": "https://evil.example/sso/realms/fly-potato-test"}, "token issuer does not match"),
        ({"key": new_rsa_key()}, "invalid token"),
        ({"kid": "unknown-kid"}, "token signed with an unknown key"),
    ],
    ids=["wrong-audience", "expired", "wrong-issuer", "bad-signature", "unknown-kid"],
)
async def test_invalid_tokens_get_401(
    client: httpx.AsyncClient, keycloak: FakeKeycloak, kwargs: dict[str, object], detail: str
) -> None:
    response = await client.get("/api/stats/overview", headers=keycloak.headers(["admins"], **kwargs))  # type: ignore[arg-type]
    assert response.status_code == 401
    assert response.json()["detail"] == detail
    assert response.headers["www-authenticate"] == "Bearer"


async def test_missing_or_garbage_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/stats/overview")).status_code == 401
    assert (await client.get("/api/stats/overview", headers={"Authorization": "Bearer not.a.jwt"})).status_code == 401
    assert (await client.get("/api/stats/overview", headers={"Authorization": "Basic Zm9vOmJhcg=="})).status_code == 401


async def test_missing_group_gets_403(client: httpx.AsyncClient, keycloak: FakeKeycloak) -> None:
    response = await client.get("/api/stats/overview", headers=keycloak.headers(["pilots"]))
    assert response.status_code == 403
    assert "analysts" in response.json()["detail"]


async def test_analysts_cannot_import_admins_can(client: httpx.AsyncClient, keycloak: FakeKeycloak) -> None:
    denied = await client.post(
        "/api/imports/flights", files=csv_file(FLIGHTS_CSV), headers=keycloak.headers(["analysts"])
    )
    assert denied.status_code == 403
    allowed = await client.post(
        "/api/imports/flights", files=csv_file(FLIGHTS_CSV), headers=keycloak.headers(["/admins"])
    )
    assert allowed.status_code == 200


async def test_ops_endpoints_need_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).status_code == 200


async def test_group_paths_are_normalised() -> None:
    assert normalise_groups(["/admins", "analysts", "/org/sub/analysts/", 3, ""]) == {"admins", "analysts"}
    assert normalise_groups("admins") == frozenset()
