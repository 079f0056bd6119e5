"""The auth zone's components alone, from hand-made args under the mocks: AuthServices (Keycloak,
oauth2-proxy) and the IdentityRealm it builds (R-AUTH-1, R-AUTH-2, R-AUTH-3, R-SEC-1, R-SEC-4)."""

from __future__ import annotations

from typing import Any

import pytest

from components.auth_services import KEYCLOAK_PATH, AuthArgs, AuthServices
from components.hardened_container import SECRETS_DIR
from components.identity_realm import RealmConfig, SeededUser
from components.oauth2_proxy import CLIENT_SECRET_FILE, CONFIG_FILE, COOKIE_SECRET_FILE
from policy_plan.program import ProgramGraph, is_secret
from tests.support.components import children, component, component_graph
from tests.unit.test_backup_wiring import env, uploads
from tests.unit.test_component_data import secret_files, service

PROXY_CONFIG = 'provider = "keycloak-oidc"  # hand-made\n'
REALM = RealmConfig(
    realm="lone-realm",
    public_url="https://fly.example",
    operator_url="http://127.0.0.1:18080",
    admin_user="root-admin",
    client_timeout_seconds=40,
    access_token_minutes=4,
    session_idle_minutes=20,
    session_max_hours=8,
    groups=["admins", "analysts", "pilots"],
    groups_full_path=True,
    users=[SeededUser("alice", ["pilots"])],
    protect=False,
    rotation_epoch=3,
)


def auth_args(placement: Any, zones: Any, *, production: bool) -> AuthArgs:
    return AuthArgs(
        placement=placement,
        zones=zones,
        keycloak_image="keycloak:test",
        oauth2_proxy_image="oauth2-proxy:test",
        keycloak_port=8081,
        keycloak_management_port=9001,
        postgres_port=5433,
        oauth2_proxy_port=4181,
        oauth2_proxy_metrics_port=44181,
        oauth2_proxy_metrics_upstream=9999,
        oauth2_proxy_config=PROXY_CONFIG,
        realm=REALM,
        production=production,
        admin_console_url="https://admin.fly.example" if production else None,
        trusted_proxies="10.77.0.0/24",
        keycloak_db_password="keycloak-db-secret",
        metrics_token="MetricsToken0123456789abcdefABCDEF42",
    )


@pytest.fixture(scope="module", params=[False, True], ids=["dev", "prod"])
def production(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture(scope="module")
def graph(production: bool) -> ProgramGraph:

    def build(_settings: Any, placement: Any, zones: Any) -> None:
        auth = AuthServices("auth", auth_args(placement, zones, production=production))
        assert auth.issuer_url == "https://fly.example/sso/realms/lone-realm"
        assert auth.internal_url == "http://keycloak:8081/sso"
        assert auth.jwks_url == "http://keycloak:8081/sso/realms/lone-realm/protocol/openid-connect/certs"

    return component_graph("dev", build)


def test_children_of_auth(graph: ProgramGraph, production: bool) -> None:
    auth = component(graph, "fly-potato:auth:AuthServices")
    names = {r.name for r in children(graph, auth)}
    expected = {
        "auth-keycloak-admin",
        "auth-oidc-client-secret",
        "auth-oauth2-proxy-cookie",
        "auth-keycloak",
        "auth-identity",
        "auth-oauth2-proxy",
    }
    assert names - {"auth-keycloak-dev-build"} == expected
    assert ("auth-keycloak-dev-build" in names) is not production  # start-dev's build volume
    secrets = {r.name: r for r in graph.of_type("random:index/randomPassword:RandomPassword")}
    assert secrets["auth-oidc-client-secret"].prop("keepers") == {"rotation_epoch": "3"}
    assert secrets["auth-keycloak-admin"].prop("keepers") == {"applied": "at-first-start"}


def test_keycloak_from_the_args(graph: ProgramGraph, production: bool) -> None:
    keycloak = service(graph, "auth-keycloak")
    assert keycloak.prop("image") == "keycloak:test"
    variables = env(keycloak)
    assert variables["KC_DB_URL"] == "jdbc:postgresql://postgres:5433/keycloak"
    assert variables["KC_HTTP_PORT"] == "8081"
    assert variables["KC_PROXY_TRUSTED_ADDRESSES"] == "10.77.0.0/24"
    assert variables["KC_HOSTNAME"] == f"https://fly.example{KEYCLOAK_PATH}"
    command = keycloak.prop("command")
    if production:
        assert variables["KC_HOSTNAME_ADMIN"] == f"https://admin.fly.example{KEYCLOAK_PATH}"
        assert "start" in command and "--optimized" in command
    else:
        assert "KC_HOSTNAME_ADMIN" not in variables
        assert "start-dev" in command
    config = uploads(graph.files_containers()["keycloak"])[f"{SECRETS_DIR}/keycloak.conf"]["content"]
    assert "db-password=keycloak-db-secret" in config and "bootstrap-admin-username=root-admin" in config
    assert f"{SECRETS_DIR}/keycloak.conf" in secret_files(graph, "keycloak")


def test_oauth2_proxy_receives_the_rendered_config_and_its_secrets(graph: ProgramGraph) -> None:
    proxy = service(graph, "auth-oauth2-proxy")
    assert proxy.prop("image") == "oauth2-proxy:test"
    files = uploads(graph.files_containers()["oauth2_proxy"])
    assert files[CONFIG_FILE]["content"] == PROXY_CONFIG
    assert {CLIENT_SECRET_FILE, COOKIE_SECRET_FILE} <= secret_files(graph, "oauth2_proxy")
    proxy_component = next(r for r in graph.resources if r.name == "auth-oauth2-proxy" and not r.custom)
    # The realm and the client exist before oauth2-proxy starts and discovers them.
    assert graph.by_name("auth-identity-realm").urn in proxy_component.dependencies


def test_identity_realm_from_the_realm_config(graph: ProgramGraph) -> None:
    (provider,) = graph.of_type("pulumi:providers:keycloak")
    assert provider.prop("url") == "http://127.0.0.1:18080"
    assert provider.prop("username") == "root-admin"
    assert provider.prop("clientTimeout") == "40"
    (realm,) = graph.of_type("keycloak:index/realm:Realm")
    assert realm.prop("realm") == "lone-realm"
    assert realm.prop("accessTokenLifespan") == "4m"
    assert {g.prop("name") for g in graph.of_type("keycloak:index/group:Group")} == {"admins", "analysts", "pilots"}
    (client,) = graph.of_type("keycloak:openid/client:Client")
    assert client.prop("validRedirectUris") == ["https://fly.example/oauth2/callback"]
    assert is_secret(client.inputs["clientSecret"])
    (user,) = graph.of_type("keycloak:index/user:User")
    assert user.prop("username") == "alice"
    assert is_secret(user.inputs["initialPassword"])
    (memberships,) = graph.of_type("keycloak:index/userGroups:UserGroups")
    assert len(memberships.prop("groupIds")) == 1
