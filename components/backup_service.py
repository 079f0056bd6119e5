"""The backup service (R-DB-2): the image's ``service`` scheduler — daily dump, base backup, prune and WAL
check, weekly restore drill — with /metrics behind the platform's metrics token (R-SEC-5).

It mounts the data zone's backup volume and, read-write, the WAL archive Postgres writes into
(``components.data_services``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from components.data_services import BACKUP_MOUNT, METRICS_TOKEN_FILE, WAL_ARCHIVE_MOUNT
from components.hardened_container import (
    SECRETS_DIR,
    ContainerFile,
    HardenedContainer,
    HardenedContainerArgs,
    VolumeMount,
    http_probe,
)
from components.network_zones import NetworkZones
from components.placement import Placement
from components.settings import BackupConfig

TYPE = "fly-potato:data:BackupService"
# The container's resource name from when the data zone owned it; kept, so deployed stacks keep the container.
CONTAINER = "data-backup"


def backup_env(schedule: BackupConfig, metrics_port: int) -> dict[str, str]:
    """The backup service's settings as environment, on a host and on a swarm alike; its secrets are the files
    of :func:`backup_files`."""
    return {
        "BACKUP_DIR": BACKUP_MOUNT,
        "BACKUP_DATABASE_URL_FILE": f"{SECRETS_DIR}/backup_url",
        "BACKUP_DUMP_RETENTION_DAYS": str(schedule.dump_retention_days),
        "BACKUP_WAL_RETENTION_DAYS": str(schedule.wal_retention_days),
        "BACKUP_SCHEDULE_UTC": schedule.schedule_utc,
        "BACKUP_METRICS_PORT": str(metrics_port),
        "BACKUP_METRICS_TOKEN_FILE": METRICS_TOKEN_FILE,
        "BACKUP_ARCHIVE_TIMEOUT_SECONDS": str(schedule.archive_timeout_seconds),
        "BACKUP_WAL_ARCHIVE_DIR": WAL_ARCHIVE_MOUNT,
    }


def backup_files(backup_url: pulumi.Input[str], metrics_token: pulumi.Input[str]) -> list[ContainerFile]:
    """The backup role's connection URL and the metrics token, secret files readable by the service alone."""
    return [
        ContainerFile(f"{SECRETS_DIR}/backup_url", backup_url, secret=True, mode="0400"),
        ContainerFile(METRICS_TOKEN_FILE, metrics_token, secret=True, mode="0400"),
    ]


@dataclass(frozen=True)
class BackupServiceArgs:
    placement: Placement
    zones: NetworkZones
    image: str
    metrics_port: int
    schedule: BackupConfig  # retention, schedule and archive timeout of the stack
    backup_url: pulumi.Input[str]
    metrics_token: pulumi.Input[str]
    backup_volume: docker.Volume
    wal_archive_volume: docker.Volume
    after: Sequence[pulumi.Resource] = ()  # the roles
    # The component that owned the container before (the data zone): an alias, so nothing is replaced.
    moved_from: pulumi.Resource | None = None


class BackupService(pulumi.ComponentResource):
    def __init__(self, name: str, args: BackupServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        metrics_port = args.metrics_port
        schedule = args.schedule
        self.container = HardenedContainer(
            CONTAINER,
            HardenedContainerArgs(
                service="backup",
                image=args.image,
                command=["service"],
                env=backup_env(schedule, metrics_port),
                files=backup_files(args.backup_url, args.metrics_token),
                volumes=[
                    VolumeMount(args.backup_volume, BACKUP_MOUNT),
                    # Read-write: the prune job deletes WAL older than the retention (group 10010, mode 2770).
                    VolumeMount(args.wal_archive_volume, WAL_ARCHIVE_MOUNT),
                ],
                tmpfs={"/tmp": "rw,noexec,nosuid,size=64m"},
                # /healthz needs no token; /metrics does.
                healthcheck=http_probe(metrics_port, "/healthz"),
            ),
            args.placement,
            args.zones,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.after),
                aliases=[pulumi.Alias(parent=args.moved_from)] if args.moved_from is not None else None,
            ),
        )
        self.register_outputs({"container": self.container.name})
