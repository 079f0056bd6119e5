"""The monitoring zone: Prometheus, Alertmanager and the exporters (R-OBS-1, R-SEC-5)."""

from __future__ import annotations

import pulumi
import yaml

from components.container import (
    CONFIG_DIR,
    SECRETS_DIR,
    ContainerFile,
    HardenedContainer,
    HardenedContainerArgs,
    http_probe,
)
from components.network import NetworkZones
from components.settings import Settings

TYPE = "fly-potato:monitoring:MonitoringServices"


def scrape_targets(settings: Settings) -> dict[str, str]:
    """Job name → host:port inside the monitoring zone."""
    p = settings.ports
    return {
        "backend": f"backend:{p['backend']}",
        "node_exporter": f"node-exporter:{p['node_exporter']}",
        "postgres_exporter": f"postgres-exporter:{p['postgres_exporter']}",
        "sql_exporter": f"sql-exporter:{p['sql_exporter']}",
        "oauth2_proxy": f"oauth2-proxy:{p['oauth2_proxy_metrics']}",
        "keycloak": f"keycloak:{p['keycloak_management']}",
        "alertmanager": f"alertmanager:{p['alertmanager']}",
    }


def render_prometheus_config(settings: Settings) -> str:
    targets = scrape_targets(settings)
    jobs = []
    for job, target in targets.items():
        entry: dict[str, object] = {"job_name": job, "static_configs": [{"targets": [target]}]}
        if job == "backend":
            entry["authorization"] = {"type": "Bearer", "credentials_file": f"{SECRETS_DIR}/metrics_token"}
        if job == "keycloak":
            entry["metrics_path"] = "/sso/metrics"
        jobs.append(entry)
    config = {
        "global": {
            "scrape_interval": "15s",
            "evaluation_interval": "15s",
            "external_labels": {"stack": settings.stack},
        },
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [targets["alertmanager"]]}]}]},
        "scrape_configs": jobs,
    }
    return yaml.safe_dump(config, sort_keys=False)


def render_alertmanager_config(settings: Settings) -> str:
    config = {
        "route": {"receiver": "default", "group_by": ["alertname", "stack"]},
        "receivers": [{"name": "default"}],
    }
    return yaml.safe_dump(config, sort_keys=False)


class MonitoringServices(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        settings: Settings,
        zones: NetworkZones,
        *,
        metrics_token: pulumi.Input[str],
        exporter_password: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        p = settings.ports
        retention = settings.raw.monitoring.retention_days

        def make(service: str, args: HardenedContainerArgs) -> HardenedContainer:
            return HardenedContainer(f"{name}-{service.replace('_', '-')}", args, settings, zones, opts=child)

        self.prometheus = make(
            "prometheus",
            HardenedContainerArgs(
                service="prometheus",
                image=settings.images["prometheus"],
                command=[
                    f"--config.file={CONFIG_DIR}/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    f"--storage.tsdb.retention.time={retention}d",
                    f"--web.listen-address=0.0.0.0:{p['prometheus']}",
                ],
                files=[
                    ContainerFile(f"{CONFIG_DIR}/prometheus.yml", render_prometheus_config(settings)),
                    ContainerFile(f"{SECRETS_DIR}/metrics_token", metrics_token, secret=True, mode="0400"),
                ],
                tmpfs={"/tmp": "rw,noexec,nosuid,size=64m", "/prometheus": "rw,noexec,nosuid,size=512m"},
                healthcheck=http_probe(p["prometheus"], "/-/ready"),
            ),
        )
        self.alertmanager = make(
            "alertmanager",
            HardenedContainerArgs(
                service="alertmanager",
                image=settings.images["alertmanager"],
                command=[
                    f"--config.file={CONFIG_DIR}/alertmanager.yml",
                    "--storage.path=/tmp/alertmanager",
                    f"--web.listen-address=0.0.0.0:{p['alertmanager']}",
                    "--cluster.listen-address=",
                ],
                files=[ContainerFile(f"{CONFIG_DIR}/alertmanager.yml", render_alertmanager_config(settings))],
                healthcheck=http_probe(p["alertmanager"], "/-/ready"),
            ),
        )
        self.node_exporter = make(
            "node_exporter",
            HardenedContainerArgs(
                service="node_exporter",
                image=settings.images["node_exporter"],
                command=[f"--web.listen-address=0.0.0.0:{p['node_exporter']}"],
                healthcheck=http_probe(p["node_exporter"], "/metrics"),
            ),
        )
        self.postgres_exporter = make(
            "postgres_exporter",
            HardenedContainerArgs(
                service="postgres_exporter",
                image=settings.images["postgres_exporter"],
                command=[f"--web.listen-address=0.0.0.0:{p['postgres_exporter']}"],
                env={
                    "DATA_SOURCE_URI": f"postgres:{p['postgres']}/postgres?sslmode=disable",
                    "DATA_SOURCE_USER": "exporter",
                    "DATA_SOURCE_PASS_FILE": f"{SECRETS_DIR}/exporter_password",
                },
                files=[ContainerFile(f"{SECRETS_DIR}/exporter_password", exporter_password, secret=True, mode="0400")],
                healthcheck=http_probe(p["postgres_exporter"], "/metrics"),
            ),
        )
        self.sql_exporter = make(
            "sql_exporter",
            HardenedContainerArgs(
                service="sql_exporter",
                image=settings.images["sql_exporter"],
                command=[
                    f"--web.listen-address=0.0.0.0:{p['sql_exporter']}",
                    f"--config.file={SECRETS_DIR}/sql_exporter.yml",
                ],
                files=[
                    ContainerFile(
                        f"{SECRETS_DIR}/sql_exporter.yml",
                        pulumi.Output.from_input(exporter_password).apply(
                            lambda password: yaml.safe_dump(
                                {
                                    "global": {"scrape_timeout": "10s"},
                                    "target": {
                                        "data_source_name": f"postgres://exporter:{password}@postgres:{p['postgres']}/flypotato?sslmode=disable",
                                        "collectors": [],
                                    },
                                    "collectors": [],
                                }
                            )
                        ),
                        secret=True,
                        mode="0400",
                    )
                ],
                healthcheck=http_probe(p["sql_exporter"], "/metrics"),
            ),
        )
        self.blackbox_exporter = make(
            "blackbox_exporter",
            HardenedContainerArgs(
                service="blackbox_exporter",
                image=settings.images["blackbox_exporter"],
                command=[
                    f"--web.listen-address=0.0.0.0:{p['blackbox_exporter']}",
                    f"--config.file={CONFIG_DIR}/blackbox.yml",
                ],
                files=[
                    ContainerFile(
                        f"{CONFIG_DIR}/blackbox.yml",
                        yaml.safe_dump(
                            {"modules": {"tls_connect": {"prober": "tcp", "timeout": "5s", "tcp": {"tls": True}}}}
                        ),
                    )
                ],
                healthcheck=http_probe(p["blackbox_exporter"], "/-/healthy"),
            ),
        )
        self.register_outputs({"prometheus": self.prometheus.name})
