"""End to end through the real Pulumi engine: a throwaway dev-profile stack brought up with ``pulumi up``
(Automation API, the project's toolchain, the policy pack), checked on the running containers, brought up
again with no change, taken through the release order's failures (R-OPS-2), rotated and destroyed. Stack
``e2e`` (objects ``fly-potato-e2e-*``), every published port on a free loopback port, its own file backend.
``make e2e``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from pulumi import automation as auto

from tests.e2e import checks
from tests.e2e.checks import Live
from tests.e2e.engine import ROOT, EngineStack, inspect, logs

pytestmark = pytest.mark.e2e
E2E_STACK = "e2e"


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    yield from checks.bring_up(lambda: EngineStack(E2E_STACK), E2E_STACK)


def _http(url: str, **kwargs: Any) -> Any:
    return requests.get(url, timeout=10, allow_redirects=False, **kwargs)


# -- containers ----------------------------------------------------------------------------------------------


def test_every_long_running_container_is_healthy(live: Live) -> None:
    checks.assert_every_long_running_container_is_healthy(live)


def test_migration_exited_zero(live: Live) -> None:
    state = inspect(live.container("migration"))["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 0


def test_hardening_applies(live: Live) -> None:
    checks.assert_hardened(live)


def test_processes_run_as_the_recorded_user(live: Live) -> None:
    assert checks.docker_top_uids(live.container("postgres")) == {"10010"}


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
            cur.execute("INSERT INTO migrations.alembic_version VALUES ('datalens')")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("CREATE TABLE analytics.datalens_was_here (id int)")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("CREATE TABLE public.datalens_was_here (id int)")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("SELECT * FROM migrations.alembic_version")
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
            # R-DB-1: the migration state is the migrator's; the app reads it for readiness only.
            "UPDATE migrations.alembic_version SET version_num = '0001'",
            "DELETE FROM migrations.alembic_version",
            "INSERT INTO migrations.alembic_version VALUES ('app')",
        ):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(statement)
        cur.execute("SELECT count(*) FROM migrations.alembic_version")
        assert cur.fetchone()[0] == 1
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


# -- metrics behind the token (R-SEC-5) --------------------------------------------------------------------------


def _metrics_token(live: Live) -> str:
    done = subprocess.run(
        ["docker", "exec", live.container("prometheus"), "cat", "/etc/fly-potato/secrets/metrics_token"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_every_scrape_target_is_up_through_its_token(live: Live) -> None:
    """Prometheus scrapes every platform target with the token file, and every target answers it."""
    deadline = time.monotonic() + 120
    while True:
        answer = requests.get(f"http://127.0.0.1:{live.ports['prometheus']}/api/v1/targets", timeout=10)
        targets = answer.json()["data"]["activeTargets"]
        down = {t["scrapeUrl"]: t["lastError"] for t in targets if t["health"] != "up"}
        if (targets and not down) or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert targets and not down, down
    jobs = {t["labels"]["job"] for t in targets}
    assert {"node_exporter", "postgres_exporter", "sql_exporter", "keycloak", "oauth2_proxy", "prometheus"} <= jobs, (
        jobs
    )


def test_metrics_without_the_token_are_refused(live: Live) -> None:
    """R-SEC-5 from both sides of the zone: the published exporters on loopback, and from inside the
    monitoring zone (the backup container) the endpoints that are not published."""
    token = _metrics_token(live)
    assert len(token) >= 32
    for listener in ("node_exporter", "postgres_exporter", "sql_exporter"):
        url = f"http://127.0.0.1:{live.ports[listener]}/metrics"
        assert requests.get(url, timeout=10).status_code == 401, listener
        assert requests.get(url, headers={"Authorization": "Bearer x" + token[1:]}, timeout=10).status_code == 401
        assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    probe = (
        "import sys, urllib.request, urllib.error\n"
        "for url in sys.argv[1:]:\n"
        "    try:\n"
        "        code = urllib.request.urlopen(url, timeout=5).status\n"
        "    except urllib.error.HTTPError as error:\n"
        "        code = error.code\n"
        "    print(url, code)\n"
    )
    urls = [
        "http://oauth2-proxy:44180/metrics",
        "http://keycloak:9000/sso/metrics",
        "http://prometheus:9090/metrics",
        "http://alertmanager:9093/metrics",
        "http://blackbox-exporter:9115/metrics",
    ]
    done = subprocess.run(
        ["docker", "exec", live.container("backup"), "python3", "-c", probe, *urls],
        capture_output=True,
        text=True,
        check=True,
    )
    codes = dict(line.rsplit(" ", 1) for line in done.stdout.splitlines())
    assert codes == dict.fromkeys(urls, "401"), codes


def test_the_business_metrics_reach_prometheus(live: Live) -> None:
    """sql_exporter runs the business-metric queries as the exporter role (EXECUTE on schema metrics' functions,
    no table) and Prometheus stores the result. It starts after the migration gate, so its first run, at start,
    already finds the functions: no query is refused, and nothing waits for its next run (a job interval)."""
    deadline = time.monotonic() + 120
    while True:
        answer = requests.get(
            f"http://127.0.0.1:{live.ports['prometheus']}/api/v1/query",
            params={"query": "sql_flypotato_flights"},
            timeout=10,
        )
        flights = answer.json()["data"]["result"]
        if flights or time.monotonic() > deadline:
            break
        time.sleep(5)
    exporter_logs = logs(live.container("sql_exporter"), 200)
    assert {series["metric"]["col"] for series in flights} == {"total", "last_hour"}, exporter_logs[-2000:]
    assert "pq:" not in exporter_logs, exporter_logs  # no query refused: no permission error, no missing function


# -- generated secrets ------------------------------------------------------------------------------------------


def test_no_generated_secret_in_plaintext_state_container_config_or_engine_output(live: Live) -> None:
    checks.assert_no_generated_secret_in_plaintext(live)
    with live.connect("postgres", "postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user")
        assert cur.fetchone()[0] == "postgres"  # the generated superuser password opened it


# -- the engine again -------------------------------------------------------------------------------------------


def test_a_second_up_changes_nothing(live: Live) -> None:
    checks.assert_a_second_up_changes_nothing(live)


# -- the release order through the engine (R-OPS-2) -------------------------------------------------------------


def _head_revision() -> str:
    head = ScriptDirectory.from_config(AlembicConfig(str(ROOT / "alembic.ini"))).get_current_head()
    assert head, "no migration revisions"
    return head


def _derived_backend(live: Live, tag: str, dockerfile_tail: str, files: dict[str, str] | None = None) -> str:
    """A backend image built FROM the stack's own, changed as the test needs (a release candidate)."""
    base = live.engine.overrides.get("images.backend") or live.graph.containers()["backend"].prop("image")
    image = f"fly-potato/backend:{tag}"
    with tempfile.TemporaryDirectory() as context:
        for name, content in (files or {}).items():
            (Path(context) / name).write_text(content)
        (Path(context) / "Dockerfile").write_text(f"FROM {base}\n{dockerfile_tail}\n")
        subprocess.run(["docker", "build", "-q", "-t", image, context], capture_output=True, text=True, check=True)
    return image


