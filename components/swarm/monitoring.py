"""SwarmMonitoring: the monitoring group on a swarm (``features.monitoring`` on ``target: swarm``; R-OBS-1, R-SEC-5).

The host's monitoring services (``components.monitoring_services``) with the same rendered configuration
(``components.monitoring_config``), as ``HardenedService`` tasks on the stack's overlay zones:

- Prometheus and Alertmanager: one task each on the node of the data role, with their named volumes, which are
  created on that node (through its Docker provider, as the platform does for pgdata);
- node_exporter: one task on every node (global mode), reading that node's /proc and /sys read-only; its task
  hostname is the node's, so ``node_uname_info{nodename=…}`` names the node behind each target;
- postgres_exporter, sql_exporter and blackbox_exporter: one task anywhere.

Prometheus finds its targets in DNS (``dns_sd_configs``, type A): in endpoint mode dnsrr a service's name resolves
to each of its tasks, so every task of backend, oauth2-proxy, nginx and node_exporter is scraped on its own, and a
rescheduled task is found again. Every job sends the metrics token and every exporter sits behind its metrics gate,
as on a host (R-SEC-5). Files are Swarm configs; the metrics token, the exporter role's password and the DSN that
carries it, the SMTP password and a webhook-carrying alertmanager.yml are Swarm secrets, readable by the owner only.

container_exporter is left out on a swarm: Swarm restarts a failed task as a new container (task containers have
no restart policy of their own), so the per-container Docker ``RestartCount`` it exports stays 0 and
ContainerRestarts could never fire — and on the lab (scripts/swarm-lab.sh) a task's /var/run/docker.sock would be
the host's main engine, not its node's (each node's dockerd runs in a private copy of the host's mount namespace).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker
from pydantic import SecretStr

from components import metrics_gate
from components import monitoring_config as mc
from components.catalog import SERVICES, Group, Resources, Zone
from components.hardened_container import SECRETS_DIR, ContainerFile
from components.monitoring_services import HOST_PROC, HOST_SYS
from components.settings import Settings
from components.swarm.placement import SwarmPlacement, placement_of
from components.swarm.service import HardenedService, HardenedServiceArgs
from components.swarm.specs import probe, service_files, swarm_zones_of
from components.swarm.zones import SwarmZones
from wire import STACK_LABEL

TYPE = "fly-potato:swarm:SwarmMonitoring"
# Not on a swarm: see the module's docstring.
LEFT_OUT = frozenset({"container_exporter"})
SERVICES_ON_SWARM = tuple(
    name for name, service in SERVICES.items() if service.group is Group.MONITORING and name not in LEFT_OUT
)
NODE_HOSTNAME = "{{.Node.Hostname}}"  # a Swarm template, filled in per task
HOST_PATHS = {"/proc": HOST_PROC, "/sys": HOST_SYS}  # node_exporter's views of its node's kernel


@dataclass(frozen=True)
class SwarmMonitoringArgs:
    """What the monitoring services are made of on a swarm: their images, ports, sizes, placement and zones,
    their configuration rendered by :mod:`components.monitoring_config` and their secrets."""

    project: str
    stack: str
    images: Mapping[str, pulumi.Input[str]]  # by monitoring service
    ports: Mapping[str, int]  # by monitoring service, and postgres
    resources: Mapping[str, Resources]
    placements: Mapping[str, SwarmPlacement]
    zones: Mapping[str, Sequence[Zone]]
    prometheus_argv: Sequence[str]
    prometheus_config: str  # rendered per task (dns_sd_configs)
    rules: str
    alertmanager_argv: Sequence[str]
    alertmanager_config_file: str  # under SECRETS_DIR when the config carries a webhook URL
    alertmanager_config: str
    alertmanager_config_is_secret: bool
    smtp_password: SecretStr | None  # e-mail alerts with a password only (a secret in the graph too)
    warn_no_receiver: bool  # an unattended (prod) stack whose alerts reach nobody
    blackbox_config: str
    internal_ca_pem: pulumi.Input[str] | None  # the certificate probe's trust anchor (internal CA stacks)
    sql_exporter_config: pulumi.Input[str]  # carries the exporter's DSN: a secret
    exporter_password: pulumi.Input[str]
    metrics_token: pulumi.Input[str]
    volume_provider: docker.Provider  # the data node's: Prometheus' and Alertmanager's volumes live there
    retain_volumes: bool
    sql_exporter_after: Sequence[pulumi.Resource] = ()  # the migration gate (as MonitoringArgs on a host)

    def volume_name(self, service: str) -> str:
        return "-".join((self.project, self.stack, service, "data")).replace("_", "-")


def swarm_monitoring_args(
    settings: Settings,
    *,
    metrics_token: pulumi.Input[str],
    exporter_password: pulumi.Input[str],
    internal_ca_pem: pulumi.Input[str] | None,
    volume_provider: docker.Provider,
    sql_exporter_after: Sequence[pulumi.Resource] = (),
) -> SwarmMonitoringArgs:
    """The stack's monitoring on its swarm, rendered as on a host but scraping per task."""
    s, paths, alerting = settings, mc.PATHS, settings.raw.alerting
    if s.raw.tls.mode == "internal_ca" and internal_ca_pem is None:
        raise ValueError("the certificate probe of an internal-CA stack needs the CA certificate (R-TLS-4)")
    am_secret = mc.alertmanager_config_is_secret(s)
    am_config = paths.alertmanager_secret_config if am_secret else paths.alertmanager_config
    return SwarmMonitoringArgs(
        project=s.project,
        stack=s.stack,
        images={name: s.images[name] for name in SERVICES_ON_SWARM},
        ports={name: s.ports[name] for name in [*SERVICES_ON_SWARM, "postgres"]},
        resources={name: s.resources[name] for name in SERVICES_ON_SWARM},
        placements={name: placement_of(s.raw.swarm, name) for name in SERVICES_ON_SWARM},
        zones={name: swarm_zones_of(s, name) for name in SERVICES_ON_SWARM},
        prometheus_argv=mc.prometheus_argv(s, paths),
        prometheus_config=mc.render_prometheus_config(s, paths, per_task=True, without=LEFT_OUT),
        rules=mc.render_rules(s),
        alertmanager_argv=mc.alertmanager_argv(s, am_config),
        alertmanager_config_file=am_config,
        alertmanager_config=mc.render_alertmanager_config(s, paths),
        alertmanager_config_is_secret=am_secret,
        smtp_password=alerting.smtp_password if alerting.email_to else None,
        warn_no_receiver=s.is_prod and not alerting.email_to and alerting.webhook_url is None,
        blackbox_config=mc.render_blackbox_config(s, paths),
        internal_ca_pem=internal_ca_pem if s.raw.tls.mode == "internal_ca" else None,
        sql_exporter_config=pulumi.Output.secret(exporter_password).apply(
            lambda password: mc.render_sql_exporter_config(s, mc.sql_exporter_dsn(s, password))
        ),
        exporter_password=exporter_password,
        metrics_token=metrics_token,
        volume_provider=volume_provider,
        retain_volumes=s.is_prod,
        sql_exporter_after=sql_exporter_after,
    )


