"""HardenedService: the one way the platform runs a service on a Docker Swarm, with R-SEC-2 defaults.

The ``docker.Service`` counterpart of ``HardenedContainer``: the catalog's uid:gid, read-only root with tmpfs
scratch space, every capability dropped (named ones added back), memory and CPU limits, a healthcheck, a
restart policy, log rotation, and the stack/service/zones/group labels on the service and its containers.
Files and secrets are Swarm configs and secrets owned by the service's uid:gid (``components.swarm.files``).

Swarm specifics: ``replicas`` tasks, placed by node-label constraints (stateful services on the data role,
nginx on the edge role), or one task per node (``global_``: node_exporter); rolling updates that start the new
task first and roll back on failure (stop first when the service publishes a host port: the old task holds it);
endpoint mode ``dnsrr`` (the service name resolves to its tasks; no VIP, no routing mesh) and ports only in
``host`` mode, on the node's own address. Host paths (``binds``) are mounted read-only, from the task's node.

Not expressible with pulumi-docker 5.1's ``docker.Service``: ``no-new-privileges`` (set the daemon's
``"no-new-privileges": true`` on every node) and PID/open-file limits (no ulimits or pids limit field).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.catalog import SERVICES, Resources, Zone
from components.hardened_container import docker_duration
from components.swarm.files import ServiceFile, file_refs, swarm_file
from components.swarm.zones import SwarmZones
from wire import GROUP_LABEL, PROJECT_LABEL, SERVICE_LABEL, STACK_LABEL, ZONES_LABEL

TYPE = "fly-potato:swarm:HardenedService"
LOG_OPTS = {"max-size": "10m", "max-file": "5"}
NANO = 1_000_000_000
MIB = 1024 * 1024


def provider_duration(text: str) -> str:
    """A duration as pulumi-docker reads a service's back: Go's format without a trailing zero unit ("90s" ->
    "1m30s", "60s" -> "1m", "3m0s" -> "3m", "1h0m0s" -> "1h"), so an up without changes stays a no-op."""
    value = docker_duration(text)
    for zero in ("m0s", "h0m"):
        if value.endswith(zero):
            value = value[:-2]
    return value


@dataclass(frozen=True)
class Probe:
    """The task's healthcheck; durations as Docker reads them back (10s, 1m30s), so a no-op up stays one."""

    test: Sequence[str]
    interval: str = "10s"
    timeout: str = "5s"
    retries: int = 6
    start_period: str = "20s"


@dataclass(frozen=True)
class HostPort:
    """A port published in host mode on the node running the task (no routing mesh)."""

    target: int
    published: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class HardenedServiceArgs:
    """What a service needs on a swarm; everything else is the hardened default."""

    project: str
    stack: str
    service: str  # a catalog name: uid:gid, group, DNS alias and default zones
    image: pulumi.Input[str]  # REGISTRY/REPO@sha256:… (the nodes pull it)
    healthcheck: Probe | None
    resources: Resources
    replicas: int = 1
    global_: bool = False  # one task on every node (that the constraints admit) instead of ``replicas``
    zones: Sequence[Zone] | None = None  # default: the catalog's zones of the service
    constraints: Sequence[str] = ()  # e.g. node.labels.fly-potato.role==data
    max_replicas_per_node: int | None = None  # 1 for host-port services
    ports: Sequence[HostPort] = ()
    command: Sequence[pulumi.Input[str]] | None = None  # the entrypoint
    args: Sequence[pulumi.Input[str]] | None = None
    env: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    files: Sequence[ServiceFile] = ()
    user: str | None = None  # default: the service's own uid:gid from the catalog
    read_only: bool = True
    tmpfs: Mapping[str, int] = field(default_factory=lambda: {"/tmp": 64 * MIB})  # path -> size in bytes
    cap_add: Sequence[str] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    volumes: Mapping[pulumi.Input[str], str] = field(default_factory=dict)  # named volume on the node -> path
    # Host path of the task's node -> path in the task, always read-only: host interfaces only (/proc, /sys),
    # never source code (R-SEC-2; the pack admits each path for its reader only, policy/spec.py HOST_READERS).
    binds: Mapping[str, str] = field(default_factory=dict)
    hostname: str | None = None  # default: the service's DNS alias; Swarm templates work ({{.Node.Hostname}})
    stop_grace_period: str = "30s"
    # Docker's init as PID 1 forwards SIGTERM (a PID 1 without a handler ignores it) and reaps zombies.
    init: bool = True
    update_parallelism: int = 1
    update_delay: str = "5s"
    update_monitor: str = "30s"
    converge_timeout: str = "3m"
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    # The images' platform (built on the deploying machine). Docker records it in the spec from the image's
    # manifest when it is not given, which a later preview would show as drift.
    platform: tuple[str, str] = field(default_factory=lambda: host_platform())

    def __post_init__(self) -> None:
        if self.service not in SERVICES:
            raise ValueError(f"service {self.service!r} is not in the catalog (components/catalog.py)")
        if self.healthcheck is None:
            raise ValueError(f"service {self.service} needs a healthcheck (R-SEC-2)")
        if self.replicas < 1:
            raise ValueError(f"service {self.service}: replicas = {self.replicas}; run at least 1 task")
        if self.global_ and (self.replicas != 1 or self.max_replicas_per_node is not None):
            raise ValueError(f"service {self.service}: a global service runs one task per node; drop replicas")
        for source in self.binds:
            if not source.startswith("/") or ".." in source.split("/"):
                raise ValueError(f"service {self.service}: bind source {source!r} is not a plain absolute path")

    @property
    def resource_name(self) -> str:
        return "-".join((self.project, self.stack, self.service)).replace("_", "-")


