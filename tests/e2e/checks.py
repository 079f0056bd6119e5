"""What every engine-deployed stack must show, whatever its profile: the checks the dev- and prod-profile
modules share, on a :class:`Live` stack (the engine's record of it plus its published ports)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest
import requests

from policy_plan.program import ProgramGraph
from tests.e2e.engine import EngineStack, EngineUnavailable, inspect, leftovers, purge, require_engine


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

    def connect(self, role: str, database: str = "flypotato", password: str | None = None) -> Any:
        if password is None:
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

    def refresh(self) -> None:
        self.graph = self.engine.graph()


def bring_up(engine_factory: Any, name: str) -> Iterator[Live]:
    """The body of a module fixture: purge what an earlier run left, ``up``, yield, always remove."""
    try:
        require_engine()
    except EngineUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    purge(name)
    try:
        engine: EngineStack = engine_factory()
    except EngineUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    started = time.monotonic()
    try:
        engine.up()
        elapsed = time.monotonic() - started
        print(f"\n[e2e] {name}: up from nothing in {elapsed:.0f} s")
        yield Live(engine.graph(), engine, dict(engine.ports or {}), elapsed)
    except Exception:
        print("\n".join(engine.events[-60:]))
        raise
    finally:
        try:
            engine.remove()
        finally:
            purge(name)


def assert_every_long_running_container_is_healthy(live: Live) -> None:
    for service, resource in live.graph.containers().items():
        if not resource.prop("mustRun"):
            continue
        state = inspect(resource.prop("name"))["State"]
        assert state["Running"], service
        assert state["Health"]["Status"] == "healthy", (service, state["Health"]["Log"][-1:])


def assert_hardened(live: Live, public_address: str = "127.0.0.1") -> None:
    """R-SEC-2 as Docker applied it; published ports on loopback, nginx's public ones on ``public_address``."""
    for service, resource in live.graph.containers().items():
        info = inspect(resource.prop("name"))
        host = info["HostConfig"]
        assert info["Config"]["User"] == resource.prop("user"), service
        assert host["ReadonlyRootfs"] is True, service
        assert host["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in host["SecurityOpt"], service
        assert host["Memory"] == resource.prop("memory") * 1024 * 1024 and host["MemorySwap"] == host["Memory"], service
        assert host["LogConfig"]["Type"] == "json-file" and host["LogConfig"]["Config"].get("max-size"), service
        nproc = next(u for u in resource.prop("ulimits") if u["name"] == "nproc")
        applied = {u["Name"]: u for u in host["Ulimits"]}
        assert (applied["nproc"]["Soft"], applied["nproc"]["Hard"]) == (nproc["soft"], nproc["hard"]), service
        if resource.prop("mustRun"):
            assert info["Config"]["Healthcheck"]["Test"], service
        public = {live.ports.get("nginx_https"), live.ports.get("nginx_http")} if service == "nginx" else set()
        for binding in resource.prop("ports") or []:
            published = host["PortBindings"][f"{int(binding['internal'])}/tcp"][0]
            expected = public_address if int(published["HostPort"]) in public else "127.0.0.1"
            assert published["HostIp"] == expected, (service, published)


def generated_secrets(live: Live) -> list[str]:
    values = [r.options["outputs"]["result"] for r in live.graph.of_type("random:index/randomPassword:RandomPassword")]
    values = [v for v in values if isinstance(v, str) and len(v) >= 12]  # long enough not to match by chance
    assert len(values) > 10
    return values


def assert_no_generated_secret_in_plaintext(live: Live) -> None:
    """R-SEC-1: the state holds secrets encrypted; container env and command carry file paths, not secrets;
    the engine's output and events of every operation so far name none."""
    values = generated_secrets(live)
    state = "\n".join(p.read_text() for p in live.engine.state_files())
    assert state, "no state file"
    leaked = [v[:4] + "…" for v in values if v in state]
    assert not leaked, f"plaintext secrets in the state: {leaked}"
    for resource in live.graph.of_type("docker:index/container:Container"):
        config = inspect(resource.prop("name"))["Config"]
        text = json.dumps([config["Env"], config["Cmd"], config["Entrypoint"]])
        assert not [v for v in values if v in text], resource.prop("name")
    engine_log = "\n".join(live.engine.events) + "\n".join(repr(step) for step in live.engine.steps)
    assert engine_log, "no engine output recorded"
    leaked = [v[:4] + "…" for v in values if v in engine_log]
    assert not leaked, f"plaintext secrets in the engine's output: {leaked}"


def assert_a_second_up_changes_nothing(live: Live) -> None:
    """Idempotence: right after ``up``, a preview and an ``up`` find nothing to change."""
    live.engine.events.clear()
    preview = live.engine.preview(diff=True)
    planned = {k: v for k, v in preview.change_summary.items() if k != "same"}
    diff = [line for line in live.engine.events if line.strip()[:1] in ("~", "+", "-")]
    result = live.engine.up(gated=False)
    changes = {k: v for k, v in (result.summary.resource_changes or {}).items() if k != "same"}
    assert planned == {} and changes == {}, (planned, changes, "\n".join(diff[-80:]))


def ready(url: str, **kwargs: Any) -> requests.Response:
    return requests.get(f"{url}/health/ready", timeout=10, allow_redirects=False, **kwargs)


def ready_answer(url: str) -> tuple[int, str]:
    """(status, body) of /health/ready at ``url``."""
    response = ready(url)
    return response.status_code, response.text


def assert_rotation_replaces_the_secrets(live: Live, ready_check: Callable[[], tuple[int, str]]) -> None:
    """R-SEC-4: a new ``secrets.rotation_epoch`` gives every role a new password through ``pulumi up``; the
    old one is refused, the new one works, and the platform answers ready through the edge again."""
    old = {role: live.role_password(role) for role in ("app", "datalens", "migrator")}
    live.engine.overrides["secrets.rotation_epoch"] = 2
    live.engine.write_config()
    result = live.engine.up()
    assert (result.summary.resource_changes or {}).get("replace", 0) > 0, result.summary.resource_changes
    live.refresh()
    for role, before in old.items():
        assert live.role_password(role) != before, role
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            live.connect(role, password=before)
        live.connect(role).close()
    status, body = ready_check()
    assert status == 200 and json.loads(body)["status"] == "ready", body


def assert_destroy_leaves_nothing(live: Live) -> None:
    live.engine.destroy()
    assert leftovers(live.engine.name) == {"containers": [], "networks": [], "volumes": [], "firewall_rules": []}


def docker_top_uids(container: str) -> set[str]:
    top = subprocess.run(["docker", "top", container, "-o", "pid,uid"], capture_output=True, text=True, check=True)
    return {line.split()[1] for line in top.stdout.splitlines()[1:]}
