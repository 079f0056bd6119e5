"""HardenedContainer: the one way the platform runs a container, with R-SEC-2 defaults.

Non-root, no-new-privileges, every capability dropped (named ones added back), read-only root filesystem
with tmpfs scratch space, memory/CPU/PID limits, healthcheck, restart policy, log rotation, labels for
zone, service and stack, and every host binding with an explicit host IP.

Files (configuration and secrets) are delivered as content into a per-service volume that the service
mounts read-only at ``CONFIG_DIR``. Docker copies uploads to ``/`` of a container and refuses that when
the root filesystem is read-only, so a companion container (label ``FILES_FOR_LABEL``) receives them and
writes them through into the volume. Docker writes them as root; the companion then runs once, with no
network and ``CAP_CHOWN`` alone, to hand them to the service's uid:gid (``handover``), so a secret file is
readable by its service and by no other uid. Nothing is bind-mounted from the host and secrets never travel
as plain environment variables (R-SEC-1).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.catalog import SERVICES, Zone
from components.network_zones import ZoneNetworks
from components.placement import Placement
from components.settings import Settings
from wire import FILES_FOR_LABEL, GROUP_LABEL, PROJECT_LABEL, SERVICE_LABEL, STACK_LABEL, ZONES_LABEL

TYPE = "fly-potato:container:HardenedContainer"

CONFIG_DIR = "/etc/fly-potato"
SECRETS_DIR = f"{CONFIG_DIR}/secrets"
LOG_OPTS = {"max-size": "10m", "max-file": "5"}


def handover(uid: str, gid: str) -> list[str]:
    """The files container's only command: the files owned by the service, the folders by root and its group.

    Runs as root with CAP_CHOWN alone (no CAP_DAC_OVERRIDE): the folders stay root's, mode 0750 with the
    service's group, so a later hand-over can still walk them, and other uids cannot list them.
    """
    return [
        "/bin/sh",
        "-c",
        f"find {CONFIG_DIR} -type d -exec chown 0:{gid} {{}} + -exec chmod 0750 {{}} + && "
        f"find {CONFIG_DIR} -type f -exec chown {uid}:{gid} {{}} +",
    ]


@dataclass
class ContainerFile:
    """A file placed into the container before it starts. Secret content stays a Pulumi secret."""

    path: str  # absolute, under CONFIG_DIR
    content: pulumi.Input[str]
    secret: bool = False
    mode: str = "0440"
    executable: bool = False

    def __post_init__(self) -> None:
        if not self.path.startswith(CONFIG_DIR + "/"):
            raise ValueError(f"container file {self.path} must live under {CONFIG_DIR}")


@dataclass
class Healthcheck:
    test: list[str]
    interval: str = "10s"
    timeout: str = "5s"
    retries: int = 6
    start_period: str = "20s"
    # Needs Docker API 1.44 (Docker 25); Debian 12's Docker 20.10 refuses containers that set it.
    start_interval: str | None = None


def docker_duration(text: str) -> str:
    """A duration as the Docker provider reads it back (Go's format: "90s" -> "1m30s"), so no-op ups stay no-ops."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    if not text or parts is None:
        raise ValueError(f"duration {text!r}: write whole hours, minutes and seconds, e.g. 90s or 1m30s")
    seconds = sum(int(n or 0) * f for n, f in zip(parts.groups(), units.values(), strict=True))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def docker_cpus(cpus: float) -> str:
    """CPUs as the Docker provider reads them back ("1.0", "0.25"), so a no-op ``up`` shows no diff."""
    return f"{cpus:.1f}" if cpus == int(cpus) else f"{cpus:g}"


def _owned(options: str, uid: str, gid: str) -> str:
    """tmpfs options owned by the service's user: Docker copies a tmpfs' mode from the image, not its owner."""
    if not (uid.isdigit() and gid.isdigit()) or "uid=" in options:
        return options
    return f"{options},uid={uid},gid={gid}"


def http_probe(port: int, path: str, *, expect: str = "200", **timing: str | int) -> Healthcheck:
    """Healthcheck that GETs http://127.0.0.1:PORT/PATH with bash alone (no curl in minimal images)."""
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{port} && "
        f"printf 'GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && "
        f"head -n1 <&3 | grep -q ' {expect} '"
    )
    return Healthcheck(test=["CMD", "bash", "-c", script], **timing)  # type: ignore[arg-type]


