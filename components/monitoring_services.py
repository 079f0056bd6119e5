"""The monitoring zone: Prometheus, Alertmanager and the exporters (R-OBS-1, R-SEC-5).

Configuration comes from :mod:`components.monitoring_config` (pure, known at preview); this module only
places it into hardened containers. Prometheus is never public: internal zone only, published on the
operator loopback in dev and not at all in prod (catalog). Secrets (metrics token, SMTP password, exporter
DSN, webhook URL) are files. Every exporter's /metrics wants the metrics token (R-SEC-5): the Debian
exporters through the metrics gate in front of them (see :mod:`components.monitoring_config`), the
platform's own (backend, backup, container_exporter) by themselves. The certificate probe trusts the stack's
internal CA, delivered as a file (R-TLS-4).

Container restarts (ContainerRestarts alert): Docker exports no restart counter; its engine metrics
endpoint counts actions engine-wide, not per container, and cAdvisor is not packaged by Debian. The
engine's own ``RestartCount`` per container is the real source, read by ``container_exporter``
(monitoring/container_exporter.py) through the Docker socket. The trade-off: that socket is
root-equivalent on the host whatever the mount mode (``:ro`` only stops deleting the socket file). The
exporter is confined accordingly: its only code issues GET requests; it runs as its own non-root uid with
the socket's group, read-only root, all capabilities dropped, no-new-privileges; it joins the monitoring
zone only (internal in prod, no egress) and publishes nothing; /metrics needs the bearer token. A
host-side `docker events` writer feeding node_exporter's textfile collector would keep the socket out of
containers but needs an agent installed on the host outside the stack; a failed exporter shows up as
InstanceDown{job="container_exporter"}, never as silence.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker as docker
from pydantic import SecretStr

from components import metrics_gate
from components import monitoring_config as mc
from components.catalog import SERVICES
from components.hardened_container import (
    CONFIG_DIR,
    SECRETS_DIR,
    ContainerFile,
    HardenedContainer,
    HardenedContainerArgs,
    HostBind,
    VolumeMount,
    http_probe,
)
from components.network_zones import NetworkZones
from components.placement import Placement
from components.settings import Settings
from wire import STACK_LABEL

TYPE = "fly-potato:monitoring:MonitoringServices"
HOST_PROC = "/host/proc"
HOST_SYS = "/host/sys"

CONTAINER_EXPORTER_SOURCE = Path(__file__).resolve().parent.parent / "monitoring" / "container_exporter.py"
DOCKER_SOCKET_IN_CONTAINER = "/var/run/docker.sock"

# Kept for callers of the earlier module API.
scrape_targets = mc.scrape_targets
render_prometheus_config = mc.render_prometheus_config
render_alertmanager_config = mc.render_alertmanager_config


def docker_socket_gid(settings: Settings) -> int | None:
    """Group of the Docker socket on the host: configured, or read from the local socket (local engine)."""
    configured = settings.raw.monitoring.docker_socket_gid
    if configured is not None:
        return configured
    try:
        return os.stat(settings.raw.monitoring.docker_socket).st_gid
    except OSError:
        return None


@dataclass(frozen=True)
class MonitoringArgs:
    """Images and ports of the monitoring services, their configuration rendered by
    :mod:`components.monitoring_config`, their secrets and the Docker socket the container exporter reads."""

    placement: Placement
    zones: NetworkZones
    images: Mapping[str, str]  # by monitoring service
    ports: Mapping[str, int]  # by monitoring service, and postgres
    prometheus_argv: Sequence[str]
    prometheus_config: str
    rules: str
    alertmanager_argv: Sequence[str]
    alertmanager_config_file: str  # a secret file when the config carries SMTP or webhook credentials
    alertmanager_config: str
    alertmanager_config_is_secret: bool
    smtp_password: SecretStr | None  # e-mail alerts with a password only
    warn_no_receiver: bool  # an unattended (prod) stack whose alerts reach nobody
    blackbox_config: str
    internal_ca_pem: pulumi.Input[str] | None  # the certificate probe's trust anchor (internal CA stacks)
    sql_exporter_config: pulumi.Input[str]  # carries the exporter's DSN: a secret
    exporter_password: pulumi.Input[str]
    metrics_token: pulumi.Input[str]
    docker_socket: str
    docker_socket_gid: int | None  # None: the container exporter cannot read the socket and is not deployed
    retain_volumes: bool
    # The migration gate: sql_exporter's queries call functions the migrations make (schema metrics), so it
    # starts after them and its first run already counts.
    sql_exporter_after: Sequence[pulumi.Resource] = ()


class MonitoringServices(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        p = args.ports
        images = args.images
        paths = mc.PATHS
        metrics_token = args.metrics_token
        exporter_password = args.exporter_password
        token_file = ContainerFile(paths.metrics_token, metrics_token, secret=True, mode="0400")

        placement = args.placement
        zones = args.zones

        def make(service: str, args: HardenedContainerArgs, after: Sequence[pulumi.Resource] = ()) -> HardenedContainer:
            opts = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=list(after)))
            return HardenedContainer(f"{name}-{service.replace('_', '-')}", args, placement, zones, opts=opts)

        def volume(service: str) -> docker.Volume:
            return docker.Volume(
                f"{name}-{service}-data",
                name=placement.resource_name(service, "data"),
                labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=placement.stack)],
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_volumes),
            )

        self.prometheus_data = volume("prometheus")
        self.prometheus = make(
            "prometheus",
            HardenedContainerArgs(
                service="prometheus",
                image=images["prometheus"],
                entrypoint=metrics_gate.entrypoint(),
                command=list(args.prometheus_argv),
                files=[
                    ContainerFile(paths.prometheus_config, args.prometheus_config),
                    ContainerFile(paths.rules, args.rules),
                    token_file,
                    *metrics_gate.files(mc.PROMETHEUS_GATE, p["prometheus"], metrics_token),
                ],
                volumes=[VolumeMount(self.prometheus_data, "/prometheus")],
                healthcheck=metrics_gate.healthcheck(p["prometheus"]),
            ),
        )

        # Dev watches its own Alertmanager on loopback; an unattended prod stack needs a receiver.
        if args.warn_no_receiver:
            pulumi.log.warn(
                f"fly-potato:alerting has no receiver for stack {placement.stack}: alerts are only visible in "
                "Alertmanager; set alerting.email_to (with smtp_*) or a secret alerting.webhook_url"
            )
        am_secret = args.alertmanager_config_is_secret
        am_files = [
            ContainerFile(
                args.alertmanager_config_file,
                args.alertmanager_config,
                secret=am_secret,
                mode="0400" if am_secret else "0440",
            )
        ]
        if args.smtp_password is not None:
            am_files.append(
                ContainerFile(paths.smtp_password, args.smtp_password.get_secret_value(), secret=True, mode="0400")
            )
        self.alertmanager_data = volume("alertmanager")
        self.alertmanager = make(
            "alertmanager",
            HardenedContainerArgs(
                service="alertmanager",
                image=images["alertmanager"],
                entrypoint=metrics_gate.entrypoint(),
                command=list(args.alertmanager_argv),
                files=[*am_files, *metrics_gate.files(mc.ALERTMANAGER_GATE, p["alertmanager"], metrics_token)],
                volumes=[VolumeMount(self.alertmanager_data, "/alertmanager")],
                healthcheck=metrics_gate.healthcheck(p["alertmanager"]),
            ),
        )
        # R-SEC-5: the Debian exporters cannot ask for a bearer token themselves; each runs on loopback behind
        # the metrics gate (nginx in its image, see components.metrics_gate), which wants the stack's metrics token.

        def gated(
            service: str,
            argv: list[str],
            *,
            files: list[ContainerFile] | None = None,
            env: dict[str, pulumi.Input[str]] | None = None,
            host_binds: list[HostBind] | None = None,
            after: Sequence[pulumi.Resource] = (),
        ) -> HardenedContainer:
            port = p[service]
            return make(
                service,
                HardenedContainerArgs(
                    service=service,
                    image=images[service],
                    entrypoint=metrics_gate.entrypoint(),
                    command=[*mc.gated_exporter_argv(service, port), *argv],
                    env=env or {},
                    files=[*metrics_gate.files(mc.METRICS_GATES[service], port, metrics_token), *(files or [])],
                    host_binds=host_binds or [],
                    healthcheck=metrics_gate.healthcheck(port),
                ),
                after,
            )

        self.node_exporter = gated(
            "node_exporter",
            # The host's kernel views, read-only: CPU, memory, load, network and disk I/O of the host.
            # The host's root filesystem is not mounted, so filesystem usage is the container's own.
            [f"--path.procfs={HOST_PROC}", f"--path.sysfs={HOST_SYS}"],
            host_binds=[HostBind("/proc", HOST_PROC), HostBind("/sys", HOST_SYS)],
        )
        self.postgres_exporter = gated(
            "postgres_exporter",
            [],
            env={
                "DATA_SOURCE_URI": f"postgres:{p['postgres']}/postgres?sslmode=disable",
                "DATA_SOURCE_USER": "exporter",
                "DATA_SOURCE_PASS_FILE": f"{SECRETS_DIR}/exporter_password",
            },
            files=[ContainerFile(f"{SECRETS_DIR}/exporter_password", exporter_password, secret=True, mode="0400")],
        )
        self.sql_exporter = gated(
            "sql_exporter",
            [f"-config.file={paths.sql_exporter_config}"],
            files=[ContainerFile(paths.sql_exporter_config, args.sql_exporter_config, secret=True, mode="0400")],
            after=args.sql_exporter_after,
        )
        blackbox_files = [ContainerFile(paths.blackbox_config, args.blackbox_config)]
        if args.internal_ca_pem is not None:
            blackbox_files.append(ContainerFile(paths.internal_ca, args.internal_ca_pem))
        self.blackbox_exporter = gated(
            "blackbox_exporter", [f"--config.file={paths.blackbox_config}"], files=blackbox_files
        )

        self.container_exporter: HardenedContainer | None = None
        gid = args.docker_socket_gid
        if gid is None:
            pulumi.log.warn(
                f"{args.docker_socket} is not readable here and "
                "fly-potato:monitoring.docker_socket_gid is unset, so container_exporter is not deployed and "
                "ContainerRestarts cannot fire; set it to `stat -c %g /var/run/docker.sock` on the Docker host"
            )
        else:
            script = f"{CONFIG_DIR}/container_exporter.py"
            self.container_exporter = make(
                "container_exporter",
                HardenedContainerArgs(
                    service="container_exporter",
                    image=images["container_exporter"],
                    entrypoint=["python3", script],
                    command=[],
                    env={
                        "EXPORTER_STACK": placement.stack,
                        "EXPORTER_PORT": str(p["container_exporter"]),
                        "EXPORTER_DOCKER_SOCKET": DOCKER_SOCKET_IN_CONTAINER,
                        "EXPORTER_TOKEN_FILE": paths.metrics_token,
                    },
                    files=[ContainerFile(script, CONTAINER_EXPORTER_SOURCE.read_text()), token_file],
                    user=f"{SERVICES['container_exporter'].uid}:{gid}",
                    host_binds=[HostBind(args.docker_socket, DOCKER_SOCKET_IN_CONTAINER)],
                    healthcheck=http_probe(p["container_exporter"], "/healthz"),
                ),
            )
        self.register_outputs({"prometheus": self.prometheus.name})
