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
from pathlib import Path

import pulumi
import pulumi_docker as docker

from components import metrics_gate
from components import monitoring_config as mc
from components.catalog import SERVICES
from components.container import (
    CONFIG_DIR,
    SECRETS_DIR,
    ContainerFile,
    HardenedContainer,
    HardenedContainerArgs,
    HostBind,
    VolumeMount,
    http_probe,
)
from components.network import NetworkZones
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


class MonitoringServices(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        settings: Settings,
        zones: NetworkZones,
        *,
        metrics_token: pulumi.Input[str],
        exporter_password: pulumi.Input[str],
        internal_ca_pem: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        p = settings.ports
        paths = mc.PATHS
        token_file = ContainerFile(paths.metrics_token, metrics_token, secret=True, mode="0400")

        placement = Placement.of(settings)

        def make(service: str, args: HardenedContainerArgs) -> HardenedContainer:
            return HardenedContainer(f"{name}-{service.replace('_', '-')}", args, placement, zones, opts=child)

        def volume(service: str) -> docker.Volume:
            return docker.Volume(
                f"{name}-{service}-data",
                name=settings.resource_name(service, "data"),
                labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=settings.stack)],
                opts=pulumi.ResourceOptions(parent=self, retain_on_delete=settings.is_prod),
            )

        self.prometheus_data = volume("prometheus")
        self.prometheus = make(
            "prometheus",
            HardenedContainerArgs(
                service="prometheus",
                image=settings.images["prometheus"],
                entrypoint=metrics_gate.entrypoint(),
                command=mc.prometheus_argv(settings, paths),
                files=[
                    ContainerFile(paths.prometheus_config, mc.render_prometheus_config(settings, paths)),
                    ContainerFile(paths.rules, mc.render_rules(settings)),
                    token_file,
                    *metrics_gate.files(mc.PROMETHEUS_GATE, p["prometheus"], metrics_token),
                ],
                volumes=[VolumeMount(self.prometheus_data, "/prometheus")],
                healthcheck=metrics_gate.healthcheck(p["prometheus"]),
            ),
        )

        alerting = settings.raw.alerting
        # Dev watches its own Alertmanager on loopback; an unattended prod stack needs a receiver.
        if settings.is_prod and not alerting.email_to and alerting.webhook_url is None:
            pulumi.log.warn(
                f"fly-potato:alerting has no receiver for stack {settings.stack}: alerts are only visible in "
                "Alertmanager; set alerting.email_to (with smtp_*) or a secret alerting.webhook_url"
            )
        am_secret = mc.alertmanager_config_is_secret(settings)
        am_config = paths.alertmanager_secret_config if am_secret else paths.alertmanager_config
        am_files = [
            ContainerFile(
                am_config,
                mc.render_alertmanager_config(settings, paths),
                secret=am_secret,
                mode="0400" if am_secret else "0440",
            )
        ]
        if alerting.email_to and alerting.smtp_password is not None:
            am_files.append(
                ContainerFile(paths.smtp_password, alerting.smtp_password.get_secret_value(), secret=True, mode="0400")
            )
        self.alertmanager_data = volume("alertmanager")
        self.alertmanager = make(
            "alertmanager",
            HardenedContainerArgs(
                service="alertmanager",
                image=settings.images["alertmanager"],
                entrypoint=metrics_gate.entrypoint(),
                command=mc.alertmanager_argv(settings, am_config),
                files=[*am_files, *metrics_gate.files(mc.ALERTMANAGER_GATE, p["alertmanager"], metrics_token)],
                volumes=[VolumeMount(self.alertmanager_data, "/alertmanager")],
                healthcheck=metrics_gate.healthcheck(p["alertmanager"]),
            ),
        )
        # R-SEC-5: the Debian exporters cannot ask for a bearer token themselves; each runs on loopback behind
        # the metrics gate (nginx in its image, see components.metrics_gate), which wants the stack's metrics token.

        def gated(
            service: str,
            args: list[str],
            *,
            files: list[ContainerFile] | None = None,
            env: dict[str, pulumi.Input[str]] | None = None,
            host_binds: list[HostBind] | None = None,
        ) -> HardenedContainer:
            port = p[service]
            return make(
                service,
                HardenedContainerArgs(
                    service=service,
                    image=settings.images[service],
                    entrypoint=metrics_gate.entrypoint(),
                    command=[*mc.gated_exporter_argv(service, port), *args],
                    env=env or {},
                    files=[*metrics_gate.files(mc.METRICS_GATES[service], port, metrics_token), *(files or [])],
                    host_binds=host_binds or [],
                    healthcheck=metrics_gate.healthcheck(port),
                ),
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
            files=[
                ContainerFile(
                    paths.sql_exporter_config,
                    pulumi.Output.from_input(exporter_password).apply(
                        lambda password: mc.render_sql_exporter_config(
                            settings, mc.sql_exporter_dsn(settings, password)
                        )
                    ),
                    secret=True,
                    mode="0400",
                )
            ],
        )
        blackbox_files = [ContainerFile(paths.blackbox_config, mc.render_blackbox_config(settings, paths))]
        if settings.raw.tls.mode == "internal_ca":
            if internal_ca_pem is None:
                raise ValueError("the certificate probe of an internal-CA stack needs the CA certificate (R-TLS-4)")
            blackbox_files.append(ContainerFile(paths.internal_ca, internal_ca_pem))
        self.blackbox_exporter = gated(
            "blackbox_exporter", [f"--config.file={paths.blackbox_config}"], files=blackbox_files
        )

        self.container_exporter: HardenedContainer | None = None
        gid = docker_socket_gid(settings)
        if gid is None:
            pulumi.log.warn(
                f"{settings.raw.monitoring.docker_socket} is not readable here and "
                "fly-potato:monitoring.docker_socket_gid is unset, so container_exporter is not deployed and "
                "ContainerRestarts cannot fire; set it to `stat -c %g /var/run/docker.sock` on the Docker host"
            )
        else:
            script = f"{CONFIG_DIR}/container_exporter.py"
            self.container_exporter = make(
                "container_exporter",
                HardenedContainerArgs(
                    service="container_exporter",
                    image=settings.images["container_exporter"],
                    entrypoint=["python3", script],
                    command=[],
                    env={
                        "EXPORTER_STACK": settings.stack,
                        "EXPORTER_PORT": str(p["container_exporter"]),
                        "EXPORTER_DOCKER_SOCKET": DOCKER_SOCKET_IN_CONTAINER,
                        "EXPORTER_TOKEN_FILE": paths.metrics_token,
                    },
                    files=[ContainerFile(script, CONTAINER_EXPORTER_SOURCE.read_text()), token_file],
                    user=f"{SERVICES['container_exporter'].uid}:{gid}",
                    host_binds=[HostBind(settings.raw.monitoring.docker_socket, DOCKER_SOCKET_IN_CONTAINER)],
                    healthcheck=http_probe(p["container_exporter"], "/healthz"),
                ),
            )
        self.register_outputs({"prometheus": self.prometheus.name})