class SwarmMonitoring(pulumi.ComponentResource):
    """The monitoring services on a swarm. Pass the swarm manager's ``docker.Provider`` in ``opts``."""

    services: dict[str, HardenedService]
    volumes: dict[str, docker.Volume]

    def __init__(
        self, name: str, args: SwarmMonitoringArgs, zones: SwarmZones, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        p, paths, token = args.ports, mc.PATHS, args.metrics_token
        token_file = ContainerFile(paths.metrics_token, token, secret=True, mode="0400")
        self.services, self.volumes = {}, {}

        def volume(service: str) -> str:
            self.volumes[service] = docker.Volume(
                f"{name}-{service}-data",
                name=args.volume_name(service),
                labels=[docker.VolumeLabelArgs(label=STACK_LABEL, value=args.stack)],
                opts=pulumi.ResourceOptions(
                    parent=self, provider=args.volume_provider, retain_on_delete=args.retain_volumes
                ),
            )
            return args.volume_name(service)

        def run(
            service: str, files: Sequence[ContainerFile], after: Sequence[pulumi.Resource] = (), **kwargs: object
        ) -> HardenedService:
            where = args.placements[service]
            after = [*after, *([self.volumes[service]] if service in self.volumes else [])]
            self.services[service] = HardenedService(
                f"{name}-{service.replace('_', '-')}",
                HardenedServiceArgs(
                    project=args.project,
                    stack=args.stack,
                    service=service,
                    image=args.images[service],
                    resources=args.resources[service],
                    zones=args.zones[service],
                    replicas=where.replicas,
                    constraints=where.constraints,
                    max_replicas_per_node=where.max_replicas_per_node,
                    files=service_files(files),
                    healthcheck=probe(metrics_gate.healthcheck(p[service])),
                    **kwargs,  # type: ignore[arg-type]
                ),
                zones,
                opts=pulumi.ResourceOptions(parent=self, depends_on=after),
            )
            return self.services[service]

        run(
            "prometheus",
            [
                ContainerFile(paths.prometheus_config, args.prometheus_config),
                ContainerFile(paths.rules, args.rules),
                token_file,
                *metrics_gate.files(mc.PROMETHEUS_GATE, p["prometheus"], token),
            ],
            command=metrics_gate.entrypoint(),
            args=list(args.prometheus_argv),
            volumes={volume("prometheus"): "/prometheus"},
        )

        if args.warn_no_receiver:
            pulumi.log.warn(
                f"fly-potato:alerting has no receiver for stack {args.stack}: alerts are only visible in "
                "Alertmanager; set alerting.email_to (with smtp_*) or a secret alerting.webhook_url"
            )
        am_secret = args.alertmanager_config_is_secret
        am_files = [
            ContainerFile(
                args.alertmanager_config_file,
                args.alertmanager_config,
                secret=am_secret,
                mode="0400" if am_secret else "0440",
            ),
            *metrics_gate.files(mc.ALERTMANAGER_GATE, p["alertmanager"], token),
        ]
        if args.smtp_password is not None:
            smtp_password = pulumi.Output.secret(args.smtp_password.get_secret_value())
            am_files.append(ContainerFile(paths.smtp_password, smtp_password, secret=True, mode="0400"))
        run(
            "alertmanager",
            am_files,
            command=metrics_gate.entrypoint(),
            args=list(args.alertmanager_argv),
            volumes={volume("alertmanager"): "/alertmanager"},
        )

        # R-SEC-5: the Debian exporters cannot ask for a bearer token; each listens on loopback behind its gate.
        def gated(
            service: str,
            argv: Sequence[str],
            files: Sequence[ContainerFile] = (),
            after: Sequence[pulumi.Resource] = (),
            **kwargs: object,
        ) -> None:
            run(
                service,
                [*metrics_gate.files(mc.METRICS_GATES[service], p[service], token), *files],
                after,
                command=metrics_gate.entrypoint(),
                args=[*mc.gated_exporter_argv(service, p[service]), *argv],
                **kwargs,
            )

        gated(
            "node_exporter",
            # Its node's kernel views, read-only: CPU, memory, load, network and disk I/O of the node.
            [f"--path.procfs={HOST_PROC}", f"--path.sysfs={HOST_SYS}"],
            global_=True,
            binds=HOST_PATHS,
            hostname=NODE_HOSTNAME,
        )
        gated(
            "postgres_exporter",
            [],
            [ContainerFile(f"{SECRETS_DIR}/exporter_password", args.exporter_password, secret=True, mode="0400")],
            env={
                "DATA_SOURCE_URI": f"postgres:{p['postgres']}/postgres?sslmode=disable",
                "DATA_SOURCE_USER": "exporter",
                "DATA_SOURCE_PASS_FILE": f"{SECRETS_DIR}/exporter_password",
            },
        )
        gated(
            "sql_exporter",
            [f"-config.file={paths.sql_exporter_config}"],
            [ContainerFile(paths.sql_exporter_config, args.sql_exporter_config, secret=True, mode="0400")],
            after=args.sql_exporter_after,
        )
        blackbox_files = [ContainerFile(paths.blackbox_config, args.blackbox_config)]
        if args.internal_ca_pem is not None:
            blackbox_files.append(ContainerFile(paths.internal_ca, args.internal_ca_pem))
        gated("blackbox_exporter", [f"--config.file={paths.blackbox_config}"], blackbox_files)
        self.register_outputs({name: service.name for name, service in self.services.items()})


def internal_urls(ports: Mapping[str, int]) -> dict[str, str]:
    """Prometheus' and Alertmanager's URLs in the monitoring zone (the stack outputs' internal URLs)."""
    return {name: f"http://{SERVICES[name].docker_alias}:{ports[name]}" for name in ("prometheus", "alertmanager")}


__all__ = [
    "LEFT_OUT",
    "SERVICES_ON_SWARM",
    "SwarmMonitoring",
    "SwarmMonitoringArgs",
    "internal_urls",
    "swarm_monitoring_args",
]
