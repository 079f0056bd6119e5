"""The release components alone, from hand-made args under the mocks: ReleaseOrder and its steps
PreDeployBackup, MigrationGate and SmokeCheck (R-OPS-2)."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.hardened_container import HardenedContainer, HardenedContainerArgs, http_probe
from components.host_guardrails import DockerHost
from components.release_order import (
    MigrationGate,
    MigrationGateArgs,
    PreDeployBackup,
    PreDeployBackupArgs,
    ReleaseArgs,
    ReleaseConfigError,
    ReleaseOrder,
    SmokeCheck,
    SmokeCheckArgs,
)
from tests.support.components import children, component, component_graph
from tests.unit.test_release import script_args

LOCAL = "command:local:Command"
IMAGE = "fly-potato/backend:test"
KEYCLOAK = "fly-potato/keycloak:test"


def test_release_order_refuses_a_migration_image_other_than_the_backend() -> None:
    with pytest.raises(ReleaseConfigError, match=r"images\.migration"):
        ReleaseOrder("release", ReleaseArgs(backend_image=IMAGE, migration_image="other:1", keycloak_image=KEYCLOAK))


def build_steps(_settings: Any, placement: Any, zones: Any) -> None:
    host = DockerHost(None)

    def container(service: str) -> HardenedContainer:
        args = HardenedContainerArgs(service=service, image=IMAGE, healthcheck=http_probe(8080, "/healthz"))
        return HardenedContainer(f"stub-{service}", args, placement, zones)

    release = ReleaseOrder("release", ReleaseArgs(backend_image=IMAGE, migration_image=IMAGE, keycloak_image=KEYCLOAK))
    backup = PreDeployBackup(
        "pre-deploy-backup",
        PreDeployBackupArgs(host, release, container("backup"), backend_image=IMAGE, timeout_seconds=300),
    )
    gate = MigrationGate("migration-gate", MigrationGateArgs(host, release, container("migration"), 60))
    target = ("https://fly.example:8443/health/ready", "fly.example:8443:127.0.0.1", True)
    smoke = SmokeCheck(
        "smoke-check",
        SmokeCheckArgs(host, release, container("backend"), container("nginx"), "CA PEM", target, 120),
        pulumi.ResourceOptions(depends_on=[backup, gate]),
    )
    assert smoke.command is not None


@pytest.fixture(scope="module")
def graph() -> Any:
    return component_graph("dev", build_steps)


@pytest.mark.parametrize(
    ("step_type", "command", "waits_for"),
    [
        ("fly-potato:release:PreDeployBackup", "release-backup", {"stub-backup"}),
        ("fly-potato:release:MigrationGate", "release-migration-gate", {"stub-migration"}),
        ("fly-potato:release:SmokeCheck", "release-smoke", {"stub-backend", "stub-nginx"}),
    ],
)
def test_each_step_is_a_component_with_its_command(
    graph: Any, step_type: str, command: str, waits_for: set[str]
) -> None:
    step = component(graph, step_type)
    (child,) = children(graph, step)
    assert (child.type, child.name) == (LOCAL, command)
    # The command keeps the name it had under ReleaseOrder, aliased to it: deployed stacks keep it.
    (alias,) = child.aliases
    assert alias["spec"]["parentUrn"] == component(graph, "fly-potato:release:ReleaseOrder").urn
    named = {r.urn: r.name for r in graph.resources}
    assert {named[urn] for urn in child.dependencies} == waits_for
    assert any(isinstance(t, str) and len(t) == 64 for t in child.prop("triggers"))  # the release fingerprint


def test_smoke_check_pins_the_target_and_trusts_the_ca(graph: Any) -> None:
    smoke = graph.by_name("release-smoke")
    args = script_args(smoke)
    assert args[args.index("--url") + 1] == "https://fly.example:8443/health/ready"
    assert args[args.index("--resolve") + 1] == "fly.example:8443:127.0.0.1"
    assert args[args.index("--timeout") + 1] == "120"
    assert "--cacert-stdin" in args
    assert smoke.prop("stdin") == "CA PEM"


def test_pre_deploy_backup_names_the_release(graph: Any) -> None:
    args = script_args(graph.by_name("release-backup"))
    assert args[args.index("--timeout") + 1] == "300"
    assert IMAGE in args[args.index("--reason") + 1]
    assert f"keycloak {KEYCLOAK}" in args[args.index("--reason") + 1]