def _release(live: Live, image: str | None, **overrides: Any) -> None:
    """Point the stack's backend and migration at ``image`` (None: back to the stack file's) and write it."""
    for key in ("images.backend", "images.migration"):
        if image is None:
            live.engine.overrides.pop(key, None)
        else:
            live.engine.overrides[key] = image
    live.engine.overrides.update(overrides)
    live.engine.write_config()


def _first(live: Live, kind: str, name: str) -> int:
    return next(i for i, s in enumerate(live.engine.steps) if s.kind == kind and s.name == name)


def _ready_through_the_edge(live: Live) -> dict[str, Any]:
    response = checks.ready(live.base)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def release_candidates(live: Live) -> Iterator[list[str]]:
    built: list[str] = []
    yield built
    _release(live, None)
    for key in [k for k in live.engine.overrides if k.startswith("host.")]:
        live.engine.overrides.pop(key)
    live.engine.write_config()
    if built:
        subprocess.run(["docker", "image", "rm", "-f", *built], capture_output=True, check=False)


def test_a_failing_migration_fails_the_up_after_the_backup_and_the_old_backend_keeps_serving(
    live: Live, release_candidates: list[str]
) -> None:
    """R-OPS-2 through the engine: pre-deploy backup → migration → (gate) → backend. A migration that fails
    makes ``pulumi up`` fail at the gate; the backend is never replaced and keeps answering ready; the
    backup ran before the migration (the engine's own event order). The next good release deploys."""
    before = inspect(live.container("backend"))["Id"]
    head = _head_revision()
    broken = _derived_backend(
        live,
        "e2e-broken-migration",
        "COPY 9999_e2e_fails.py /srv/migrations/versions/9999_e2e_fails.py",
        {
            "9999_e2e_fails.py": (
                f'"""A release candidate whose migration fails."""\nfrom alembic import op\n\nrevision = "9999"\n'
                f'down_revision = "{head}"\nbranch_labels = None\ndepends_on = None\n\n\n'
                'def upgrade() -> None:\n    op.execute("SELECT 1 / 0")\n\n\n'
                "def downgrade() -> None:\n    pass\n"
            )
        },
    )
    release_candidates.append(broken)
    _release(live, broken)
    live.engine.steps.clear()
    with pytest.raises(auto.CommandError) as failure:
        live.engine.up()
    text = str(failure.value)
    assert "release-migration-gate" in text and "migration" in text, text[-2000:]
    failed = {s.name for s in live.engine.steps if s.kind == "failed"}
    assert failed == {"release-migration-gate"}, failed
    assert _first(live, "outputs", "release-backup") < _first(live, "pre", "data-migration"), "backup after migration"
    state = inspect(live.container("migration"))["State"]
    assert state["ExitCode"] != 0
    assert "division by zero" in logs(live.container("migration"), tail=80)
    assert inspect(live.container("backend"))["Id"] == before, "the backend was replaced after a failed migration"
    assert _ready_through_the_edge(live)["migration"] == head
    with live.connect("postgres") as conn, conn.cursor() as cur:
        cur.execute("SELECT version_num FROM migrations.alembic_version")
        assert cur.fetchall() == [(head,)], "the failed revision left a trace"

    _release(live, None)
    live.engine.up()
    assert inspect(live.container("migration"))["State"]["ExitCode"] == 0
    assert _ready_through_the_edge(live)["status"] == "ready"


