"""The policy pack through the real engine, and the offline plan held to it.

For the committed stacks and for bad changes — postgres published publicly (R-NET-1), the public site
without its TLS listener, and a program change that turns TLS 1.0/1.1 back on (R-TLS-1) — ``pulumi preview
--policy-pack policy`` reports a set of violations; ``make plan`` (the program under mocks, the same
policies) must report exactly the same set, so the offline plan cannot drift from what the engine enforces.
And ``make up`` with a bad config stops at its preview: nothing is created. Previews only, except that
last case, which must create nothing. ``make e2e``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from tests.e2e.engine import (
    ROOT,
    EngineStack,
    EngineUnavailable,
    fit_to_this_host,
    leftovers,
    purge,
    require_engine,
    toolchain_bin,
)

pytestmark = pytest.mark.e2e
# The prod preflight needs public DNS and a host with the prod sizing's CPUs; this one has neither.
PREFLIGHT_OFF: dict[str, Any] = {"features.dns_preflight": False, **fit_to_this_host()}
TLS_1_2_ONLY = "ssl_protocols TLSv1.2 TLSv1.3;"
TLS_ANY = "ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;"
Violations = set[tuple[str, str, str]]


@pytest.fixture(scope="module", autouse=True)
def engine_available() -> None:
    try:
        require_engine()
    except EngineUnavailable as error:
        pytest.fail(str(error), pytrace=False)


def engine_violations(base: str, overrides: dict[str, Any], root: Path = ROOT) -> tuple[Violations, bool]:
    """(policy, resource, level) of ``pulumi preview --policy-pack policy``, and whether the preview passed."""
    stack = EngineStack(f"e2e-gate-{base}", base=base, ports={}, overrides=dict(overrides), root=root)
    try:
        try:
            stack.preview()
            passed = True
        except auto.CommandError:
            passed = False
        return stack.violations(), passed
    finally:
        stack.remove()


def offline_violations(base: str, overrides: dict[str, Any], root: Path = ROOT) -> tuple[Violations, bool]:
    """The same from ``python -m policy_plan --json`` (``make plan``) of the checkout at ``root``."""
    args = [str(ROOT / ".venv/bin/python"), "-m", "policy_plan", "--stack", base, "--json", "--preview"]
    for key, value in overrides.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    done = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr[-2000:] + done.stdout[-2000:]
    report = json.loads(done.stdout)
    found = {(v["policy"], v["urn"].rsplit("::", 1)[-1] if v["urn"] else "", v["level"]) for v in report["violations"]}
    return found, done.returncode == 0


@pytest.fixture(scope="module")
def weaker_tls_checkout() -> Iterator[Path]:
    """A copy of the program whose nginx template also offers TLS 1.0 and 1.1: a change under review."""
    copy = Path(tempfile.mkdtemp(prefix="fly-potato-e2e-tls-"))
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in filter(None, tracked.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    template = copy / "components/templates/nginx.conf.j2"
    text = template.read_text()
    assert TLS_1_2_ONLY in text, "the template no longer spells its protocols as this test expects"
    template.write_text(text.replace(TLS_1_2_ONLY, TLS_ANY))
    yield copy
    shutil.rmtree(copy, ignore_errors=True)


CASES = {
    "dev as committed": ("dev", {}, True, set()),
    "prod as committed": ("prod", PREFLIGHT_OFF, True, set()),
    "prod, postgres published publicly": (
        "prod",
        {**PREFLIGHT_OFF, "publish.postgres": "public"},
        False,
        {("public-bindings-nginx-only", "data-postgres", "mandatory")},
    ),
    "prod without its TLS listener": (
        "prod",
        {**PREFLIGHT_OFF, "publish.nginx_https": "none"},
        False,
        {("public-bindings-nginx-only", "edge-nginx", "mandatory")},
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_the_offline_plan_reports_what_the_engine_enforces(case: str) -> None:
    base, overrides, passes, must_include = CASES[case]
    engine, engine_passed = engine_violations(base, overrides)
    offline, offline_passed = offline_violations(base, overrides)
    assert engine == offline, f"engine only: {sorted(engine - offline)}; offline only: {sorted(offline - engine)}"
    assert engine_passed is offline_passed is passes, (engine_passed, offline_passed, sorted(engine))
    assert must_include <= engine, sorted(engine)
    if passes:
        assert not {v for v in engine if v[2] == "mandatory"}, sorted(engine)


def test_a_change_that_offers_tls_1_0_fails_the_preview_naming_r_tls_1(weaker_tls_checkout: Path) -> None:
    engine, engine_passed = engine_violations("prod", PREFLIGHT_OFF, root=weaker_tls_checkout)
    offline, offline_passed = offline_violations("prod", PREFLIGHT_OFF, root=weaker_tls_checkout)
    assert not engine_passed and not offline_passed
    assert ("tls-protocols-ciphers", "edge-nginx", "mandatory") in engine, sorted(engine)
    assert engine == offline, f"engine only: {sorted(engine - offline)}; offline only: {sorted(offline - engine)}"


def test_make_up_with_a_bad_config_stops_at_the_preview_and_creates_nothing(tmp_path: Path) -> None:
    """``scripts/stack.sh up`` (``make up``): a mandatory violation stops it before the first resource. The
    pack's rules are stack policies, which an update alone would evaluate only after its last resource."""
    name = "e2e-gate-up"
    purge(name)
    stack = EngineStack(name, base="prod", ports={}, overrides={**PREFLIGHT_OFF, "publish.postgres": "public"})
    try:
        done = subprocess.run(
            ["bash", "scripts/stack.sh", "up", name],
            cwd=ROOT,
            env={
                **os.environ,
                **stack.env,
                "PATH": f"{toolchain_bin()}:{os.environ['PATH']}",
            },
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = done.stdout + done.stderr
        assert done.returncode != 0, output[-3000:]
        assert "public-bindings-nginx-only" in output and "R-NET-1" in output, output[-3000:]
        assert leftovers(name) == {"containers": [], "networks": [], "volumes": [], "firewall_rules": []}
        resources = json.loads(stack.cli("stack", "export").stdout)["deployment"].get("resources") or []
        assert resources == [], [r["urn"] for r in resources]
    finally:
        stack.remove()
        purge(name)
