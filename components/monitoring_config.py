"""Monitoring configuration rendered from the stack settings: pure functions, known at preview.

prometheus.yml (scrape jobs, rule file, Alertmanager), the alert rules (components/rules/alerts.yml),
alertmanager.yml (receivers from ``fly-potato:alerting``), the sql_exporter jobs, the blackbox modules and
the metrics gate in front of the exporters that have no bearer-token option (R-SEC-5).
Secrets never appear in these texts except where an image offers no file option (see
``render_alertmanager_config``); they are referenced by the paths in :class:`MonitoringPaths`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from components import metrics_gate as gate
from components.auth_services import KEYCLOAK_GATE, KEYCLOAK_PATH, OAUTH2_PROXY_GATE
from components.catalog import SERVICES
from components.data_services import APP_DATABASE
from components.hardened_container import CONFIG_DIR, SECRETS_DIR
from components.settings import Settings

RULES_SOURCE = Path(__file__).resolve().parent / "rules" / "alerts.yml"
METRICS_GATE_SOURCE = gate.SOURCE

# Rule groups that only make sense when their feature is deployed.
FEATURE_GROUPS = {"backups": "fly-potato-backup"}

BLACKBOX_TLS_MODULE = "tls_certificate"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: the program renders at every preview
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _dump(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


@cache
def _rule_source() -> list[dict[str, Any]]:
    return yaml.load(RULES_SOURCE.read_text(), Loader=_Loader)["groups"]  # noqa: S506 (safe loader)


@dataclass(frozen=True)
class MonitoringPaths:
    """Where the rendered files live inside the containers (tests render under a temporary root)."""

    prometheus_config: str = f"{CONFIG_DIR}/prometheus.yml"
    rules: str = f"{CONFIG_DIR}/rules/alerts.yml"
    metrics_token: str = f"{SECRETS_DIR}/metrics_token"
    alertmanager_config: str = f"{CONFIG_DIR}/alertmanager.yml"
    alertmanager_secret_config: str = f"{SECRETS_DIR}/alertmanager.yml"
    smtp_password: str = f"{SECRETS_DIR}/smtp_password"
    sql_exporter_config: str = f"{SECRETS_DIR}/sql_exporter.yml"
    blackbox_config: str = f"{CONFIG_DIR}/blackbox.yml"
    # Trust anchor of the certificate probe when the stack issues its own certificate (R-TLS-4).
    internal_ca: str = f"{CONFIG_DIR}/internal-ca.pem"
    metrics_gate_script: str = gate.SCRIPT_PATH
    metrics_gate_config: str = gate.CONFIG_PATH
    # The token as nginx reads it (a `map` entry): secret, like the token file Prometheus sends from.
    metrics_gate_token: str = gate.TOKEN_PATH

    def under(self, root: str | Path) -> MonitoringPaths:
        """The same layout below ``root`` (for promtool/amtool runs outside a container)."""
        return replace(self, **{name: f"{root}{getattr(self, name)}" for name in self.__dataclass_fields__})


PATHS = MonitoringPaths()


def _host(service: str) -> str:
    return SERVICES[service].docker_alias


@dataclass(frozen=True)
class ScrapeJob:
    """A scrape job; every one sends the metrics token from its file (R-SEC-5)."""

    name: str
    service: str
    listener: str
    metrics_path: str = "/metrics"
    # The target labels its own series with `job` (the backup service: job="drill", "dump", ...). Prometheus
    # renames a scraped `job` to `exported_job`; this puts it back, so rules read the target's own name.
    series_job_label: bool = False


def scrape_jobs(settings: Settings) -> list[ScrapeJob]:
    """Every scrape target of the stack; job names are what the alert rules match on."""
    jobs = [
        # Prometheus scrapes itself through its own gate, like any other target.
        ScrapeJob("prometheus", "prometheus", "prometheus"),
        ScrapeJob("alertmanager", "alertmanager", "alertmanager"),
        ScrapeJob("backend", "backend", "backend"),
        ScrapeJob("postgres_exporter", "postgres_exporter", "postgres_exporter"),
        ScrapeJob("sql_exporter", "sql_exporter", "sql_exporter"),
        ScrapeJob("node_exporter", "node_exporter", "node_exporter"),
        ScrapeJob("oauth2_proxy", "oauth2_proxy", "oauth2_proxy_metrics"),
        # Keycloak 26 serves metrics on the management port under the HTTP relative path.
        ScrapeJob("keycloak", "keycloak", "keycloak_management", metrics_path=f"{KEYCLOAK_PATH}/metrics"),
        ScrapeJob("container_exporter", "container_exporter", "container_exporter"),
    ]
    if settings.features.backups:
        jobs.append(ScrapeJob("backup", "backup", "backup_metrics", series_job_label=True))
    return jobs


def scrape_targets(settings: Settings) -> dict[str, str]:
    """Job name → host:port inside the monitoring zone."""
    return {job.name: f"{_host(job.service)}:{settings.ports[job.listener]}" for job in scrape_jobs(settings)}


def certificate_probe_target(settings: Settings) -> str | None:
    """The public TLS endpoint as the blackbox exporter reaches it (nginx in the monitoring zone), or None
    when the stack serves no HTTPS (dev)."""
    if not settings.public_url.startswith("https://"):
        return None
    return f"{_host('nginx')}:{settings.ports['nginx_https']}"


def _discovery(host: str, port: int, labels: dict[str, str], per_task: bool) -> dict[str, Any]:
    """Where a job finds its targets: one static ``host:port``, or (``per_task``) every address ``host`` resolves
    to (DNS, type A), each its own target; DNS discovery carries no labels, so relabelling sets them."""
    if not per_task:
        return {"static_configs": [{"targets": [f"{host}:{port}"], "labels": labels}]}
    return {
        "dns_sd_configs": [{"names": [host], "type": "A", "port": port}],
        "relabel_configs": [{"target_label": name, "replacement": value} for name, value in labels.items()],
    }


def render_prometheus_config(
    settings: Settings, paths: MonitoringPaths = PATHS, *, per_task: bool = False, without: Collection[str] = ()
) -> str:
    """prometheus.yml. Every job sends the metrics token from its file (R-SEC-5), however it finds its targets.

    ``per_task`` (``target: swarm``): each job discovers its targets in DNS (``dns_sd_configs``, type A) instead of
    a static ``host:port``. A swarm service in endpoint mode dnsrr has its name resolve to every task, so each task
    of a replicated service (backend, oauth2-proxy, nginx) and of a global one (one node_exporter per node) is
    scraped as its own target, and a rescheduled task is found again. ``without``: jobs of services the target
    does not run."""
    interval = f"{settings.raw.monitoring.scrape_interval_seconds}s"
    configs: list[dict[str, Any]] = []
    for job in scrape_jobs(settings):
        if job.name in without:
            continue
        entry: dict[str, Any] = {"job_name": job.name}
        if job.metrics_path != "/metrics":
            entry["metrics_path"] = job.metrics_path
        entry["authorization"] = {"type": "Bearer", "credentials_file": paths.metrics_token}
        entry |= _discovery(_host(job.service), settings.ports[job.listener], {"service": job.service}, per_task)
        if job.series_job_label:
            # Series without their own job keep the scrape job's; the `service` label still names the target.
            entry["metric_relabel_configs"] = [
                {"source_labels": ["exported_job"], "regex": "(.+)", "target_label": "job"},
                {"action": "labeldrop", "regex": "exported_job"},
            ]
        configs.append(entry)
    probe = certificate_probe_target(settings)
    if probe is not None:
        blackbox = f"{_host('blackbox_exporter')}:{settings.ports['blackbox_exporter']}"
        host, _, port = probe.rpartition(":")
        # Per task: every nginx task's certificate is probed (the TLS handshake names the public domain).
        found = _discovery(host, int(port), {"service": "nginx", "endpoint": settings.public_url}, per_task)
        configs.append(
            {
                "job_name": "blackbox_tls",
                "metrics_path": "/probe",
                "params": {"module": [BLACKBOX_TLS_MODULE]},
                "authorization": {"type": "Bearer", "credentials_file": paths.metrics_token},
                **found,
                "relabel_configs": [
                    *found.get("relabel_configs", []),
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": blackbox},
                ],
            }
        )
    config = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": f"{min(10, settings.raw.monitoring.scrape_interval_seconds)}s",
            "evaluation_interval": interval,
            "external_labels": {"stack": settings.stack},
        },
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [scrape_targets(settings)["alertmanager"]]}]}]},
        "rule_files": [paths.rules],
        "scrape_configs": configs,
    }
    return _dump(config)


def prometheus_argv(settings: Settings, paths: MonitoringPaths = PATHS) -> list[str]:
    """Prometheus' command line: on loopback behind its gate (R-SEC-5). The external URL keeps the address the
    zone knows it by (its alias on its listener), so alert links and the UI's own links stay as they were."""
    port = settings.ports["prometheus"]
    return [
        "/usr/bin/prometheus",
        f"--config.file={paths.prometheus_config}",
        "--storage.tsdb.path=/prometheus",
        f"--storage.tsdb.retention.time={settings.raw.monitoring.retention_days}d",
        f"--web.listen-address=127.0.0.1:{gate.upstream_port(port)}",
        f"--web.external-url=http://{_host('prometheus')}:{port}/",
    ]