def test_a_backend_that_never_becomes_ready_fails_the_up_at_the_smoke_step(
    live: Live, release_candidates: list[str]
) -> None:
    """R-OPS-2: the release's last step polls /health/ready through nginx; a backend that stays live but
    never ready fails ``pulumi up`` there, within ``host.smoke_timeout_seconds``. Rolling back is the next
    ``up`` with the previous image."""
    never = _derived_backend(live, "e2e-never-ready", "ENV FLY_POTATO_READY_TIMEOUT_SECONDS=0.000001")
    release_candidates.append(never)
    _release(live, never, **{"host.smoke_timeout_seconds": 20})
    live.engine.steps.clear()
    with pytest.raises(auto.CommandError) as failure:
        live.engine.up()
    failed = {s.name for s in live.engine.steps if s.kind == "failed"}
    assert failed == {"release-smoke"}, (failed, str(failure.value)[-2000:])
    assert "smoke: " in str(failure.value), str(failure.value)[-2000:]
    deployed = inspect(live.container("backend"))["Image"]
    assert (
        deployed
        == subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Id}}", never], capture_output=True, text=True, check=True
        ).stdout.strip()
    ), "the candidate backend was not deployed"
    assert checks.ready(live.base).status_code == 503

    _release(live, None)
    live.engine.overrides.pop("host.smoke_timeout_seconds")
    live.engine.write_config()
    live.engine.up()
    assert _ready_through_the_edge(live)["status"] == "ready"


def _dump_sets(live: Live) -> list[dict[str, Any]]:
    """The manifests of the complete dump sets on the stack's backup volume, oldest first."""
    script = (
        "import json, pathlib; d = pathlib.Path('/var/backups/fly-potato/dumps'); "
        "print(json.dumps([json.loads((p / 'manifest.json').read_text()) for p in sorted(d.iterdir()) "
        "if (p / 'manifest.json').is_file()]))"
    )
    out = subprocess.run(
        ["docker", "exec", live.container("backup"), "python3", "-c", script], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    sets: list[dict[str, Any]] = json.loads(out.stdout)
    return sets


def _docker_time(text: str) -> float:
    """Docker's RFC 3339 timestamp (nanoseconds) as epoch seconds."""
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", text.replace("Z", "+00:00"))
    return datetime.fromisoformat(stamp).timestamp()


@pytest.fixture(scope="module")
def keycloak_candidates() -> Iterator[list[str]]:
    """Keycloak images built by a test. The stack keeps running the last one until the destroy test, so they
    are removed when the module's tests are done (a destroy needs no image)."""
    built: list[str] = []
    yield built
    if built:
        subprocess.run(["docker", "image", "rm", "-f", *built], capture_output=True, check=False)


def test_a_new_keycloak_image_starts_only_after_the_pre_deploy_dump(live: Live, keycloak_candidates: list[str]) -> None:
    """R-OPS-2: Keycloak migrates its own schema when a new version first starts, so a Keycloak image change
    takes the dump set again first. ``pulumi preview`` shows the dump before Keycloak's replacement; in the
    ``up`` the dump finishes (the engine's events) before the old Keycloak is stopped and the new one starts
    (Docker's clock), and the new Keycloak serves the stack's realm from the same database."""
    base = live.graph.containers()["keycloak"].prop("image")
    upgraded = "fly-potato/keycloak:e2e-upgrade"
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "Dockerfile").write_text(f'FROM {base}\nLABEL org.fly-potato.e2e="a Keycloak upgrade"\n')
        subprocess.run(["docker", "build", "-q", "-t", upgraded, context], capture_output=True, text=True, check=True)
    keycloak_candidates.append(upgraded)
    before = inspect(live.container("keycloak"))
    dumps_before = _dump_sets(live)

    live.engine.overrides["images.keycloak"] = upgraded
    live.engine.write_config()
    deployed = False
    try:
        _upgrade_keycloak_after_the_dump(live, upgraded, before, dumps_before)
        deployed = True
    finally:
        if not deployed:  # the later tests deploy the stack's own Keycloak
            live.engine.overrides.pop("images.keycloak")
            live.engine.write_config()


