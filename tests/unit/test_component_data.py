"""The data zone's components alone, from hand-made args under the mocks: DataServices, Migration and
BackupService (R-DB-1, R-DB-2, R-SEC-1)."""

from __future__ import annotations

from typing import Any

import pytest

from components.backup_service import BackupService, BackupServiceArgs
from components.data_services import (
    METRICS_TOKEN_FILE,
    PG_HBA_FILE,
    POSTGRES_CONF_FILE,
    WAL_ARCHIVE_MOUNT,
    DataArgs,
    DataServices,
)
from components.hardened_container import SECRETS_DIR
from components.migration import Migration, MigrationArgs
from components.settings import BackupConfig
from policy_plan.program import PlannedResource, ProgramGraph, is_secret
from tests.support.components import children, component, component_graph, resource_stub
from tests.unit.test_backup_wiring import env, uploads

HARDENED = "fly-potato:container:HardenedContainer"
CONTAINER = "docker:index/container:Container"
VOLUME = "docker:index/volume:Volume"


def data_args(placement: Any, zones: Any, archive_conf: str | None) -> DataArgs:
    return DataArgs(
        placement=placement,
        zones=zones,
        image="postgis:test",
        port=5433,
        pg_hba="hostssl all all 10.0.0.0/8 scram-sha-256\n",
        archive_conf=archive_conf,
        retain_volumes=True,
    )


def secret_files(graph: ProgramGraph, name: str) -> set[str]:
    """Paths of the files a service receives, when they travel as a Pulumi secret (else the empty set)."""
    loader = graph.files_containers()[name]
    return set(uploads(loader)) if is_secret(loader.inputs["uploads"]) else set()


def service(graph: ProgramGraph, name: str) -> PlannedResource:
    """The service container (not the files container) named ``name``."""
    return next(r for r in graph.of_type(CONTAINER) if r.name == name)


@pytest.mark.parametrize("archive", [None, "archive_mode = on\n"])
def test_data_services_alone(archive: str | None) -> None:
    graph = component_graph(
        "dev", lambda _s, placement, zones: DataServices("data", data_args(placement, zones, archive))
    )
    data = component(graph, "fly-potato:data:DataServices")
    volumes = {r.name: r for r in graph.of_type(VOLUME) if r.parent == data.urn}
    expected = {"data-pgdata", "data-backups"} | ({"data-wal-archive"} if archive else set())
    assert set(volumes) == expected
    assert all(v.options["retain_on_delete"] for v in volumes.values())
    postgres = service(graph, "data-postgres")
    assert postgres.prop("image") == "postgis:test"
    assert env(postgres)["PGPORT"] == "5433"
    files = uploads(graph.files_containers()["postgres"])
    assert files[PG_HBA_FILE]["content"] == "hostssl all all 10.0.0.0/8 scram-sha-256\n"
    assert (POSTGRES_CONF_FILE in files) == bool(archive)
    assert f"{SECRETS_DIR}/postgres_password" in secret_files(graph, "postgres")
    mounts = {m["target"] for m in postgres.prop("mounts")}
    assert (WAL_ARCHIVE_MOUNT in mounts) == bool(archive)


def test_migration_alone_waits_and_keeps_its_old_place() -> None:
    made: dict[str, Any] = {}

    def build(_settings: Any, placement: Any, zones: Any) -> None:
        made["roles"] = resource_stub("roles")
        made["data"] = DataServices("data", data_args(placement, zones, None))
        Migration(
            "migration",
            MigrationArgs(
                placement=placement,
                zones=zones,
                image="backend:test",
                profile="dev",
                migrator_url="postgresql://migrator@postgres/app",
                after=[made["roles"]],
                moved_from=made["data"],
            ),
        )

    graph = component_graph("dev", build)
    migration = component(graph, "fly-potato:data:Migration")
    (hardened,) = children(graph, migration)
    assert (hardened.type, hardened.name) == (HARDENED, "data-migration")
    assert hardened.dependencies == [graph.by_name("roles").urn]
    (alias,) = hardened.aliases
    assert alias["spec"]["parentUrn"] == component(graph, "fly-potato:data:DataServices").urn
    container = service(graph, "data-migration")
    assert container.prop("command") == ["alembic", "upgrade", "head"]
    assert container.prop("restart") == "no" and container.prop("attach") is True  # one-shot
    assert secret_files(graph, "migration") == {f"{SECRETS_DIR}/migrator_url"}


def test_backup_service_alone() -> None:
    schedule = BackupConfig(dump_retention_days=20, wal_retention_days=9, schedule_utc="03:15")

    def build(_settings: Any, placement: Any, zones: Any) -> None:
        data = DataServices("data", data_args(placement, zones, "archive_mode = on\n"))
        assert data.wal_archive_volume is not None
        BackupService(
            "backup",
            BackupServiceArgs(
                placement=placement,
                zones=zones,
                image="backup:test",
                metrics_port=9187,
                schedule=schedule,
                backup_url="postgresql://backup@postgres/app",
                metrics_token="token",
                backup_volume=data.backup_volume,
                wal_archive_volume=data.wal_archive_volume,
                moved_from=data,
            ),
        )

    graph = component_graph("dev", build)
    backup = component(graph, "fly-potato:data:BackupService")
    (hardened,) = children(graph, backup)
    assert hardened.name == "data-backup" and hardened.aliases
    container = service(graph, "data-backup")
    variables = env(container)
    assert variables["BACKUP_DUMP_RETENTION_DAYS"] == "20"
    assert variables["BACKUP_WAL_RETENTION_DAYS"] == "9"
    assert variables["BACKUP_SCHEDULE_UTC"] == "03:15"
    assert variables["BACKUP_METRICS_PORT"] == "9187"
    targets = {m["target"]: m for m in container.prop("mounts")}
    assert not targets[WAL_ARCHIVE_MOUNT].get("read_only")  # the prune job deletes old WAL
    assert secret_files(graph, "backup") == {f"{SECRETS_DIR}/backup_url", METRICS_TOKEN_FILE}
