"""Keycloak under mocks: the container's R-AUTH-2 settings, the provider's gate, realm, groups, client and
mappers, and the dev test users (R-AUTH-2, R-AUTH-3, R-AUTH-4, R-SEC-1).

What the tokens really carry (claims, audience, group paths) is for the end-to-end tier.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from components.settings import SettingsError, parse_settings
from policy_plan.program import PlannedResource, ProgramGraph, evaluate_program, is_secret, stack_config

KC = "keycloak:"
STACKS = pytest.mark.parametrize("stack", ["dev", "prod"])
DOMAIN = {"dev": "http://localhost", "prod": "https://flypotato.example.com"}


@cache
def _graph(stack: str, overrides: str) -> ProgramGraph:
    graph = evaluate_program(stack, json.loads(overrides))
    assert graph.error is None, graph.error
    return graph


def graph(stack: str, **overrides: Any) -> ProgramGraph:
    return _graph(stack, json.dumps(overrides, sort_keys=True))


def one(g: ProgramGraph, type_: str) -> PlannedResource:
    (found,) = g.of_type(type_)
    return found


def env_of(container: PlannedResource) -> dict[str, str]:
    return dict(item.split("=", 1) for item in container.prop("envs"))


# --- the container (R-AUTH-2, R-AUTH-4) -----------------------------------------------------------------


def test_prod_runs_the_optimised_build_and_dev_runs_start_dev() -> None:
    prod = graph("prod").containers()["keycloak"]
    dev = graph("dev").containers()["keycloak"]
    # The image's entrypoint (kc.sh) as the command of the metrics gate (R-SEC-5).
    assert prod.prop("command")[:3] == ["keycloak-entrypoint", "start", "--optimized"]
    assert dev.prop("command")[:2] == ["keycloak-entrypoint", "start-dev"]
    assert prod.prop("readOnly") is True and dev.prop("readOnly") is True
    mounts = {m["target"]: m for m in dev.prop("mounts")}
    assert mounts["/opt/keycloak/lib/quarkus"]["type"] == "volume", "start-dev re-augments into a volume"
    assert "/opt/keycloak/lib/quarkus" not in {m["target"] for m in prod.prop("mounts")}


@STACKS
def test_keycloak_26_settings_behind_nginx(stack: str) -> None:
    env = env_of(graph(stack).containers()["keycloak"])
    assert env["KC_HTTP_RELATIVE_PATH"] == "/sso"
    assert env["KC_PROXY_HEADERS"] == "xforwarded"
    assert env["KC_HTTP_ENABLED"] == "true"
    assert env["KC_HOSTNAME"] == f"{DOMAIN[stack]}/sso"
    assert env["KC_HOSTNAME_STRICT"] == "true"
    assert env["KC_HEALTH_ENABLED"] == env["KC_METRICS_ENABLED"] == "true"
    # R-SEC-5: the management interface (metrics, health) on loopback only, behind the gate on 9000.
    assert env["KC_HTTP_MANAGEMENT_HOST"] == "127.0.0.1"
    assert env["KC_HTTP_MANAGEMENT_PORT"] == "9999"
    assert env["KC_DB"] == "postgres"
    assert env["KC_DB_URL"] == "jdbc:postgresql://postgres:5433/keycloak"
    assert env["KC_DB_USERNAME"] == "keycloak"
    assert env["KC_PROXY_TRUSTED_ADDRESSES"].startswith("10.231.")
    assert "KC_PROXY" not in env, "Keycloak 26 removed KC_PROXY"
    assert not any(key.startswith("KEYCLOAK_ADMIN") for key in env), "the pre-26 admin variables are gone"
    assert not any("PASSWORD" in key for key in env)


def test_prod_has_an_internal_admin_hostname() -> None:
    assert env_of(graph("prod").containers()["keycloak"])["KC_HOSTNAME_ADMIN"] == "http://127.0.0.1:8080/sso"
    tunnelled = graph("prod", **{"operator_endpoints.keycloak_url": "http://localhost:18080"})
    assert env_of(tunnelled.containers()["keycloak"])["KC_HOSTNAME_ADMIN"] == "http://localhost:18080/sso"


@STACKS
def test_health_is_probed_on_the_management_port_and_awaited(stack: str) -> None:
    """The gate's /healthz on the management listener answers Keycloak's /sso/health/ready (R-SEC-5)."""
    container = graph(stack).containers()["keycloak"]
    assert container.prop("wait") is True
    health = " ".join(container.prop("healthcheck")["tests"])
    assert "/dev/tcp/127.0.0.1/9000" in health and "GET /healthz " in health
    gate = {u["file"]: u for u in container.prop("uploads")}["/etc/fly-potato/metrics-gate.conf"]["content"]
    assert "listen 9000;" in gate
    assert "location = /healthz {\n            proxy_pass http://127.0.0.1:9999/sso/health/ready;" in gate


@STACKS
def test_bootstrap_admin_and_db_password_arrive_in_a_secret_file(stack: str) -> None:
    container = graph(stack).containers()["keycloak"]
    assert is_secret(container.inputs["uploads"])
    (conf,) = [u for u in container.prop("uploads") if u["file"].endswith("keycloak.conf")]
    assert conf["permissions"] == "0400"
    lines = dict(line.split("=", 1) for line in conf["content"].splitlines() if line)
    assert lines["bootstrap-admin-username"] == "platform-admin"
    assert lines["bootstrap-admin-password"].startswith("Mock")
    assert lines["db-password"].startswith("Mock")
    assert f"--config-file={conf['file']}" in container.prop("command")


@STACKS
def test_the_admin_password_is_generated_per_stack_and_pinned(stack: str) -> None:
    admin = graph(stack, **{"secrets.rotation_epoch": 9}).by_name("auth-keycloak-admin")
    assert "rotation_epoch" not in admin.prop("keepers"), "Keycloak only reads it on its first start"
    assert int(admin.prop("length")) >= 32


# --- the provider ---------------------------------------------------------------------------------------


@STACKS
def test_the_provider_waits_for_the_health_gated_container(stack: str) -> None:
    g = graph(stack)
    provider = one(g, "pulumi:providers:keycloak")
    assert g.containers()["keycloak"].urn in provider.dependencies
    assert provider.prop("url") == "http://127.0.0.1:8080"
    assert provider.prop("basePath") == "/sso"
    assert provider.prop("realm") == "master"
    assert provider.prop("clientId") == "admin-cli"
    assert provider.prop("username") == "platform-admin"
    assert provider.prop("initialLogin") == "false"
    assert is_secret(provider.inputs["password"])


@STACKS
def test_every_keycloak_resource_goes_through_that_provider(stack: str) -> None:
    g = graph(stack)
    provider = one(g, "pulumi:providers:keycloak")
    managed = [r for r in g.resources if r.type.startswith(KC)]
    assert len(managed) >= 8
    for r in managed:
        assert r.provider.startswith(provider.urn + "::"), r.name


def test_the_provider_follows_a_tunnel() -> None:
    g = graph("prod", **{"operator_endpoints.keycloak_url": "http://localhost:18080"})
    assert one(g, "pulumi:providers:keycloak").prop("url") == "http://localhost:18080"


# --- realm, groups, client, mappers (R-AUTH-3) ------------------------------------------------------------


@STACKS
def test_realm_per_stack_with_brute_force_protection_and_password_policy(stack: str) -> None:
    realm = one(graph(stack), f"{KC}index/realm:Realm")
    assert realm.prop("realm") == f"fly-potato-{stack}"
    assert realm.prop("sslRequired") == "external"
    assert realm.prop("registrationAllowed") is False
    brute = realm.prop("securityDefenses")["bruteForceDetection"]
    assert brute["maxLoginFailures"] == 5
    assert brute["waitIncrementSeconds"] > 0
    assert "length(12)" in realm.prop("passwordPolicy")
    assert "notUsername" in realm.prop("passwordPolicy")
    assert realm.prop("accessTokenLifespan") == "5m"
    assert realm.prop("ssoSessionIdleTimeout") == "30m"
    assert realm.prop("ssoSessionMaxLifespan") == "10h"
    assert realm.prop("revokeRefreshToken") is True
    assert realm.prop("securityDefenses")["headers"]["strictTransportSecurity"] == "max-age=31536000; includeSubDomains"


def test_token_lifetimes_and_realm_name_come_from_config() -> None:
    realm = one(
        graph("prod", **{"keycloak.realm": "potato", "keycloak.access_token_minutes": 2}), f"{KC}index/realm:Realm"
    )
    assert (realm.prop("realm"), realm.prop("accessTokenLifespan")) == ("potato", "2m")


@STACKS
def test_groups_admins_and_analysts(stack: str) -> None:
    g = graph(stack)
    assert {r.prop("name") for r in g.of_type(f"{KC}index/group:Group")} == {"admins", "analysts"}
    more = graph(stack, **{"keycloak.groups": ["editors"]})
    assert {r.prop("name") for r in more.of_type(f"{KC}index/group:Group")} == {"admins", "analysts", "editors"}


@STACKS
def test_confidential_client_for_oauth2_proxy(stack: str) -> None:
    g = graph(stack)
    client = one(g, f"{KC}openid/client:Client")
    assert client.prop("clientId") == "oauth2-proxy"
    assert client.prop("accessType") == "CONFIDENTIAL"
    assert client.prop("standardFlowEnabled") is True
    for flow in (
        "implicitFlowEnabled",
        "directAccessGrantsEnabled",
        "serviceAccountsEnabled",
        "oauth2DeviceAuthorizationGrantEnabled",
    ):
        assert client.prop(flow) is False, flow
    assert client.prop("pkceCodeChallengeMethod") == "S256"
    assert client.prop("validRedirectUris") == [f"{DOMAIN[stack]}/oauth2/callback"]
    assert client.prop("webOrigins") == [DOMAIN[stack]]
    assert is_secret(client.inputs["clientSecret"])
    # The same pulumi-random secret oauth2-proxy is configured with.
    secret = g.by_name("auth-oidc-client-secret")
    assert secret.urn in client.property_dependencies["clientSecret"]


@STACKS
def test_mappers_email_username_groups_and_audience(stack: str) -> None:
    g = graph(stack)
    client = one(g, f"{KC}openid/client:Client")
    user_props = {
        r.prop("name"): r for r in g.of_type(f"{KC}openid/userPropertyProtocolMapper:UserPropertyProtocolMapper")
    }
    assert {n: (m.prop("userProperty"), m.prop("claimName")) for n, m in user_props.items()} == {
        "email": ("email", "email"),
        "preferred_username": ("username", "preferred_username"),
    }
    for mapper in user_props.values():
        assert mapper.prop("addToIdToken") is True and mapper.prop("addToAccessToken") is True
    groups = one(g, f"{KC}openid/groupMembershipProtocolMapper:GroupMembershipProtocolMapper")
    assert (groups.prop("claimName"), groups.prop("fullPath")) == ("groups", False)
    assert groups.prop("addToIdToken") is True and groups.prop("addToAccessToken") is True
    audience = one(g, f"{KC}openid/audienceProtocolMapper:AudienceProtocolMapper")
    assert audience.prop("includedClientAudience") == "oauth2-proxy"
    assert audience.prop("addToAccessToken") is True
    mappers = [*user_props.values(), groups, audience]
    for mapper in mappers:
        assert client.urn in mapper.property_dependencies["clientId"], mapper.name


def test_group_paths_follow_config() -> None:
    groups = one(
        graph("dev", **{"keycloak.groups_full_path": True}),
        f"{KC}openid/groupMembershipProtocolMapper:GroupMembershipProtocolMapper",
    )
    assert groups.prop("fullPath") is True


@STACKS
def test_oauth2_proxy_starts_after_the_realm_and_client_exist(stack: str) -> None:
    g = graph(stack)
    waits = g.ancestors_and_dependencies(g.containers()["oauth2_proxy"].urn)
    assert one(g, f"{KC}openid/client:Client").urn in waits
    assert one(g, f"{KC}index/realm:Realm").urn in waits


@STACKS
def test_keycloak_waits_for_its_database_role_and_grants(stack: str) -> None:
    g = graph(stack)
    waits = g.ancestors_and_dependencies(g.containers()["keycloak"].urn)
    keycloak_db = next(r for r in g.of_type("postgresql:index/database:Database") if r.prop("name") == "keycloak")
    assert keycloak_db.urn in waits


# --- test users (dev only) ----------------------------------------------------------------------------------


def test_dev_seeds_test_users_with_generated_secret_passwords() -> None:
    g = graph("dev")
    users = {r.prop("username"): r for r in g.of_type(f"{KC}index/user:User")}
    assert set(users) == {"analyst", "admin-user"}
    for user in users.values():
        assert is_secret(user.inputs["initialPassword"])
        assert user.prop("initialPassword")["temporary"] is False
        assert user.prop("initialPassword")["value"].startswith("Mock")
        assert user.options["delete_before_replace"], "a rotated password replaces the user"
    groups = {r.urn: r.prop("name") for r in g.of_type(f"{KC}index/group:Group")}
    memberships = {}
    for link in g.of_type(f"{KC}index/userGroups:UserGroups"):
        (user_urn,) = link.property_dependencies["userId"]
        username = g.by_urn(user_urn).prop("username")
        memberships[username] = {groups[u] for u in link.property_dependencies["groupIds"]}
        assert link.prop("exhaustive") is True
    assert memberships == {"analyst": {"analysts"}, "admin-user": {"admins", "analysts"}}
    exported = g.outputs["keycloak_test_users"]
    assert exported["secret"] is True
    assert set(exported["value"]) == {"analyst", "admin-user"}
    assert all(v.startswith("Mock") for v in exported["value"].values())


def test_prod_has_no_test_users() -> None:
    g = graph("prod")
    assert not g.of_type(f"{KC}index/user:User")
    assert g.outputs["keycloak_test_users"] == {"secret": True, "value": {}}
    with pytest.raises(SettingsError, match=r"keycloak.test_users is refused in prod"):
        parse_settings(stack_config("prod", {"keycloak.test_users": ["analyst"]}), stack="prod")


def test_prod_refuses_seeding_test_users() -> None:
    with pytest.raises(SettingsError, match="seed_test_users"):
        parse_settings(stack_config("prod", {"features.seed_test_users": True}), stack="prod")


def test_a_test_user_in_an_unknown_group_is_refused() -> None:
    config = stack_config("dev", {"keycloak.test_users": [{"username": "bob", "groups": ["wizards"]}]})
    with pytest.raises(SettingsError, match=r"keycloak.test_users\[0\].groups names \"wizards\""):
        parse_settings(config, stack="dev")


# --- outputs ----------------------------------------------------------------------------------------------------


@STACKS
def test_identity_outputs(stack: str) -> None:
    outputs = graph(stack).outputs
    assert outputs["keycloak_issuer_url"] == f"{DOMAIN[stack]}/sso/realms/fly-potato-{stack}"
    assert outputs["oidc_client_id"] == "oauth2-proxy"
    assert outputs["oidc_client_secret"]["secret"] is True
    assert outputs["keycloak_admin"]["secret"] is True
    assert outputs["keycloak_admin"]["value"]["username"] == "platform-admin"
