"""The data zone: PostGIS, the one-shot migration and the backup service."""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.container import (
    SECRETS_DIR,
    ContainerFile,
    HardenedContainer,
    HardenedContainerArgs,
    Healthcheck,
    VolumeMount,
)
from components.network import NetworkZones
from components.secrets import generated_password
from components.settings import Settings

TYPE = "fly-potato:data:DataServices"

PGDATA_MOUNT = "/var/lib/postgresql/data"
BACKUP_MOUNT = "/var/backups/fly-potato"
APP_DATABASE = "flypotato"


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

        self.superuser_password = generated_password(f"{name}-postgres-superuser", settings, parent=self)
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
                    "POSTGRES_INITDB_ARGS": "--auth-host=scram-sha-256 --auth-local=peer",
                },
                files=[
                    ContainerFile(
                        f"{SECRETS_DIR}/postgres_password", self.superuser_password.result, secret=True, mode="0400"
                    ),
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
                env={"FLY_POTATO_PROFILE": settings.profile.value,
                     "FLY_POTATO_MIGRATOR_URL_FILE": f"{SECRETS_DIR}/migrator_url"},
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
                    test=["CMD", "python3", "-c",
                          f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{metrics_port}/metrics', timeout=3)"],
                ),
            ),
            settings,
            zones,
            opts=pulumi.ResourceOptions.merge(pulumi.ResourceOptions(parent=self), opts),
        )
        return self.backup