def _upgrade_keycloak_after_the_dump(
    live: Live, upgraded: str, before: dict[str, Any], dumps_before: list[dict[str, Any]]
) -> None:
    live.engine.steps.clear()
    live.engine.preview()
    planned = [(s.name, s.op) for s in live.engine.steps if s.kind == "pre" and s.op not in ("same", "read")]
    first = {name: i for i, (name, _) in reversed(list(enumerate(planned)))}
    assert {"release-backup", "auth-keycloak"} <= first.keys(), planned
    assert first["release-backup"] < first["auth-keycloak"], planned
    replacing = {"replace", "create-replacement", "delete-replaced"}
    assert {op for name, op in planned if name in ("release-backup", "auth-keycloak")} <= replacing, planned
    untouched = {
        "release-migration-gate",
        "release-smoke",
        *(live.graph.containers()[k].name for k in ("migration", "backend")),
    }
    assert not untouched & first.keys(), planned

    live.engine.steps.clear()
    started = time.time()
    live.engine.up(gated=False)  # the preview with the pack just ran
    container = "docker:index/container:Container::auth-keycloak"
    # The dump's step finished before the engine's first step on Keycloak's container: with delete-before-replace
    # that is stopping the old one.
    dumped = _first(live, "outputs", "release-backup")
    keycloak = next(i for i, s in enumerate(live.engine.steps) if s.kind == "pre" and s.urn.endswith(container))
    assert dumped < keycloak, [
        (s.kind, s.name, s.op) for s in live.engine.steps if s.name in ("release-backup", "auth-keycloak")
    ]
    after = inspect(live.container("keycloak"))
    upgraded_id = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Id}}", upgraded], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert after["Id"] != before["Id"] and after["Image"] == upgraded_id
    # Docker's clock: a dump set of this up, with Keycloak's database, completed before the new Keycloak started.
    known = {d["stamp"] for d in dumps_before}
    new_sets = [d for d in _dump_sets(live) if d["stamp"] not in known and d["started_at"] >= started - 1]
    keycloak_started = _docker_time(after["State"]["StartedAt"])
    first_dump = min(new_sets, key=lambda d: d["finished_at"], default=None)
    assert first_dump is not None, "the Keycloak change took no dump set"
    assert "keycloak" in first_dump["databases"], first_dump["databases"]
    assert first_dump["finished_at"] < keycloak_started, "the new Keycloak started before the dump was complete"
    realm = live.graph.by_name("auth-identity-realm").prop("realm")
    discovery = _http(f"http://127.0.0.1:{live.ports['keycloak']}/sso/realms/{realm}/.well-known/openid-configuration")
    assert discovery.status_code == 200, discovery.status_code
    assert _ready_through_the_edge(live)["status"] == "ready"


# -- rotation and teardown --------------------------------------------------------------------------------------


def test_rotation_replaces_the_secrets_and_the_platform_serves_again(live: Live) -> None:
    checks.assert_rotation_replaces_the_secrets(live, lambda: checks.ready_answer(live.base))


def test_zz_destroy_leaves_nothing(live: Live) -> None:
    checks.assert_destroy_leaves_nothing(live)
