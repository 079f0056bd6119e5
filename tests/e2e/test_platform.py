"""End to end through the real Pulumi engine: a throwaway dev-profile stack brought up with ``pulumi up``
(Automation API, the project's toolchain, the policy pack), checked on the running containers, brought up
again with no change, destroyed. Stack ``e2e`` (objects ``fly-potato-e2e-*``), every published port on a
free loopback port, its own file backend. ``make e2e``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest
import requests

from policy.program import ProgramGraph
from tests.e2e.engine import EngineStack, EngineUnavailable, inspect, leftovers, logs, purge, require_engine

pytestmark = pytest.mark.e2e
E2E_STACK = "e2e"


@dataclass
class Live:
    graph: ProgramGraph
    engine: EngineStack
    ports: dict[str, int]
    up_seconds: float

    @property
    def base(self) -> str:
        return self.graph.outputs["public_url"]

    def container(self, service: str) -> str:
        return self.graph.containers()[service].prop("name")

    def role_password(self, role: str) -> str:
        return self.graph.by_name(f"database-role-{role}").prop("password")

    def connect(self, role: str, database: str = "flypotato") -> Any:
        password = self.superuser_password() if role == "postgres" else self.role_password(role)
        conn = psycopg2.connect(
            host="127.0.0.1",
            port=self.ports["postgres"],
            user=role,
            password=password,
            dbname=database,
            connect_timeout=10,
        )
        conn.autocommit = True
        return conn

    def superuser_password(self) -> str:
        uploads = self.graph.containers()["postgres"].prop("uploads")
        return next(u["content"] for u in uploads if u["file"].endswith("/postgres_password"))


@pytest.fixture(scope="session")
def live() -> Iterator[Live]:
    try:
        require_engine()
    except EngineUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    purge(E2E_STACK)
    engine = EngineStack(E2E_STACK)
    started = time.monotonic()
    try:
        engine.up()
        yield Live(engine.graph(), engine, engine.ports, time.monotonic() - started)
    except Exception:
        print("\n".join(engine.events[-60:]))
        raise
    finally:
        engine.remove()
        purge(E2E_STACK)


def _http(url: str, **kwargs: Any) -> Any:
    return requests.get(url, timeout=10, allow_redirects=False, **kwargs)


# -- containers ----------------------------------------------------------------------------------------------


def test_every_long_running_container_is_healthy(live: Live) -> None:
    for service, resource in live.graph.containers().items():
        if not resource.prop("mustRun"):
            continue
        state = inspect(resource.prop("name"))["State"]
        assert state["Running"], service
        assert state["Health"]["Status"] == "healthy", (service, state["Health"]["Log"][-1:])


def test_migration_exited_zero(live: Live) -> None:
    state = inspect(live.container("migration"))["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 0


def test_hardening_applies(live: Live) -> None:
    for service, resource in live.graph.containers().items():
        info = inspect(resource.prop("name"))
        host = info["HostConfig"]
        assert info["Config"]["User"] == resource.prop("user"), service
        assert host["ReadonlyRootfs"] is True, service
        assert host["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert host["Memory"] == resource.prop("memory") * 1024 * 1024 and host["MemorySwap"] == host["Memory"], service
        nproc = next(u for u in resource.prop("ulimits") if u["name"] == "nproc")
        applied = {u["Name"]: u for u in host["Ulimits"]}
        assert (applied["nproc"]["Soft"], applied["nproc"]["Hard"]) == (nproc["soft"], nproc["hard"]), service
        for binding in resource.prop("ports") or []:
            published = host["PortBindings"][f"{int(binding['internal'])}/tcp"][0]
            assert published["HostIp"] == "127.0.0.1", service


def test_processes_run_as_the_recorded_user(live: Live) -> None:
    top = subprocess.run(
        ["docker", "top", live.container("postgres"), "-o", "pid,uid"], capture_output=True, text=True, check=True
    )
    uids = {line.split()[1] for line in top.stdout.splitlines()[1:]}
    assert uids == {"10010"}, uids


def test_secret_files_belong_to_their_service_alone(live: Live) -> None:
    """Docker writes uploads as root; the files container hands them to the service's uid (R-SEC-1)."""
    name = live.container("postgres")
    listing = subprocess.run(
        ["docker", "exec", name, "stat", "-c", "%u:%g %a %n", "/etc/fly-potato/secrets/postgres_password"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert listing[0] == "10010:10010" and listing[1] in ("400", "440"), listing
    other = subprocess.run(
        ["docker", "exec", "-u", "10099:10099", name, "cat", "/etc/fly-potato/secrets/postgres_password"],
        capture_output=True,
        text=True,
    )
    assert other.returncode != 0 and "Permission denied" in other.stderr


# -- through nginx -------------------------------------------------------------------------------------------


def test_unauthenticated_api_is_refused(live: Live) -> None:
    assert _http(f"{live.base}/api/regions").status_code == 401


def test_readiness_through_the_edge(live: Live) -> None:
    response = _http(f"{live.base}/health/ready")
    assert response.status_code == 200 and response.json()["status"] == "ready", response.text


def test_backend_is_connected_with_the_app_role(live: Live) -> None:
    assert _http(f"{live.base}/health/ready").status_code == 200
    with live.connect("postgres", "postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = 'flypotato' AND usename IS NOT NULL")
        users = {row[0] for row in cur.fetchall()}
    assert "app" in users, users


# -- Postgres roles and their rights -----------------------------------------------------------------------------


def test_datalens_reads_analytics_and_nothing_else(live: Live) -> None:
    conn = live.connect("datalens")
    with conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.views WHERE table_schema = 'analytics'")
        views = [row[0] for row in cur.fetchall()]
        assert views, "no analytics views after the migration"
        for view in views:
            cur.execute(f'SELECT count(*) FROM analytics."{view}"')
        for view in views:  # (the views are not auto-updatable, so an INSERT fails before the privilege check)
            for privilege in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
                cur.execute("SELECT has_table_privilege(current_user, %s, %s)", (f"analytics.{view}", privilege))
                assert cur.fetchone()[0] is False, (view, privilege)
        cur.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'app' AND table_type = 'BASE TABLE' LIMIT 1"
        )
        assert cur.fetchone() is None  # app's tables are invisible to datalens
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("INSERT INTO app.alembic_version VALUES ('datalens')")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("CREATE TABLE analytics.datalens_was_here (id int)")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("CREATE TABLE public.datalens_was_here (id int)")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT * FROM app.alembic_version")
    conn.close()


def test_app_role_has_dml_but_no_ddl(live: Live) -> None:
    conn = live.connect("app")
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'app'")
        assert cur.fetchone()[0] > 0
        for statement in (
            "CREATE TABLE app.app_was_here (id int)",
            "CREATE TABLE public.app_was_here (id int)",
            "CREATE SCHEMA app_was_here",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(statement)
    conn.close()


def test_public_cannot_connect(live: Live) -> None:
    with live.connect("postgres", "postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT has_database_privilege('public', 'flypotato', 'CONNECT')")
        assert cur.fetchone()[0] is False


# -- identity ---------------------------------------------------------------------------------------------------


def _browser() -> Any:
    """A cookie jar that, like browsers, treats http://localhost as a secure context (Keycloak's Secure cookies)."""
    session = requests.Session()

    def localhost_is_secure(response: Any, *args: Any, **kwargs: Any) -> None:
        for cookie in session.cookies:
            cookie.secure = False

    session.hooks["response"].append(localhost_is_secure)
    return session


def _submit_login(session: Any, page: Any, username: str, password: str, **kwargs: Any) -> Any:
    match = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', page.text) or re.search(
        r'action="([^"]+)"', page.text
    )
    assert match, page.text[:500]
    for cookie in session.cookies:
        cookie.secure = False
    return session.post(
        html.unescape(match.group(1)), data={"username": username, "password": password}, timeout=20, **kwargs
    )


def _test_user(live: Live, name: str) -> str:
    return live.graph.by_name(f"auth-identity-user-{name}").prop("initialPassword")["value"]


def test_login_through_oauth2_proxy_and_keycloak(live: Live) -> None:
    browser = _browser()
    page = browser.get(f"{live.base}/oauth2/start", params={"rd": "/api/regions"}, timeout=20)
    assert "/sso/realms/" in page.url and page.status_code == 200
    landed = _submit_login(browser, page, "analyst", _test_user(live, "analyst"))
    assert landed.status_code == 200, (landed.url, landed.text[:300])
    assert landed.url == f"{live.base}/api/regions"
    assert isinstance(landed.json(), list)
    proxy_logs = logs(live.container("oauth2_proxy"), tail=20)
    assert "analyst@users.fly-potato.test" in proxy_logs and "AuthSuccess" in proxy_logs


def test_keycloak_token_claims(live: Live) -> None:
    """Authorization code + PKCE as oauth2-proxy does it, then the access token's claims."""
    client = live.graph.by_name("auth-identity-client-oauth2-proxy")
    realm = live.graph.by_name("auth-identity-realm").prop("realm")
    issuer = f"{live.base}/sso/realms/{realm}"
    redirect = client.prop("validRedirectUris")[0]
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    browser = _browser()
    page = browser.get(
        f"{issuer}/protocol/openid-connect/auth",
        params={
            "client_id": client.prop("clientId"),
            "response_type": "code",
            "scope": "openid email profile",
            "redirect_uri": redirect,
            "state": "e2e",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        timeout=20,
    )
    answer = _submit_login(browser, page, "admin-user", _test_user(live, "admin-user"), allow_redirects=False)
    assert answer.status_code == 302, answer.text[:300]
    code = urllib.parse.parse_qs(urllib.parse.urlparse(answer.headers["Location"]).query)["code"][0]
    token = requests.post(
        f"{issuer}/protocol/openid-connect/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect,
            "client_id": client.prop("clientId"),
            "client_secret": client.prop("clientSecret"),
            "code_verifier": verifier,
        },
        timeout=20,
    )
    assert token.status_code == 200, token.text
    payload = token.json()["access_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["email"] == "admin-user@users.fly-potato.test"
    assert claims["preferred_username"] == "admin-user"
    assert sorted(claims["groups"]) == ["admins", "analysts"]
    audience = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    assert client.prop("clientId") in audience
    assert claims["iss"] == issuer
    # The backend accepts this token (it checks issuer, audience and signature via JWKS).
    api = requests.get(
        f"http://127.0.0.1:{live.ports['backend']}/api/regions",
        headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        timeout=10,
    )
    assert api.status_code == 200, api.text[:300]


# -- generated secrets ------------------------------------------------------------------------------------------


def _generated_secrets(live: Live) -> list[str]:
    values = [r.options["outputs"]["result"] for r in live.graph.of_type("random:index/randomPassword:RandomPassword")]
    values = [v for v in values if isinstance(v, str) and len(v) >= 12]  # long enough not to match by chance
    assert len(values) > 10
    return values


def test_no_generated_secret_in_plaintext_state_or_container_config(live: Live) -> None:
    """R-SEC-1: the state file holds secrets encrypted; env and command carry file paths, not secrets."""
    values = _generated_secrets(live)
    state = "\n".join(p.read_text() for p in live.engine.state_files())
    assert state, "no state file"
    leaked = [v[:4] + "…" for v in values if v in state]
    assert not leaked, f"plaintext secrets in the state: {leaked}"
    for resource in live.graph.of_type("docker:index/container:Container"):
        config = inspect(resource.prop("name"))["Config"]
        text = json.dumps([config["Env"], config["Cmd"], config["Entrypoint"]])
        assert not [v for v in values if v in text], resource.prop("name")
    with live.connect("postgres", "postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == "postgres"  # the generated superuser password opened it


# -- the engine again -------------------------------------------------------------------------------------------


def test_a_second_up_changes_nothing(live: Live) -> None:
    """Idempotence: right after the first ``up``, a preview and an ``up`` find nothing to change."""
    live.engine.events.clear()
    preview = live.engine.preview(diff=True)
    planned = {k: v for k, v in preview.change_summary.items() if k != "same"}
    diff = [line for line in live.engine.events if line.strip()[:1] in ("~", "+", "-")]
    result = live.engine.up()
    changes = {k: v for k, v in (result.summary.resource_changes or {}).items() if k != "same"}
    assert planned == {} and changes == {}, (planned, changes, "\n".join(diff[-80:]))


def test_rotation_replaces_the_secrets_and_the_platform_serves_again(live: Live) -> None:
    """R-SEC-4: a new ``secrets.rotation_epoch`` gives every role a new password through ``pulumi up``; the
    old one is refused, the new one works, and the platform answers ready through the edge again."""
    old = {role: live.role_password(role) for role in ("app", "datalens", "migrator")}
    live.engine.overrides["secrets.rotation_epoch"] = 2
    live.engine.write_config()
    result = live.engine.up()
    assert (result.summary.resource_changes or {}).get("replace", 0) > 0, result.summary.resource_changes
    live.graph = live.engine.graph()
    for role, before in old.items():
        assert live.role_password(role) != before, role
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(
                host="127.0.0.1", port=live.ports["postgres"], user=role, password=before, dbname="flypotato"
            )
        live.connect(role).close()
    response = _http(f"{live.base}/health/ready")
    assert response.status_code == 200 and response.json()["status"] == "ready", response.text


# -- teardown ---------------------------------------------------------------------------------------------------


def test_zz_destroy_leaves_nothing(live: Live) -> None:
    live.engine.destroy()
    assert leftovers(E2E_STACK) == {"containers": [], "networks": [], "volumes": []}
