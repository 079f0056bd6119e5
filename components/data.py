"""The data zone: PostGIS, the one-shot migration and the backup service.

What lives inside Postgres (databases, schemas, roles, grants) is ``components.database``.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from components.container import (
    CONFIG_DIR,
    SECRETS_DIR,
    ContainerFile,
    HardenedContainer,
    HardenedContainerArgs,
    Healthcheck,
    VolumeMount,
)
from components.database import APP_DATABASE, pg_hba
from components.network import NetworkZones
from components.settings import Settings

TYPE = "fly-potato:data:DataServices"

PGDATA_MOUNT = "/var/lib/postgresql/data"
BACKUP_MOUNT = "/var/backups/fly-potato"
PG_HBA_FILE = f"{CONFIG_DIR}/pg_hba.conf"  # where the image's entrypoint looks for it (POSTGRES_HBA_FILE)

__all__ = ["APP_DATABASE", "BACKUP_MOUNT", "PGDATA_MOUNT", "PG_HBA_FILE", "DataServices"]


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
            labels=[docker.VolumeLabelArgs(label="org.flypotato.stack", value=settings.stack)],
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=settings.is_prod),
        )
        self.backup_volume = docker.Volume(
            f"{name}-backups",
            name=settings.resource_name("backups"),
            labels=[docker.VolumeLabelArgs(label="org.flypotato.stack", value=settings.stack)],
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=settings.is_prod),
        )

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
                ],
                volumes=[VolumeMount(self.data_volume, PGDATA_MOUNT)],
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
        self, settings: Settings, zones: NetworkZones, backup_url: pulumi.Input[str], opts: pulumi.ResourceOptions
    ) -> HardenedContainer:
        """Daily dumps and the WAL archive on the backup volume (R-DB-2)."""
        metrics_port = settings.ports["backup_metrics"]
        raw = settings.raw.backup
        self.backup = HardenedContainer(
            f"{self._prefix}-backup",
            HardenedContainerArgs(
                service="backup",
                image=settings.images["backup"],
                env={
                    "BACKUP_DIR": BACKUP_MOUNT,
                    "BACKUP_DATABASE_URL_FILE": f"{SECRETS_DIR}/backup_url",
                    "BACKUP_DUMP_RETENTION_DAYS": str(raw.dump_retention_days),
                    "BACKUP_WAL_RETENTION_DAYS": str(raw.wal_retention_days),
                    "BACKUP_SCHEDULE_UTC": raw.schedule_utc,
                    "BACKUP_METRICS_PORT": str(metrics_port),
                },
                files=[ContainerFile(f"{SECRETS_DIR}/backup_url", backup_url, secret=True, mode="0400")],
                volumes=[VolumeMount(self.backup_volume, BACKUP_MOUNT)],
                healthcheck=Healthcheck(
                    test=[
                        "CMD",
                        "python3",
                        "-c",
                        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{metrics_port}/metrics', timeout=3)",
                    ],
                ),
            ),
            settings,
            zones,
            opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts),
        )
        return self.backup