def alertmanager_argv(settings: Settings, config_file: str) -> list[str]:
    """Alertmanager's command line: on loopback behind its gate (R-SEC-5), single node (no gossip); the external
    URL (links in notifications) is its address in the zone, as before the gate."""
    port = settings.ports["alertmanager"]
    return [
        "/usr/bin/prometheus-alertmanager",
        f"--config.file={config_file}",
        "--storage.path=/alertmanager",
        f"--web.listen-address=127.0.0.1:{gate.upstream_port(port)}",
        f"--web.external-url=http://{_host('alertmanager')}:{port}/",
        "--cluster.listen-address=",
    ]


def rule_groups(settings: Settings) -> list[dict[str, Any]]:
    """The alert rule groups that apply to this stack."""
    groups = _rule_source()
    disabled = {group for feature, group in FEATURE_GROUPS.items() if not getattr(settings.features, feature)}
    return [group for group in groups if group["name"] not in disabled]


def render_rules(settings: Settings) -> str:
    return _dump({"groups": rule_groups(settings)})


def alertmanager_config_is_secret(settings: Settings) -> bool:
    """Alertmanager 0.25 (Debian bookworm, our image) has no ``url_file`` for webhooks, so with a webhook the
    whole alertmanager.yml carries the URL and is delivered as a secret file."""
    return settings.raw.alerting.webhook_url is not None


