"""Backups on a swarm (R-DB-2) and the release's pre-deploy dump (R-OPS-2), as on a host.

- ``BackupVolumes``: the backup volume and the WAL archive volume, created through the Docker API of the data
  node (``swarm.data_docker_host``, default the manager), before PostgreSQL: with backups on, postgres mounts the
  archive and gets the archiving ``postgresql.conf`` (``data_services.archive_settings``) as a Swarm config.
- ``SwarmBackups``: the backup service (``components.backup_service`` on a host) as one task pinned to the data
  role, where both volumes live, its secrets as Swarm secrets; and the pre-deploy step, ``python3 -m backup
  dump`` in that running task whenever the schema fingerprint (the release, or Keycloak's image) changes
  (``components/host/predeploy-backup.sh --service``, run with ``DOCKER_HOST`` = the data node, which finds the
  task by the swarm's service label). The migration and Keycloak wait for it (``after``).

The volumes are named as on a host (``<project>-<stack>-backups``, ``-wal-archive``); a fresh volume takes the
owner and mode of the image's directory (postgres 10010:10010 2770 for the archive, backup 10011:10010 2770).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.backup_service import backup_env, backup_files
from components.catalog import Resources, Zone
from components.data_services import (
    BACKUP_MOUNT,
    POSTGRES_CONF_FILE,
    WAL_ARCHIVE_MOUNT,
    archive_settings,
)
from components.hardened_container import http_probe
from components.host_guardrails import DockerHost
from components.release_order import STEP_TYPES, ReleaseOrder, predeploy_reason, predeploy_script
from components.settings import BackupConfig, Settings
from components.swarm.files import ServiceFile
from components.swarm.placement import SwarmPlacement, placement_of
from components.swarm.service import HardenedService, HardenedServiceArgs
from components.swarm.specs import probe, service_files, swarm_zones_of
from components.swarm.zones import SwarmZones
from wire import STACK_LABEL

VOLUMES_TYPE = "fly-potato:swarm:BackupVolumes"
TYPE = "fly-potato:swarm:SwarmBackups"
SERVICE = "backup"


@dataclass(frozen=True)
class PostgresArchive:
    """What postgres adds for WAL archiving: the archive volume (name -> path), the conf, what to wait for."""

    volumes: Mapping[str, str] = field(default_factory=dict)
    files: tuple[ServiceFile, ...] = ()
    after: tuple[pulumi.Resource, ...] = ()


NO_ARCHIVE = PostgresArchive()  # backups off: postgres archives nothing (nothing would prune the archive)


@dataclass(frozen=True)
class BackupVolumesArgs:
    project: str
    stack: str
    provider: docker.Provider  # the data node's Docker API: the volumes live where the stateful tasks run
    archive_conf: str  # postgresql.conf lines of WAL archiving (``data_services.archive_settings``)
    retain: bool  # prod keeps the volumes when the stack lets go of them

    def volume_name(self, purpose: str) -> str:
        return f"{self.project}-{self.stack}-{purpose}"


class BackupVolumes(pulumi.ComponentResource):
    """The backup and WAL archive volumes on the data node; ``postgres`` is what postgres adds to archive."""

    def __init__(self, name: str, args: BackupVolumesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(VOLUMES_TYPE, name, None, opts)
        on_data_node = pulumi.ResourceOptions(parent=self, provider=args.provider, retain_on_delete=args.retain)
        labels = [docker.VolumeLabelArgs(label=STACK_LABEL, value=args.stack)]
        self.backups_name = args.volume_name("backups")
        self.wal_archive_name = args.volume_name("wal-archive")
        self.backups = docker.Volume("data-backups", name=self.backups_name, labels=labels, opts=on_data_node)
        self.wal_archive = docker.Volume(
            "data-wal-archive", name=self.wal_archive_name, labels=labels, opts=on_data_node
        )
        self.postgres = PostgresArchive(
            volumes={self.wal_archive_name: WAL_ARCHIVE_MOUNT},
            files=(ServiceFile(POSTGRES_CONF_FILE, args.archive_conf, mode=0o440),),
            after=(self.wal_archive,),
        )
        self.register_outputs({"backups": self.backups.name, "wal_archive": self.wal_archive.name})


@dataclass(frozen=True)
class SwarmBackupsArgs:
    project: str
    stack: str
    image: str  # REGISTRY/REPO@sha256:… (the data node pulls it)
    resources: Resources
    zones: Sequence[Zone]  # the backup's zones on the swarm (data, monitoring)
    placement: SwarmPlacement  # one task on the data role
    metrics_port: int
    schedule: BackupConfig  # retention, schedule and archive timeout of the stack
    backup_url: pulumi.Input[str]
    metrics_token: pulumi.Input[str]
    volumes: BackupVolumes
    data_node: DockerHost  # where the pre-deploy step's docker CLI calls go: the data node's Docker API
    release: ReleaseOrder
    backend_image: str
    timeout_seconds: int  # host.backup_timeout_seconds
    after: Sequence[pulumi.Resource] = ()  # the roles


class SwarmBackups(pulumi.ComponentResource):
    """The backup service on the data node and the pre-deploy dump. Pass the manager's provider in ``opts``."""

    def __init__(
        self, name: str, args: SwarmBackupsArgs, zones: SwarmZones, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        schedule, volumes = args.schedule, args.volumes
        self.metrics_port = metrics_port = args.metrics_port
        self.service = HardenedService(
            f"data-{SERVICE}",
            HardenedServiceArgs(
                project=args.project,
                stack=args.stack,
                service=SERVICE,
                image=args.image,
                resources=args.resources,
                zones=args.zones,
                replicas=args.placement.replicas,
                constraints=args.placement.constraints,
                max_replicas_per_node=args.placement.max_replicas_per_node,
                args=["service"],  # the image's entrypoint is python3 -m backup
                env=backup_env(schedule, metrics_port),
                files=service_files(backup_files(args.backup_url, args.metrics_token)),
                # Read-write both: the prune job deletes WAL older than the retention (group 10010, mode 2770).
                volumes={volumes.backups_name: BACKUP_MOUNT, volumes.wal_archive_name: WAL_ARCHIVE_MOUNT},
                # /healthz needs no token; /metrics does.
                healthcheck=probe(http_probe(metrics_port, "/healthz")),
            ),
            zones,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.after, volumes.backups, volumes.wal_archive]),
        )
        # Prometheus scrapes <name>:<metrics_port> in the monitoring zone (the catalog's alias, as on a host).
        self.name = self.service.name
        self.pre_deploy = PreDeployDump(
            "pre-deploy-backup",
            PreDeployDumpArgs(
                host=args.data_node,
                release=args.release,
                service=self.service,
                backend_image=args.backend_image,
                timeout_seconds=args.timeout_seconds,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.after: list[pulumi.Resource] = [self.pre_deploy.command]  # what the migration waits for
        self.register_outputs({"service": self.service.name, "metrics_port": metrics_port})


@dataclass(frozen=True)
class PreDeployDumpArgs:
    host: DockerHost  # the data node's Docker API, where the backup task's container runs
    release: ReleaseOrder
    service: HardenedService  # the running backup service
    backend_image: str
    timeout_seconds: int


class PreDeployDump(pulumi.ComponentResource):
    """Release step 1 on a swarm (``release_order.PreDeployBackup`` on a host): ``python3 -m backup dump`` in the
    backup service's running task whenever the schema fingerprint changes; the migration and Keycloak wait for
    ``command``."""

    def __init__(self, name: str, args: PreDeployDumpArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(STEP_TYPES["backup"], name, None, opts)
        release, timeout = args.release, args.timeout_seconds
        reason = predeploy_reason(release, args.backend_image)
        self.command = args.host.command(
            release.step_name("backup"),
            create=args.service.name.apply(lambda service: predeploy_script("--service", service, timeout, reason)),
            triggers=[release.schema_fingerprint],
            timeout_seconds=timeout + 60,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[args.service.service]),
        )
        self.register_outputs({})


def backup_volumes_args(settings: Settings, provider: docker.Provider) -> BackupVolumesArgs:
    return BackupVolumesArgs(
        project=settings.project,
        stack=settings.stack,
        provider=provider,
        archive_conf=archive_settings(settings),
        retain=settings.is_prod,
    )


def swarm_backups_args(
    settings: Settings,
    *,
    volumes: BackupVolumes,
    release: ReleaseOrder,
    backup_url: pulumi.Input[str],
    metrics_token: pulumi.Input[str],
    after: Sequence[pulumi.Resource],
) -> SwarmBackupsArgs:
    """The backup service of the stack: the host's settings, the data node's Docker API for the pre-deploy step."""
    swarm = settings.raw.swarm
    return SwarmBackupsArgs(
        project=settings.project,
        stack=settings.stack,
        image=settings.images[SERVICE],
        resources=settings.resources[SERVICE],
        zones=swarm_zones_of(settings, SERVICE),
        placement=placement_of(swarm, SERVICE),
        metrics_port=settings.ports["backup_metrics"],
        schedule=settings.raw.backup,
        backup_url=backup_url,
        metrics_token=metrics_token,
        volumes=volumes,
        data_node=DockerHost(None, swarm.data_docker_host or swarm.docker_host),
        release=release,
        backend_image=settings.images["backend"],
        timeout_seconds=settings.raw.host.backup_timeout_seconds,
        after=after,
    )


__all__ = [
    "NO_ARCHIVE",
    "BackupVolumes",
    "BackupVolumesArgs",
    "PostgresArchive",
    "PreDeployDump",
    "PreDeployDumpArgs",
    "SwarmBackups",
    "SwarmBackupsArgs",
    "backup_volumes_args",
    "swarm_backups_args",
]
