"""The backup service wired into the real program (mocked engine): WAL archive, settings file, token, template
database, order and scrape (R-DB-2, R-SEC-1, R-SEC-5).

Whether archiving and the drill work on a real server is tests/backup/; here the graph must say what they need.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from functools import cache
from typing import Any

import pytest
import yaml

from components.data_services import POSTGRES_CONF_FILE, WAL_ARCHIVE_MOUNT, archive_settings
from components.monitoring_config import PATHS
from components.settings import parse_settings
from policy_plan.program import ROOT, PlannedResource, ProgramGraph, evaluate_program, is_secret, stack_config

STACKS = pytest.mark.parametrize("stack", ["dev", "prod"])
PG = "postgresql:index"
VOLUME = "docker:index/volume:Volume"


@cache
def _graph(stack: str, overrides: str) -> ProgramGraph:
    asyncio.set_event_loop(asyncio.new_event_loop())  # the mocked engine needs a current loop
    graph = evaluate_program(stack, {"monitoring.docker_socket_gid": 4242, **json.loads(overrides)})
    assert graph.error is None, graph.error
    return graph


def graph(stack: str, **overrides: Any) -> ProgramGraph:
    return _graph(stack, json.dumps(overrides, sort_keys=True))


def uploads(container: PlannedResource) -> dict[str, dict[str, Any]]:
    return {item["file"]: item for item in container.prop("uploads", [])}


def env(container: PlannedResource) -> dict[str, str]:
    return dict(item.split("=", 1) for item in container.prop("envs", []))


def mock_password(g: ProgramGraph, name: str) -> str:
    """The value the mocks gave a generated password (policy_plan.program._fake_state)."""
    resource = g.by_name(name)
    digest = hashlib.sha256(f"{resource.type}/{resource.name}".encode()).hexdigest()
    return "Mock" + digest[: max(8, int(resource.prop("length", 32)) - 4)]


def show_config(archive_dir: str, archive_timeout: int) -> list[str]:
    """What the backup programs say postgresql.conf needs (`python3 -m backup show-config`)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("BACKUP_", "PG"))}
    environment.update(BACKUP_WAL_ARCHIVE_DIR=archive_dir, BACKUP_ARCHIVE_TIMEOUT_SECONDS=str(archive_timeout))
    result = subprocess.run(
        [sys.executable, "-m", "backup", "show-config"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


# --- the WAL archive volume ------------------------------------------------------------------------


@STACKS
def test_the_wal_archive_volume_is_mounted_read_write_in_postgres_and_backup(stack: str) -> None:
    g = graph(stack)
    (volume,) = [v for v in g.of_type(VOLUME) if v.prop("name") == f"fly-potato-{stack}-wal-archive"]
    assert volume.options.get("retain_on_delete", False) is (stack == "prod")
    containers = g.containers()
    for service in ("postgres", "backup"):
        mounts = [m for m in containers[service].prop("mounts") if m["target"] == WAL_ARCHIVE_MOUNT]
        assert mounts == [
            {
                "type": "volume",
                "source": f"fly-potato-{stack}-wal-archive",
                "target": WAL_ARCHIVE_MOUNT,
                "readOnly": False,
            }
        ], service
        assert volume.urn in containers[service].dependencies, f"{service} must wait for the volume"
    # The backup uid shares postgres' group, which owns the archive (2770): it reads and prunes the files.
    assert containers["postgres"].prop("user") == "10010:10010"
    assert containers["backup"].prop("user") == "10011:10010"
    backups = [m for m in containers["backup"].prop("mounts") if m["target"] == "/var/backups/fly-potato"]
    assert backups == [
        {
            "type": "volume",
            "source": f"fly-potato-{stack}-backups",
            "target": "/var/backups/fly-potato",
            "readOnly": False,
        }
    ]


# --- postgres' archive settings ----------------------------------------------------------------------


@STACKS
def test_postgres_gets_the_archive_settings_the_backup_programs_print(stack: str) -> None:
    files = uploads(graph(stack).containers()["postgres"])
    conf = files[POSTGRES_CONF_FILE]
    assert conf["permissions"] == "0440"
    lines = [line for line in conf["content"].splitlines() if not line.startswith("# WAL archiving of")]
    assert lines == show_config(WAL_ARCHIVE_MOUNT, 60)
    assert "wal_level = replica" in lines and "archive_mode = on" in lines and "archive_timeout = 60" in lines


def test_the_archive_timeout_comes_from_the_stack_config() -> None:
    g = graph("prod", **{"backup.archive_timeout_seconds": 120})
    conf = uploads(g.containers()["postgres"])[POSTGRES_CONF_FILE]["content"]
    assert "archive_timeout = 120" in conf.splitlines()
    assert env(g.containers()["backup"])["BACKUP_ARCHIVE_TIMEOUT_SECONDS"] == "120"
    settings = parse_settings(stack_config("prod", {"backup.archive_timeout_seconds": 120}), stack="prod")
    assert conf == archive_settings(settings)


# --- the backup container ----------------------------------------------------------------------------


@STACKS
def test_backup_env_names_files_and_carries_no_secret(stack: str) -> None:
    g = graph(stack)
    backup = g.containers()["backup"]
    assert not is_secret(backup.inputs["envs"]), "the environment must not be computed from secrets"
    assert env(backup) == {
        "BACKUP_DIR": "/var/backups/fly-potato",
        "BACKUP_DATABASE_URL_FILE": "/etc/fly-potato/secrets/backup_url",
        "BACKUP_DUMP_RETENTION_DAYS": "14",
        "BACKUP_WAL_RETENTION_DAYS": "7",
        "BACKUP_SCHEDULE_UTC": "02:30",
        "BACKUP_METRICS_PORT": "9481",
        "BACKUP_METRICS_TOKEN_FILE": "/etc/fly-potato/secrets/metrics_token",
        "BACKUP_ARCHIVE_TIMEOUT_SECONDS": "60",
        "BACKUP_WAL_ARCHIVE_DIR": WAL_ARCHIVE_MOUNT,
    }
    token = mock_password(g, "metrics-token")
    backup_password = mock_password(g, "database-backup-password")
    text = " ".join(backup.prop("envs"))
    assert token not in text and backup_password not in text
    files = uploads(backup)
    assert files["/etc/fly-potato/secrets/metrics_token"]["content"] == token
    assert backup_password in files["/etc/fly-potato/secrets/backup_url"]["content"]
    for path in ("/etc/fly-potato/secrets/metrics_token", "/etc/fly-potato/secrets/backup_url"):
        assert files[path]["permissions"] == "0400", path
    # The files container hands them to backup's own uid (group: postgres', for the WAL archive).
    assert "-type f -exec chown 10011:10010 " in g.files_containers()["backup"].prop("entrypoints")[-1]


@STACKS
def test_the_metrics_token_is_the_one_prometheus_sends(stack: str) -> None:
    g = graph(stack)
    containers = g.containers()
    token = uploads(containers["backup"])["/etc/fly-potato/secrets/metrics_token"]["content"]
    assert uploads(containers["prometheus"])[PATHS.metrics_token]["content"] == token
    assert uploads(containers["backend"])["/etc/fly-potato/secrets/metrics_token"]["content"] == token


@STACKS
def test_backup_runs_the_scheduler_with_a_tmp_tmpfs_and_an_unauthenticated_health_probe(stack: str) -> None:
    backup = graph(stack).containers()["backup"]
    assert backup.prop("command") == ["service"]
    assert backup.prop("entrypoints") is None  # the image's `python3 -m backup`
    assert backup.prop("tmpfs") == {"/tmp": "rw,noexec,nosuid,size=64m,uid=10011,gid=10010"}
    assert backup.prop("readOnly") is True
    test = backup.prop("healthcheck")["tests"]
    probe = " ".join(test)
    assert "/dev/tcp/127.0.0.1/9481" in probe and "GET /healthz " in probe
    assert "/metrics" not in probe, "/metrics needs the bearer token; the healthcheck has none"


@STACKS
def test_the_backup_container_waits_for_the_database_component(stack: str) -> None:
    g = graph(stack)
    backup = g.containers()["backup"]
    (component,) = g.of_type("fly-potato:database:PlatformDatabases")
    waits_for = g.ancestors_and_dependencies(backup.urn)
    assert component.urn in waits_for
    roles = {r.prop("name"): r.urn for r in g.of_type(f"{PG}/role:Role")}
    assert roles["backup"] in waits_for
    template = next(r for r in g.of_type(f"{PG}/database:Database") if r.prop("name") == "template_postgis")
    assert template.urn in waits_for


# --- template_postgis ---------------------------------------------------------------------------------


@STACKS
def test_template_postgis_is_a_superuser_template_with_postgis_and_backup_may_connect(stack: str) -> None:
    g = graph(stack)
    (template,) = [r for r in g.of_type(f"{PG}/database:Database") if r.prop("name") == "template_postgis"]
    assert template.prop("isTemplate") is True
    assert template.prop("allowConnections") is True
    assert template.prop("owner") == "postgres"
    assert template.prop("template") == "template0"
    extensions = [r for r in g.of_type(f"{PG}/extension:Extension") if r.prop("database") == "template_postgis"]
    assert [(e.prop("name"), e.prop("schema")) for e in extensions] == [("postgis", "public")]
    assert template.urn in extensions[0].property_dependencies["database"]
    grants = {
        (r.prop("role"), tuple(r.prop("privileges")))
        for r in g.of_type(f"{PG}/grant:Grant")
        if r.prop("objectType") == "database" and r.prop("database") == "template_postgis"
    }
    assert grants == {("backup", ("CONNECT",)), ("public", ())}
    provider = next(r for r in g.resources if r.type == "pulumi:providers:postgresql")
    assert str(provider.prop("superuser")).lower() == "true" and provider.prop("username") == "postgres"
    for resource in [template, *extensions]:
        assert resource.provider.startswith(provider.urn), resource.name


# --- the scrape ------------------------------------------------------------------------------------------


@STACKS
def test_prometheus_scrapes_backup_with_the_bearer_token_file(stack: str) -> None:
    prometheus = graph(stack).containers()["prometheus"]
    files = uploads(prometheus)
    config = yaml.safe_load(files[PATHS.prometheus_config]["content"])
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "backup"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": PATHS.metrics_token}
    assert PATHS.metrics_token in files and files[PATHS.metrics_token]["permissions"] == "0400"
    assert job["static_configs"][0]["targets"] == ["backup:9481"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # backup_job_last_run_ok{job="drill"} keeps its own job label (the BackupJobFailed rule matches on it).
    assert {"source_labels": ["exported_job"], "regex": "(.+)", "target_label": "job"} in job["metric_relabel_configs"]
    rules = yaml.safe_load(files[PATHS.rules]["content"])
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert {"BackupTooOld", "BackupJobFailed", "WalArchiveFailing"} <= alerts


# --- backups off ---------------------------------------------------------------------------------------


def test_without_backups_postgres_does_not_archive() -> None:
    g = graph("dev", **{"features.backups": False})  # prod refuses backups off (R-DB-2)
    containers = g.containers()
    assert "backup" not in containers
    assert not [v for v in g.of_type(VOLUME) if v.prop("name") == "fly-potato-dev-wal-archive"]
    postgres = containers["postgres"]
    assert POSTGRES_CONF_FILE not in uploads(postgres)
    assert WAL_ARCHIVE_MOUNT not in {m["target"] for m in postgres.prop("mounts")}
    rules = uploads(containers["prometheus"])[PATHS.rules]["content"]
    assert "BackupJobFailed" not in rules and "WalArchiveFailing" not in rules