def render_alertmanager_config(settings: Settings, paths: MonitoringPaths = PATHS) -> str:
    alerting = settings.raw.alerting
    receiver: dict[str, Any] = {"name": "platform"}
    global_: dict[str, Any] = {"resolve_timeout": "5m"}
    if alerting.email_to:
        global_.update(
            {
                "smtp_smarthost": alerting.smtp_smarthost,
                "smtp_from": alerting.smtp_from,
                "smtp_require_tls": alerting.smtp_require_tls,
            }
        )
        if alerting.smtp_username:
            global_["smtp_auth_username"] = alerting.smtp_username
        if alerting.smtp_password is not None:
            global_["smtp_auth_password_file"] = paths.smtp_password
        receiver["email_configs"] = [
            {
                "to": ", ".join(alerting.email_to),
                "send_resolved": True,
                "headers": {
                    "Subject": f"[{settings.stack}] " + "{{ .Status | toUpper }} {{ .CommonLabels.alertname }}"
                },
            }
        ]
    if alerting.webhook_url is not None:
        receiver["webhook_configs"] = [{"url": alerting.webhook_url.get_secret_value(), "send_resolved": True}]
    config = {
        "global": global_,
        "route": {
            "receiver": "platform",
            "group_by": ["alertname", "stack", "job"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [
                {
                    "matchers": ['severity="critical"'],
                    "receiver": "platform",
                    "group_wait": "10s",
                    "repeat_interval": "1h",
                },
            ],
        },
        "inhibit_rules": [
            # The database is down: the API's errors, latency and backups are consequences.
            {
                "source_matchers": ['alertname="DbDown"'],
                "target_matchers": ['alertname=~"Api5xxRate|LatencyP95|BackupTooOld|BackupJobFailed"'],
                "equal": ["stack"],
            },
            # A target that cannot be scraped: its other alerts are stale or consequences.
            {
                "source_matchers": ['alertname="InstanceDown"'],
                "target_matchers": ['alertname!="InstanceDown"'],
                "equal": ["stack", "job"],
            },
            # The certificate cannot be probed: its expiry is unknown, say it once.
            {
                "source_matchers": ['alertname="CertProbeFailed"'],
                "target_matchers": ['alertname="CertExpirySoon"'],
                "equal": ["stack"],
            },
            {
                "source_matchers": ['severity="critical"'],
                "target_matchers": ['severity="warning"'],
                "equal": ["stack", "alertname", "job"],
            },
        ],
        "receivers": [receiver],
    }
    return _dump(config)


# How often sql_exporter runs the business-metric queries (they count whole tables: not on every scrape).
SQL_JOB_INTERVAL_SECONDS = 300


def sql_exporter_queries() -> list[dict[str, Any]]:
    """Custom business metrics (Debian's sql_exporter: metric ``sql_<name>``, one series per value column).

    They call the aggregate-only functions of schema ``metrics`` (migration 0004): the exporter role may
    execute those and reads no table (R-DB-1)."""
    return [
        {
            "name": "flypotato_flights",
            "help": "Flights ingested (rows of app.flights): all, and created in the last hour.",
            "values": ["total", "last_hour"],
            "query": "SELECT total, last_hour FROM metrics.flights()",
        },
        {
            "name": "flypotato_flow_events",
            "help": "Ops events (rows of app.flow_events) by type: all, and created in the last hour.",
            "labels": ["event_type"],
            "values": ["total", "last_hour"],
            "query": "SELECT event_type, total, last_hour FROM metrics.flow_events()",
        },
    ]


def sql_exporter_dsn(settings: Settings, password: str, host: str | None = None, port: int | None = None) -> str:
    return (
        f"postgres://exporter:{password}@{host or _host('postgres')}:{port or settings.ports['postgres']}"
        f"/{APP_DATABASE}?sslmode=disable"
    )


def render_sql_exporter_config(settings: Settings, dsn: str) -> str:
    """justwatchcom/sql_exporter jobs; the DSN carries the exporter role's password, so the file is secret."""
    return _dump(
        {
            "jobs": [
                {
                    "name": "flypotato",
                    "interval": f"{SQL_JOB_INTERVAL_SECONDS}s",
                    "connections": [dsn],
                    "startup_sql": ["SET statement_timeout = '20s'", "SET lock_timeout = '2s'"],
                    "queries": sql_exporter_queries(),
                }
            ]
        }
    )


def render_blackbox_config(settings: Settings, paths: MonitoringPaths = PATHS) -> str:
    """Certificate probe: a TLS handshake with the public name, verified (R-TLS-4). A stack with its own
    internal CA delivers that CA's certificate to the exporter (``paths.internal_ca``) and the probe trusts it
    alone; a provided chain is verified against the image's system trust store. A certificate the probe
    cannot verify fails the probe (CertProbeFailed) instead of reporting an expiry nobody can trust."""
    tls_config: dict[str, Any] = {"server_name": settings.domain, "insecure_skip_verify": False}
    if settings.raw.tls.mode == "internal_ca":
        tls_config["ca_file"] = paths.internal_ca
    return _dump(
        {
            "modules": {
                BLACKBOX_TLS_MODULE: {
                    "prober": "tcp",
                    "timeout": "5s",
                    "tcp": {"tls": True, "tls_config": tls_config},
                }
            }
        }
    )


# --- metrics gate (R-SEC-5) ---------------------------------------------------------------------------------
#
# The Debian exporters' web configuration (exporter-toolkit in node_exporter 1.5.0, postgres_exporter 0.11.1,
# blackbox_exporter 0.23.0) offers TLS and basic auth only, and sql_exporter 0.4.5 has none, so none of them
# can ask for a bearer token; nor can Prometheus 2.42 and Alertmanager 0.25 for their own /metrics (their
# --web.config.file: TLS and basic auth), oauth2-proxy 7.8 for its metrics server, or Keycloak 26 for its
# management interface. Each listens on 127.0.0.1 inside its container behind the metrics gate
# (components.metrics_gate): the exporters, oauth2-proxy's metrics and Keycloak's management interface on every
# path, Prometheus and Alertmanager on their metrics paths only (their UI and API stay open in the zone).


@dataclass(frozen=True)
class GatedExporter:
    service: str
    executable: str  # in the image (Debian package)
    listen_flag: str  # the exporter's listen-address flag, as its flag parser spells it
    health_path: str  # an exporter page without metrics, 200 while it runs


GATED_EXPORTERS: dict[str, GatedExporter] = {
    g.service: g
    for g in (
        GatedExporter("node_exporter", "/usr/bin/prometheus-node-exporter", "--web.listen-address", "/"),
        GatedExporter("postgres_exporter", "/usr/bin/prometheus-postgres-exporter", "--web.listen-address", "/"),
        GatedExporter("sql_exporter", "/usr/bin/prometheus-sql-exporter", "-web.listen-address", "/healthz"),
        GatedExporter(
            "blackbox_exporter", "/usr/bin/prometheus-blackbox-exporter", "--web.listen-address", "/-/healthy"
        ),
    )
}
PROMETHEUS_GATE = gate.MetricsGate("prometheus", "prometheus", "/-/ready", token_paths=("/metrics", "/federate"))
ALERTMANAGER_GATE = gate.MetricsGate("alertmanager", "alertmanager", "/-/ready", token_paths=("/metrics",))
# Every gate of the platform, by service: the servers that cannot ask for the token themselves.
METRICS_GATES: dict[str, gate.MetricsGate] = {
    **{g.service: gate.MetricsGate(g.service, g.service, g.health_path) for g in GATED_EXPORTERS.values()},
    PROMETHEUS_GATE.service: PROMETHEUS_GATE,
    ALERTMANAGER_GATE.service: ALERTMANAGER_GATE,
    OAUTH2_PROXY_GATE.service: OAUTH2_PROXY_GATE,
    KEYCLOAK_GATE.service: KEYCLOAK_GATE,
}
GATE_HEALTH_PATH = gate.HEALTH_PATH
GATE_RUNTIME_DIR = gate.RUNTIME_DIR
gate_upstream_port = gate.upstream_port
render_metrics_gate_token = gate.render_token


def gated_exporter_argv(service: str, listen_port: int, *, upstream_port: int | None = None) -> list[str]:
    """The exporter's command line start: its executable, listening on loopback behind the gate."""
    exporter = GATED_EXPORTERS[service]
    port = upstream_port or gate_upstream_port(listen_port)
    return [exporter.executable, f"{exporter.listen_flag}=127.0.0.1:{port}"]


def render_metrics_gate_config(
    service: str,
    listen_port: int,
    paths: MonitoringPaths = PATHS,
    *,
    listen_host: str = "",
    upstream_port: int | None = None,
    health_port: int | None = None,
    runtime_dir: str = GATE_RUNTIME_DIR,
) -> str:
    """nginx configuration of the gate in front of ``service`` (listening on ``listen_port``)."""
    return gate.render_config(
        METRICS_GATES[service],
        listen_port,
        token_file=paths.metrics_gate_token,
        listen_host=listen_host,
        upstream=upstream_port,
        health_port=health_port,
        runtime_dir=runtime_dir,
    )
