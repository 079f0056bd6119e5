"""The data zone: PostGIS, the one-shot migration and the backup service.

What lives inside Postgres (databases, schemas, roles, grants) is ``components.database``.

WAL archiving (R-DB-2): with backups on, Postgres writes every WAL segment, gzip-compressed, into the
WAL archive volume, mounted at the same path in the postgres and backup containers (the backup uid is in
postgres' group 10010). The settings are the ones ``python3 -m backup show-config`` prints, delivered as
``/etc/fly-potato/postgresql.conf``, which the postgis image's postgresql.conf includes.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from backup import wal  # stdlib only: the one definition of archive_command and restore_command
from components.container import (
    CONFIG_DIR,
    SECRETS_DIR,
    ContainerFile,
    HardenedContainer,
    HardenedContainerArgs,
    Healthcheck,
    VolumeMount,
    http_probe,
)
from components.database import APP_DATABASE, pg_hba
from components.network import NetworkZones
from components.settings import Settings
from wire import STACK_LABEL

TYPE = "fly-potato:data:DataServices"

PGDATA_MOUNT = "/var/lib/postgresql/data"
BACKUP_MOUNT = "/var/backups/fly-potato"
PG_HBA_FILE = f"{CONFIG_DIR}/pg_hba.conf"  # where the image's entrypoint looks for it (POSTGRES_HBA_FILE)
# The postgis image's postgresql.conf has `include_if_exists` of this path (images/postgis).
POSTGRES_CONF_FILE = f"{CONFIG_DIR}/postgresql.conf"
WAL_ARCHIVE_MOUNT = "/var/lib/postgresql/wal-archive"  # same path in postgres and backup
METRICS_TOKEN_FILE = f"{SECRETS_DIR}/metrics_token"  # the token Prometheus sends (monitoring_config.PATHS)

__all__ = [
    "APP_DATABASE",
    "BACKUP_MOUNT",
    "METRICS_TOKEN_FILE",
    "PGDATA_MOUNT",
    "PG_HBA_FILE",
    "POSTGRES_CONF_FILE",
    "WAL_ARCHIVE_MOUNT",
    "DataServices",
    "archive_settings",
]


def archive_settings(settings: Settings) -> str:
    """postgresql.conf lines for WAL archiving: what `python3 -m backup show-config` prints for the stack."""
    return "\n".join(
        [
            f"# WAL archiving of {settings.project}-{settings.stack} (R-DB-2), generated from the stack settings.",
            "wal_level = replica",
            "archive_mode = on",
            f"archive_command = '{wal.archive_command(WAL_ARCHIVE_MOUNT)}'",
            f"archive_timeout = {settings.raw.backup.archive_timeout_seconds}",
            f"# restore_command (PITR): '{wal.restore_command(WAL_ARCHIVE_MOUNT)}'",
            "",
        ]
    )


class DataServices(pulumi.ComponentResource):
    """PostGIS on its own volume, migrations that run before the backend, and backups."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        zones: NetworkZones,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self._prefix = name
        port = settings.ports["postgres"]

        # The image applies POSTGRES_PASSWORD_FILE at initdb only, so the superuser password cannot follow the
        # rotation epoch: a new value would lock the Postgres provider out of the existing cluster.
        self.superuser_password = random.RandomPassword(
            f"{name}-postgres-superuser",
            length=40,
            special=False,
            min_lower=2,
            min_upper=2,
            min_numeric=2,
            keepers={"applied": "at-initdb"},
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["result"]),
        )
        self.data_volume = docker.Volume(
            f"{name}-pgdata",
            name=settings.resource_name("pgdata"),
            labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=settings.stack)],
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=settings.is_prod),
        )
        self.backup_volume = docker.Volume(
            f"{name}-backups",
            name=settings.resource_name("backups"),
            labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=settings.stack)],
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=settings.is_prod),
        )
        # Archiving only runs with the backup service: nothing else would prune the archive.
        self.wal_archive_volume: docker.Volume | None = None
        postgres_volumes = [VolumeMount(self.data_volume, PGDATA_MOUNT)]
        postgres_files: list[ContainerFile] = []
        if settings.features.backups:
            self.wal_archive_volume = docker.Volume(
                f"{name}-wal-archive",
                name=settings.resource_name("wal-archive"),
                labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=settings.stack)],
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=settings.is_prod),
            )
            postgres_volumes.append(VolumeMount(self.wal_archive_volume, WAL_ARCHIVE_MOUNT))
            postgres_files.append(ContainerFile(POSTGRES_CONF_FILE, archive_settings(settings), mode="0440"))

        self.postgres = HardenedContainer(
            f"{name}-postgres",
            HardenedContainerArgs(
                service="postgres",
                image=settings.images["postgres"],
                env={
                    "PGPORT": str(port),
                    "PGDATA": f"{PGDATA_MOUNT}/pgdata",
                    "POSTGRES_PASSWORD_FILE": f"{SECRETS_DIR}/postgres_password",
                    "POSTGRES_HBA_FILE": PG_HBA_FILE,
                },
                files=[
                    ContainerFile(
                        f"{SECRETS_DIR}/postgres_password", self.superuser_password.result, secret=True, mode="0400"
                    ),
                    # Known at preview: the zones' subnets are fixed in the settings.
                    ContainerFile(PG_HBA_FILE, pg_hba(settings), mode="0440"),
                    *postgres_files,
                ],
                volumes=postgres_volumes,
                tmpfs={"/tmp": "rw,noexec,nosuid,size=64m", "/run/postgresql": "rw,noexec,nosuid,size=16m"},
                healthcheck=Healthcheck(
                    test=["CMD", "pg_isready", "--host=127.0.0.1", f"--port={port}", "--timeout=3"],
                    start_period="30s",
                ),
            ),
            settings,
            zones,
            opts=child,
        )
        self.host = "postgres"
        self.port = port
        self.register_outputs({"postgres": self.postgres.name})

    def add_migration(
        self, settings: Settings, zones: NetworkZones, migrator_url: pulumi.Input[str], opts: pulumi.ResourceOptions
    ) -> HardenedContainer:
        """The one-shot `alembic upgrade head`, run with the backend image as the migrator role."""
        self.migration = HardenedContainer(
            f"{self._prefix}-migration",
            HardenedContainerArgs(
                service="migration",
                image=settings.images["migration"],
                command=["alembic", "upgrade", "head"],
                env={
                    "FLY_POTATO_PROFILE": settings.profile.value,
                    "FLY_POTATO_MIGRATOR_URL_FILE": f"{SECRETS_DIR}/migrator_url",
                },
                files=[ContainerFile(f"{SECRETS_DIR}/migrator_url", migrator_url, secret=True, mode="0400")],
                healthcheck=None,
                one_shot=True,
            ),
            settings,
            zones,
            opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts),
        )
        return self.migration

    def add_backup(
        self,
        settings: Settings,
        zones: NetworkZones,
        backup_url: pulumi.Input[str],
        metrics_token: pulumi.Input[str],
        opts: pulumi.ResourceOptions,
    ) -> HardenedContainer:
        """The backup service (R-DB-2): the image's `service` scheduler — daily dump, base backup, prune and
        WAL check, weekly restore drill — with /metrics behind the platform's metrics token (R-SEC-5)."""
        if self.wal_archive_volume is None:
            raise ValueError("add_backup needs the WAL archive: construct DataServices with features.backups on")
        metrics_port = settings.ports["backup_metrics"]
        raw = settings.raw.backup
        self.backup = HardenedContainer(
            f"{self._prefix}-backup",
            HardenedContainerArgs(
                service="backup",
                image=settings.images["backup"],
                command=["service"],
                env={
                    "BACKUP_DIR": BACKUP_MOUNT,
                    "BACKUP_DATABASE_URL_FILE": f"{SECRETS_DIR}/backup_url",
                    "BACKUP_DUMP_RETENTION_DAYS": str(raw.dump_retention_days),
                    "BACKUP_WAL_RETENTION_DAYS": str(raw.wal_retention_days),
                    "BACKUP_SCHEDULE_UTC": raw.schedule_utc,
                    "BACKUP_METRICS_PORT": str(metrics_port),
                    "BACKUP_METRICS_TOKEN_FILE": METRICS_TOKEN_FILE,
                    "BACKUP_ARCHIVE_TIMEOUT_SECONDS": str(raw.archive_timeout_seconds),
                    "BACKUP_WAL_ARCHIVE_DIR": WAL_ARCHIVE_MOUNT,
                },
                files=[
                    ContainerFile(f"{SECRETS_DIR}/backup_url", backup_url, secret=True, mode="0400"),
                    ContainerFile(METRICS_TOKEN_FILE, metrics_token, secret=True, mode="0400"),
                ],
                volumes=[
                    VolumeMount(self.backup_volume, BACKUP_MOUNT),
                    # Read-write: the prune job deletes WAL older than the retention (group 10010, mode 2770).
                    VolumeMount(self.wal_archive_volume, WAL_ARCHIVE_MOUNT),
                ],
                tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
                # /healthz needs no token; /metrics does.
                healthcheck=http_probe(metrics_port, "/healthz"),
            ),
            settings,
            zones,
            opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts),
        )
        return self.backup