@dataclass
class VolumeMount:
    volume: docker.Volume
    target: str
    read_only: bool = False


@dataclass
class HostBind:
    """A host path mounted read-only, for host interfaces only (e.g. the Docker API socket), never source code."""

    source: str
    target: str


@dataclass
class HardenedContainerArgs:
    """What a service needs; everything else is the hardened default."""

    service: str
    image: pulumi.Input[str]
    healthcheck: Healthcheck | None
    command: Sequence[pulumi.Input[str]] | None = None
    entrypoint: Sequence[str] | None = None
    env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    files: Sequence[ContainerFile] = ()
    user: str | None = None  # default: the service's own uid:gid from the catalog
    read_only: bool = True
    tmpfs: Mapping[str, str] = field(default_factory=lambda: {"/tmp": "rw,noexec,nosuid,size=64m"})
    cap_add: Sequence[str] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    volumes: Sequence[VolumeMount] = ()
    host_binds: Sequence[HostBind] = ()
    restart: str = "unless-stopped"
    wait: bool = True
    wait_timeout: int = 180
    one_shot: bool = False  # runs to completion once (migration); no restart, no healthcheck wait
    extra_labels: Mapping[str, str] = field(default_factory=dict)


class HardenedContainer(pulumi.ComponentResource):
    container: docker.Container

    def __init__(
        self,
        name: str,
        args: HardenedContainerArgs,
        placement: Placement,
        zones: ZoneNetworks,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        service = SERVICES[args.service]
        if args.healthcheck is None and not args.one_shot:
            raise ValueError(f"service {args.service} needs a healthcheck (R-SEC-2)")
        member_of = placement.zones_of(args.service)
        resources = placement.resources[args.service]
        labels = {
            STACK_LABEL: placement.stack,
            PROJECT_LABEL: placement.project,
            SERVICE_LABEL: args.service,
            GROUP_LABEL: service.group.value,
            ZONES_LABEL: ",".join(z.value for z in member_of),
            **args.extra_labels,
        }
        volumes = list(args.volumes)
        user = args.user or service.user
        uid, _, gid = user.partition(":")
        depends_on: list[pulumi.Resource] = []
        replacement_trigger: pulumi.Output[str] | None = None
        if args.files:
            self.config_volume = docker.Volume(
                f"{name}-config",
                name=placement.resource_name(args.service, "config"),
                labels=[docker.VolumeLabelArgs(label=k, value=v) for k, v in labels.items()],
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.files = self._files_loader(name, args, placement, uid, gid)
            # The service only reads its configuration.
            volumes.append(VolumeMount(self.config_volume, CONFIG_DIR, read_only=True))
            depends_on.append(self.files)
            # New file contents must restart the service, which then reads them.
            replacement_trigger = pulumi.Output.all(*[f.content for f in args.files]).apply(
                lambda contents: hashlib.sha256("\0".join(map(str, contents)).encode()).hexdigest()
            )
        health = args.healthcheck
        max_open_files = placement.max_open_files
        self.container = docker.Container(
            name,
            name=placement.resource_name(args.service),
            image=args.image,
            hostname=service.docker_alias,
            command=list(args.command) if args.command is not None else None,
            entrypoints=list(args.entrypoint) if args.entrypoint is not None else None,
            envs=[pulumi.Output.concat(k, "=", v) for k, v in sorted(args.env.items())],
            user=user,
            read_only=args.read_only,
            tmpfs={path: _owned(options, uid, gid) for path, options in args.tmpfs.items()},
            privileged=False,
            security_opts=["no-new-privileges:true"],
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=sorted(args.cap_add)),
            sysctls=dict(args.sysctls) or None,
            memory=resources.memory_mb,
            memory_swap=resources.memory_mb,  # no swap beyond the limit
            cpus=docker_cpus(resources.cpus),
            # The provider has no pids_limit; RLIMIT_NPROC counts processes and threads per uid, and every
            # service has its own uid, so this caps the service's PIDs.
            ulimits=[
                docker.ContainerUlimitArgs(name="nofile", soft=max_open_files, hard=max_open_files),
                docker.ContainerUlimitArgs(name="nproc", soft=resources.pids, hard=resources.pids),
            ],
            restart="no" if args.one_shot else args.restart,
            must_run=not args.one_shot,
            wait=args.wait and not args.one_shot,
            wait_timeout=args.wait_timeout,
            attach=args.one_shot,
            logs=args.one_shot,
            log_driver="json-file",
            log_opts=LOG_OPTS,
            labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=health.test,
                interval=docker_duration(health.interval),
                timeout=docker_duration(health.timeout),
                retries=health.retries,
                start_period=docker_duration(health.start_period),
                start_interval=docker_duration(health.start_interval) if health.start_interval else None,
            )
            if health
            else None,
            ports=[
                docker.ContainerPortArgs(
                    internal=row.container_port, external=row.host_port, ip=row.host_ip, protocol=row.protocol
                )
                for row in placement.bindings_of(args.service)
                if row.published
            ],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(name=zones.network(zone).name, aliases=[service.docker_alias])
                for zone in member_of
            ],
            mounts=[
                docker.ContainerMountArgs(type="volume", source=v.volume.name, target=v.target, read_only=v.read_only)
                for v in volumes
            ]
            + [
                docker.ContainerMountArgs(type="bind", source=b.source, target=b.target, read_only=True)
                for b in args.host_binds
            ],
            destroy_grace_seconds=30,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=depends_on,
                replacement_trigger=replacement_trigger,
                # A replacement must free its host port and name first, or the new container cannot bind.
                delete_before_replace=True,
            ),
        )
        self.name = self.container.name
        self.register_outputs({"name": self.container.name})

    def _files_loader(
        self, name: str, args: HardenedContainerArgs, placement: Placement, uid: str, gid: str
    ) -> docker.Container:
        """A container of the service's image that receives the files into the config volume.

        Docker copies uploads to ``/`` of the container and refuses that when the root filesystem is
        read-only, so the hardened service cannot receive them itself. Docker writes them as root; this
        container then runs ``handover`` once (attached: the service starts after it exited) with no network
        and CAP_CHOWN alone, and gives them to the service's uid:gid.
        """
        return docker.Container(
            f"{name}-files",
            name=placement.resource_name(args.service, "files"),
            image=args.image,
            entrypoints=handover(uid, gid),
            working_dir="/",  # the image's own may be closed to a root without CAP_DAC_OVERRIDE
            start=True,
            attach=True,
            must_run=False,
            restart="no",
            network_mode="none",
            user="0:0",
            privileged=False,
            security_opts=["no-new-privileges:true"],
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"], adds=["CHOWN"]),
            log_driver="json-file",
            log_opts=LOG_OPTS,
            labels=[
                docker.ContainerLabelArgs(label=STACK_LABEL, value=placement.stack),
                docker.ContainerLabelArgs(label=PROJECT_LABEL, value=placement.project),
                docker.ContainerLabelArgs(label=FILES_FOR_LABEL, value=args.service),
            ],
            mounts=[
                docker.ContainerMountArgs(
                    type="volume", source=self.config_volume.name, target=CONFIG_DIR, read_only=False
                )
            ],
            uploads=[
                docker.ContainerUploadArgs(
                    file=item.path,
                    content=pulumi.Output.secret(item.content) if item.secret else item.content,
                    permissions=item.mode,
                    executable=item.executable,
                )
                for item in args.files
            ],
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )

    @staticmethod
    def zone_url(settings: Settings, service: str, listener: str, scheme: str = "http") -> str:
        """URL of a listener as seen from inside the Docker networks."""
        return f"{scheme}://{SERVICES[service].docker_alias}:{settings.ports[listener]}"


__all__ = [
    "CONFIG_DIR",
    "SECRETS_DIR",
    "ContainerFile",
    "HardenedContainer",
    "HardenedContainerArgs",
    "Healthcheck",
    "HostBind",
    "VolumeMount",
    "Zone",
    "handover",
    "http_probe",
]