def host_platform() -> tuple[str, str]:
    """(os, architecture) of this machine as Docker names them: ("linux", "amd64") on x86_64."""
    machine = platform.machine().lower()
    return "linux", {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def _labels(args: HardenedServiceArgs, zones: Sequence[Zone]) -> dict[str, str]:
    service = SERVICES[args.service]
    return {
        STACK_LABEL: args.stack,
        PROJECT_LABEL: args.project,
        SERVICE_LABEL: args.service,
        GROUP_LABEL: service.group.value,
        ZONES_LABEL: ",".join(z.value for z in zones),
        **args.extra_labels,
    }


class HardenedService(pulumi.ComponentResource):
    """A replicated swarm service. Pass the swarm manager's ``docker.Provider`` in ``opts``."""

    service: docker.Service
    files: list[docker.Secret | docker.ServiceConfig]

    def __init__(
        self,
        name: str,
        args: HardenedServiceArgs,
        zones: SwarmZones,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        catalog = SERVICES[args.service]
        member_of = list(args.zones) if args.zones is not None else sorted(catalog.zones)
        if args.ports and all(zones.internal.get(z, False) for z in member_of):
            raise ValueError(
                f"service {args.service} publishes a host port but joins only internal zones; Docker would "
                "silently not publish it: add a non-internal zone (edge)"
            )
        labels = _labels(args, member_of)
        user = args.user or catalog.user
        uid, _, gid = user.partition(":")
        child = pulumi.ResourceOptions(parent=self)

        made = [(item, swarm_file(name, item, args.resource_name, labels, self)) for item in args.files]
        self.files = [obj for _, obj in made]
        secrets, configs = file_refs(made, uid, gid)
        health = args.healthcheck
        assert health is not None  # __post_init__
        # A host port is held by the old task until it stops: start-first could never place the new one there.
        # A volume on its node likewise: two tasks of a stateful service must never run on it at once (two
        # postmasters on one PGDATA, each in its own PID and IPC namespace, would not see each other's lock).
        order = "stop-first" if args.ports or args.volumes else "start-first"
        label_args = [docker.ServiceLabelArgs(label=k, value=v) for k, v in sorted(labels.items())]

        self.service = docker.Service(
            name,
            name=args.resource_name,
            labels=label_args,
            mode=docker.ServiceModeArgs(global_=True)
            if args.global_
            else docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=args.replicas)),
            task_spec=docker.ServiceTaskSpecArgs(
                container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                    image=args.image,
                    hostname=args.hostname or catalog.docker_alias,
                    commands=list(args.command) if args.command is not None else None,
                    args=list(args.args) if args.args is not None else None,
                    env=dict(args.env) or None,
                    user=user,
                    read_only=args.read_only,
                    cap_drops=["ALL"],
                    cap_adds=sorted(args.cap_add) or None,
                    labels=[
                        docker.ServiceTaskSpecContainerSpecLabelArgs(label=k, value=v)
                        for k, v in sorted(labels.items())
                    ],
                    healthcheck=docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
                        tests=list(health.test),
                        interval=provider_duration(health.interval),
                        timeout=provider_duration(health.timeout),
                        retries=health.retries,
                        start_period=provider_duration(health.start_period),
                    ),
                    mounts=[
                        docker.ServiceTaskSpecContainerSpecMountArgs(
                            type="tmpfs",
                            target=path,
                            tmpfs_options=docker.ServiceTaskSpecContainerSpecMountTmpfsOptionsArgs(
                                size_bytes=size, mode=0o1777
                            ),
                        )
                        for path, size in sorted(args.tmpfs.items())
                    ]
                    + [
                        docker.ServiceTaskSpecContainerSpecMountArgs(type="volume", source=volume, target=path)
                        # By path: a volume's name may be an Output (not orderable).
                        for volume, path in sorted(args.volumes.items(), key=lambda item: item[1])
                    ]
                    + [
                        docker.ServiceTaskSpecContainerSpecMountArgs(
                            type="bind", source=source, target=path, read_only=True
                        )
                        for source, path in sorted(args.binds.items())
                    ]
                    or None,
                    sysctl=dict(args.sysctls) or None,
                    secrets=secrets or None,
                    configs=configs or None,
                    stop_grace_period=provider_duration(args.stop_grace_period),
                    init=args.init,
                ),
                resources=docker.ServiceTaskSpecResourcesArgs(
                    limits=docker.ServiceTaskSpecResourcesLimitsArgs(
                        nano_cpus=int(args.resources.cpus * NANO), memory_bytes=args.resources.memory_mb * MIB
                    ),
                ),
                restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(
                    condition="any", delay="5s", max_attempts=0, window="0s"
                ),
                placement=docker.ServiceTaskSpecPlacementArgs(
                    constraints=sorted(args.constraints) or None,
                    max_replicas=args.max_replicas_per_node,
                    platforms=[
                        docker.ServiceTaskSpecPlacementPlatformArgs(os=args.platform[0], architecture=args.platform[1])
                    ],
                ),
                networks_advanceds=[
                    docker.ServiceTaskSpecNetworksAdvancedArgs(
                        name=zones.network(zone).id, aliases=[catalog.docker_alias]
                    )
                    for zone in member_of
                ],
                log_driver=docker.ServiceTaskSpecLogDriverArgs(name="json-file", options=LOG_OPTS),
            ),
            endpoint_spec=docker.ServiceEndpointSpecArgs(
                mode="dnsrr",
                ports=[
                    docker.ServiceEndpointSpecPortArgs(
                        target_port=port.target,
                        published_port=port.published,
                        protocol=port.protocol,
                        publish_mode="host",
                    )
                    for port in args.ports
                ]
                or None,
            ),
            update_config=docker.ServiceUpdateConfigArgs(
                parallelism=args.update_parallelism,
                delay=provider_duration(args.update_delay),
                order=order,
                failure_action="rollback",
                monitor=provider_duration(args.update_monitor),
            ),
            rollback_config=docker.ServiceRollbackConfigArgs(
                parallelism=args.update_parallelism,
                delay=provider_duration(args.update_delay),
                order=order,
                failure_action="pause",
                monitor=provider_duration(args.update_monitor),
            ),
            # The provider waits for a replicated service's tasks to run; it refuses converge_config in global mode.
            converge_config=None
            if args.global_
            else docker.ServiceConvergeConfigArgs(delay="1s", timeout=args.converge_timeout),
            opts=child,
        )
        self.name = self.service.name
        self.register_outputs({"name": self.service.name, "replicas": "global" if args.global_ else args.replicas})


__all__ = ["HardenedService", "HardenedServiceArgs", "HostPort", "Probe", "provider_duration"]
