"""Backups on a swarm (R-DB-2, R-OPS-2) under the mocks: the backup and WAL archive volumes on the data node,
the backup service pinned to the data role with the host's schedule and secrets, postgres archiving into the
shared volume, and the pre-deploy dump between the backup service and the migration."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import pytest

from components.data_services import BACKUP_MOUNT, POSTGRES_CONF_FILE, WAL_ARCHIVE_MOUNT, archive_settings
from components.host_guardrails import host_script
from components.release_order import STEP_TYPES, release_fingerprint, schema_fingerprint
from components.settings import parse_settings
from policy_plan.program import ROOT, PlannedResource, ProgramGraph, evaluate_program, stack_config
from tests.support.graph import depends_on
from wire import SERVICE_LABEL

MANAGER = "unix:///run/fly-potato-swarm/node1.sock"
DATA_NODE = "unix:///run/fly-potato-swarm/node2.sock"
REGISTRY = "198.18.232.1:5000"
DIGEST = "ab" * 32
SERVICE = "docker:index/service:Service"
VOLUME = "docker:index/volume:Volume"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
SECRET = "docker:index/secret:Secret"
CONTAINER = "docker:index/container:Container"
PROVIDER = "pulumi:providers:docker"
COMMAND = "command:local:Command"


def _images() -> dict[str, str]:
    """Every image from the lab registry by digest; the migration ships in the backend image."""
    repository = {"migration": "backend"}
    return {
        f"images.{name}": f"{REGISTRY}/fly-potato/{repository.get(name, name)}@sha256:{DIGEST}"
        for name in stack_config("dev")["images"]
    }


def swarm_overrides(**more: Any) -> dict[str, Any]:
    return {
        "target": "swarm",
        "swarm.docker_host": MANAGER,
        "features.monitoring": False,
        "features.backups": True,
        "publish.nginx_http": "none",  # R-NET-3: dev on a swarm publishes nothing
        **_images(),
        **more,
    }


def _graph(**more: Any) -> ProgramGraph:
    graph = evaluate_program("dev", swarm_overrides(**more))
    assert graph.error is None, graph.error
    return graph


@pytest.fixture(scope="module")
def graph() -> ProgramGraph:
    return _graph()


@pytest.fixture(scope="module")
def data_node_graph() -> ProgramGraph:
    return _graph(**{"swarm.data_docker_host": DATA_NODE})


def _service(graph: ProgramGraph, key: str) -> PlannedResource:
    (found,) = (r for r in graph.of_type(SERVICE) if r.prop("name") == f"fly-potato-dev-{key}")
    return found


def _spec(service: PlannedResource) -> dict[str, Any]:
    return service.prop("taskSpec")["containerSpec"]  # type: ignore[no-any-return]


def _volume_mounts(service: PlannedResource) -> dict[str, str]:
    return {m["target"]: m["source"] for m in _spec(service)["mounts"] if m["type"] == "volume"}


def _provider_host(graph: ProgramGraph, resource: PlannedResource) -> str:
    urn = resource.provider.rsplit("::", 1)[0]
    return graph.by_urn(urn).prop("host")  # type: ignore[no-any-return]


def _waits_for(graph: ProgramGraph, resource: PlannedResource, other: PlannedResource) -> bool:
    return other.urn in graph.ancestors_and_dependencies(resource.urn)


def test_the_backup_and_wal_archive_volumes_live_on_the_data_node(graph, data_node_graph) -> None:  # type: ignore[no-untyped-def]
    for g, node in ((graph, MANAGER), (data_node_graph, DATA_NODE)):
        volumes = {r.prop("name"): r for r in g.of_type(VOLUME)}
        assert {"fly-potato-dev-pgdata", "fly-potato-dev-backups", "fly-potato-dev-wal-archive"} <= set(volumes)
        for name in ("fly-potato-dev-backups", "fly-potato-dev-wal-archive"):
            assert _provider_host(g, volumes[name]) == node, f"{name} is created through the data node's Docker API"
            assert volumes[name].options.get("retainOnDelete") in (None, False), "dev lets go of its volumes"
    hosts = {r.name: r.prop("host") for r in data_node_graph.of_type(PROVIDER)}
    assert hosts == {"swarm-manager": MANAGER, "swarm-data-node": DATA_NODE}


def test_the_backup_service_is_one_task_on_the_data_role_with_both_volumes(graph) -> None:  # type: ignore[no-untyped-def]
    backup = _service(graph, "backup")
    assert backup.prop("mode") == {"replicated": {"replicas": 1}}
    assert backup.prop("taskSpec")["placement"]["constraints"] == ["node.labels.fly-potato.role==data"]
    assert _volume_mounts(backup) == {
        BACKUP_MOUNT: "fly-potato-dev-backups",
        WAL_ARCHIVE_MOUNT: "fly-potato-dev-wal-archive",
    }
    spec = _spec(backup)
    assert spec["user"] == "10011:10010" and spec["readOnly"] is True
    assert spec["args"] == ["service"] and "commands" not in spec, "the image's entrypoint: python3 -m backup"
    # As the Docker provider reads it back ("1m0s" would read back as "1m": an update on every up).
    assert spec["stopGracePeriod"] == "30s"
    networks = {n["name"] for n in backup.prop("taskSpec")["networksAdvanceds"]}
    assert networks == {"zones-data-id", "zones-monitoring-id"}, "postgres in data; Prometheus scrapes in monitoring"
    # Two tasks never run on the node's volumes at once; postgres likewise.
    for key in ("backup", "postgres"):
        assert _service(graph, key).prop("updateConfig")["order"] == "stop-first"


def test_the_backup_service_has_the_hosts_schedule_settings_and_secrets(graph) -> None:  # type: ignore[no-untyped-def]
    host = evaluate_program("dev", {"features.monitoring": False, "features.backups": True})
    assert host.error is None, host.error
    host_env = dict(item.split("=", 1) for item in host.containers()["backup"].prop("envs"))
    env = _spec(_service(graph, "backup"))["env"]
    assert env == host_env
    assert env["BACKUP_METRICS_PORT"] == "9481" and env["BACKUP_WAL_ARCHIVE_DIR"] == WAL_ARCHIVE_MOUNT
    secrets = {s["fileName"]: s for s in _spec(_service(graph, "backup"))["secrets"]}
    assert set(secrets) == {env["BACKUP_DATABASE_URL_FILE"], env["BACKUP_METRICS_TOKEN_FILE"]}
    for ref in secrets.values():
        assert (ref["fileUid"], ref["fileGid"], ref["fileMode"]) == ("10011", "10010", 0o400)
    by_name = {s.prop("name"): s for s in graph.of_type(SECRET)}
    url = base64.b64decode(by_name[secrets[env["BACKUP_DATABASE_URL_FILE"]]["secretName"]].prop("data")).decode()
    assert url.startswith("postgresql://backup:") and url.endswith("@postgres:5433/flypotato")
    assert "configs" not in _spec(_service(graph, "backup")), "nothing of the backup is a plain config"


def test_postgres_archives_into_the_shared_volume_only_with_backups_on(graph) -> None:  # type: ignore[no-untyped-def]
    postgres = _service(graph, "postgres")
    assert _volume_mounts(postgres)[WAL_ARCHIVE_MOUNT] == "fly-potato-dev-wal-archive"
    (conf,) = (c for c in _spec(postgres)["configs"] if c["fileName"] == POSTGRES_CONF_FILE)
    assert (conf["fileUid"], conf["fileGid"], conf["fileMode"]) == ("10010", "10010", 0o440)
    by_name = {c.prop("name"): c for c in graph.of_type(CONFIG)}
    text = base64.b64decode(by_name[conf["configName"]].prop("data")).decode()
    settings = parse_settings(stack_config("dev", swarm_overrides()), stack="dev")
    assert text == archive_settings(settings)
    assert "archive_mode = on" in text and WAL_ARCHIVE_MOUNT in text
    wal_volume = next(r for r in graph.of_type(VOLUME) if r.prop("name") == "fly-potato-dev-wal-archive")
    assert _waits_for(graph, postgres, wal_volume), "the archive volume exists before postgres mounts it"

    off = _graph(**{"features.backups": False})
    postgres = _service(off, "postgres")
    assert set(_volume_mounts(postgres)) == {"/var/lib/postgresql/data"}
    assert POSTGRES_CONF_FILE not in {c["fileName"] for c in _spec(postgres)["configs"]}
    names = {r.prop("name") for r in off.of_type(VOLUME)}
    assert not names & {"fly-potato-dev-backups", "fly-potato-dev-wal-archive"}
    assert not [s for s in off.of_type(SERVICE) if s.prop("name") == "fly-potato-dev-backup"]
    assert not [c for c in off.of_type(COMMAND) if c.name == "release-backup"]


def test_the_pre_deploy_dump_runs_between_the_backup_service_and_the_migration(data_node_graph) -> None:  # type: ignore[no-untyped-def]
    g = data_node_graph
    step = g.by_name("release-backup")
    assert g.by_urn(step.parent).type == STEP_TYPES["backup"]
    backup = _service(g, "backup")
    (migration,) = (
        c for c in g.of_type(CONTAINER) if c.prop("name") == "fly-potato-dev-migration" and c.name == "migration"
    )
    assert backup.urn in step.dependencies, "the dump waits for the running backup service"
    assert _waits_for(g, migration, step), "the migration waits for the dump"
    assert _waits_for(g, _service(g, "backend"), step)
    # A new Keycloak migrates its schema on start: its service waits for the dump, the dump never for it.
    keycloak = _service(g, "keycloak")
    assert _waits_for(g, keycloak, step), "Keycloak starts after the dump"
    assert keycloak.urn not in depends_on(g, step), "the dump never waits for Keycloak"
    # Run on the data node, where the task's container is, and again exactly when the release or Keycloak changes.
    settings = parse_settings(
        stack_config("dev", swarm_overrides(**{"swarm.data_docker_host": DATA_NODE})), stack="dev"
    )
    fingerprint = release_fingerprint(settings)
    assert step.prop("environment") == {"DOCKER_HOST": DATA_NODE}
    assert step.prop("triggers") == [schema_fingerprint(settings)]
    reason = f"release {fingerprint[:12]} backend {settings.images['backend']} keycloak {settings.images['keycloak']}"
    assert step.prop("create") == host_script(
        "predeploy-backup.sh",
        "--service",
        "fly-potato-dev-backup",
        "--timeout",
        "1800",
        "--reason",
        reason,
        timeout=1860,
    )


def test_the_backup_service_is_named_in_the_outputs_and_zones(graph) -> None:  # type: ignore[no-untyped-def]
    outputs = graph.outputs
    assert outputs["swarm_services"]["backup"] == "fly-potato-dev-backup"
    assert "backup" in outputs["zones"]["data"]["services"]
    assert "backup" in outputs["zones"]["monitoring"]["services"]
    labels = {item["label"]: item["value"] for item in _spec(_service(graph, "backup"))["labels"]}
    assert labels[SERVICE_LABEL] == "backup"


def test_the_policy_plan_finds_no_mandatory_violation() -> None:
    words = [f"--set={key}={value}" for key, value in swarm_overrides().items()]
    result = subprocess.run(
        [sys.executable, "-m", "policy_plan", "--stack", "dev", "--json", *words],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    plan = json.loads(result.stdout)
    assert [v for v in plan["violations"] if v["level"] == "mandatory"] == []
