"""The data zone: PostGIS on its volumes. The one-shot migration is ``components.migration``, the backup
service ``components.backup_service``; what lives inside Postgres (databases, schemas, roles, grants) is
``components.platform_databases``.

WAL archiving (R-DB-2): with backups on, Postgres writes every WAL segment, gzip-compressed, into the
WAL archive volume, mounted at the same path in the postgres and backup containers (the backup uid is in
postgres' group 10010). The settings are the ones ``python3 -m backup show-config`` prints, delivered as
``/etc/fly-potato/postgresql.conf``, which the postgis image's postgresql.conf includes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from backup import wal  # stdlib only: the one definition of archive_command and restore_command
from components.hardened_container import (
    CONFIG_DIR,
    SECRETS_DIR,
    ContainerFile,
    HardenedContainer,
    HardenedContainerArgs,
    Healthcheck,
    VolumeMount,
)
from components.network_zones import NetworkZones
from components.placement import Placement
from components.platform_databases import APP_DATABASE
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
    "DataArgs",
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


@dataclass(frozen=True)
class DataArgs:
    """What the data zone needs: the Postgres image, port and access rules, and whether WAL is archived."""

    placement: Placement
    zones: NetworkZones
    image: str
    port: int
    pg_hba: str  # known at preview: the zones' subnets are fixed in the settings
    # postgresql.conf lines of WAL archiving (``archive_settings``); None: backups off, no archive volume.
    archive_conf: str | None
    retain_volumes: bool  # prod keeps the data volumes when the stack lets go of them


class DataServices(pulumi.ComponentResource):
    """PostGIS on its own volume, with the backup and WAL archive volumes the backup service mounts."""

    def __init__(self, name: str, args: DataArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        port = args.port
        placement = args.placement

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
            name=placement.resource_name("pgdata"),
            labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=placement.stack)],
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_volumes),
        )
        self.backup_volume = docker.Volume(
            f"{name}-backups",
            name=placement.resource_name("backups"),
            labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=placement.stack)],
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_volumes),
        )
        # Archiving only runs with the backup service: nothing else would prune the archive.
        self.wal_archive_volume: docker.Volume | None = None
        postgres_volumes = [VolumeMount(self.data_volume, PGDATA_MOUNT)]
        postgres_files: list[ContainerFile] = []
        if args.archive_conf is not None:
            self.wal_archive_volume = docker.Volume(
                f"{name}-wal-archive",
                name=placement.resource_name("wal-archive"),
                labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=placement.stack)],
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_volumes),
            )
            postgres_volumes.append(VolumeMount(self.wal_archive_volume, WAL_ARCHIVE_MOUNT))
            postgres_files.append(ContainerFile(POSTGRES_CONF_FILE, args.archive_conf, mode="0440"))

        self.postgres = HardenedContainer(
            f"{name}-postgres",
            HardenedContainerArgs(
                service="postgres",
                image=args.image,
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
                    ContainerFile(PG_HBA_FILE, args.pg_hba, mode="0440"),
                    *postgres_files,
                ],
                volumes=postgres_volumes,
                tmpfs={"/tmp": "rw,noexec,nosuid,size=64m", "/run/postgresql": "rw,noexec,nosuid,size=16m"},
                healthcheck=Healthcheck(
                    test=["CMD", "pg_isready", "--host=127.0.0.1", f"--port={port}", "--timeout=3"],
                    start_period="30s",
                ),
            ),
            placement,
            args.zones,
            opts=child,
        )
        self.host = "postgres"
        self.port = port
        self.register_outputs({"postgres": self.postgres.name})
