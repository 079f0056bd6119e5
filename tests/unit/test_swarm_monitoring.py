"""The monitoring group on a swarm (``features.monitoring`` on ``target: swarm``), from the real program under mocks:
where each service runs and how many of it, its zones, its files as Swarm configs or secrets, Prometheus scraping
every task through DNS with the metrics token (R-OBS-1, R-SEC-5), and the policy pack's verdict."""

from __future__ import annotations

import base64
import copy
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from pydantic import SecretStr

from components import monitoring_config as mc
from components.catalog import SERVICES, Group, Resources
from components.monitoring_services import MonitoringArgs
from components.settings import parse_settings
from components.swarm import HardenedServiceArgs, Probe
from components.swarm.monitoring import LEFT_OUT, SERVICES_ON_SWARM, SwarmMonitoringArgs, swarm_monitoring_args
from policy import context
from policy_plan import crossguard
from policy_plan.program import PlannedResource, ProgramGraph, evaluate_program, is_secret, stack_config
from tests.monitoring.support import run, tool
from wire import SERVICE_LABEL

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "docker:index/service:Service"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
VOLUME = "docker:index/volume:Volume"
MANAGER = "unix:///run/fly-potato-swarm/node1.sock"
DATA_NODE = "unix:///run/fly-potato-swarm/node3.sock"
DIGEST = "ab" * 32
REPOSITORY = {"postgres": "postgis", "migration": "backend"}  # the migrations ship in the backend image
DATA = ["node.labels.fly-potato.role==data"]
SECRETS = "/etc/fly-potato/secrets"
GATE_TOKEN = f"{SECRETS}/metrics-gate-token.conf"
GATE_FILES = {"/etc/fly-potato/metrics_gate.sh": 0o440, "/etc/fly-potato/metrics-gate.conf": 0o440}
SEC5 = "metrics-bearer-token-file"


def overrides(**extra: Any) -> dict[str, Any]:
    images = {
        f"images.{name}": f"198.18.232.1:5000/fly-potato/{REPOSITORY.get(name, name)}@sha256:{DIGEST}"
        for name in stack_config("dev")["images"]
    }
    return {
        "target": "swarm",
        "swarm.docker_host": MANAGER,
        "features.backups": False,
        "features.monitoring": True,
        "publish.nginx_http": "none",  # R-NET-3: dev on a swarm publishes nothing
        **images,
        **extra,
    }


@pytest.fixture(scope="module")
def graph() -> ProgramGraph:
    evaluated = evaluate_program("dev", overrides())
    assert evaluated.error is None, evaluated.error
    return evaluated


def services(graph: ProgramGraph) -> dict[str, PlannedResource]:
    found = {}
    for resource in graph.of_type(SERVICE):
        labels = {item["label"]: item["value"] for item in resource.prop("labels")}
        found[labels[SERVICE_LABEL]] = resource
    return found


def spec(service: PlannedResource) -> dict[str, Any]:
    container: dict[str, Any] = service.prop("taskSpec")["containerSpec"]
    return container


def files(service: PlannedResource) -> dict[str, tuple[str, int]]:
    """Path in the task -> ("config" or "secret", mode)."""
    container = spec(service)
    found = {ref["fileName"]: ("config", int(ref["fileMode"])) for ref in container.get("configs") or []}
    found |= {ref["fileName"]: ("secret", int(ref["fileMode"])) for ref in container.get("secrets") or []}
    return found


def prometheus_yml(graph: ProgramGraph) -> dict[str, Any]:
    [ref] = [r for r in spec(services(graph)["prometheus"])["configs"] if r["fileName"] == mc.PATHS.prometheus_config]
    [config] = [c for c in graph.of_type(CONFIG) if c.prop("name") == ref["configName"]]
    loaded: dict[str, Any] = yaml.safe_load(base64.b64decode(config.prop("data")))
    return loaded


def test_every_monitoring_service_but_container_exporter_runs_on_the_swarm(graph: ProgramGraph) -> None:
    monitoring = {name for name in services(graph) if SERVICES[name].group is Group.MONITORING}
    assert (
        monitoring
        == set(SERVICES_ON_SWARM)
        == {
            "prometheus",
            "alertmanager",
            "node_exporter",
            "postgres_exporter",
            "sql_exporter",
            "blackbox_exporter",
        }
    )
    # Swarm replaces a failed task with a new container: Docker's RestartCount stays 0 (module docstring).
    assert "container_exporter" not in services(graph)
    assert "job_name: container_exporter" not in yaml.safe_dump(prometheus_yml(graph))


@pytest.mark.parametrize(
    ("service", "mode", "constraints"),
    [
        ("prometheus", {"replicated": {"replicas": 1}}, DATA),
        ("alertmanager", {"replicated": {"replicas": 1}}, DATA),
        ("node_exporter", {"global": True}, None),
        ("postgres_exporter", {"replicated": {"replicas": 1}}, None),
        ("sql_exporter", {"replicated": {"replicas": 1}}, None),
        ("blackbox_exporter", {"replicated": {"replicas": 1}}, None),
    ],
)
def test_placement_and_mode(graph: ProgramGraph, service: str, mode: dict[str, Any], constraints: Any) -> None:
    resource = services(graph)[service]
    assert resource.prop("mode") == mode
    assert (resource.prop("taskSpec").get("placement") or {}).get("constraints") == constraints
    assert resource.prop("endpointSpec") == {"mode": "dnsrr"}  # the name resolves to every task; nothing published
    # pulumi-docker refuses converge_config on a global service ("conflicts with mode.0.global").
    assert ("convergeConfig" in resource.inputs) is ("replicated" in mode)


def test_prometheus_and_alertmanager_keep_their_data_in_volumes_made_on_the_data_node() -> None:
    graph = evaluate_program("dev", overrides(**{"swarm.data_docker_host": DATA_NODE}))
    assert graph.error is None, graph.error
    running = services(graph)
    for service in ("prometheus", "alertmanager"):
        volume = graph.by_name(f"monitoring-{service}-data")
        assert volume.type == VOLUME
        assert volume.prop("name") == f"fly-potato-dev-{service}-data"
        assert "pulumi:providers:docker::swarm-data-node::" in volume.provider
        assert not volume.options["retain_on_delete"]  # dev; prod keeps them
        mounts = [m for m in spec(running[service])["mounts"] if m["type"] == "volume"]
        assert mounts == [{"type": "volume", "source": volume.prop("name"), "target": f"/{service}"}]
        assert "::swarm-manager::" in running[service].provider


def test_node_exporter_reads_its_own_node_read_only_and_is_named_after_it(graph: ProgramGraph) -> None:
    container = spec(services(graph)["node_exporter"])
    binds = [m for m in container["mounts"] if m["type"] == "bind"]
    assert binds == [
        {"type": "bind", "source": "/proc", "target": "/host/proc", "readOnly": True},
        {"type": "bind", "source": "/sys", "target": "/host/sys", "readOnly": True},
    ]
    assert container["hostname"] == "{{.Node.Hostname}}"
    assert "--path.procfs=/host/proc" in container["args"]
    for name, service in services(graph).items():
        if name != "node_exporter":
            assert all(m["type"] != "bind" for m in spec(service).get("mounts") or []), name


@pytest.mark.parametrize(
    ("service", "zones"),
    [
        ("prometheus", {"monitoring"}),
        ("alertmanager", {"monitoring"}),
        ("node_exporter", {"monitoring"}),
        ("postgres_exporter", {"monitoring", "data"}),
        ("sql_exporter", {"monitoring", "data"}),
        ("blackbox_exporter", {"monitoring", "app"}),
    ],
)
def test_zones_are_the_stacks_overlays(graph: ProgramGraph, service: str, zones: set[str]) -> None:
    networks = services(graph)[service].prop("taskSpec")["networksAdvanceds"]
    assert {n["name"] for n in networks} == {f"zones-{zone}-id" for zone in zones}  # the overlay networks' ids
    assert all(n["aliases"] == [service.replace("_", "-")] for n in networks)


TOKEN = {mc.PATHS.metrics_token: ("secret", 0o400)}
GATED = {**{path: ("config", mode) for path, mode in GATE_FILES.items()}, GATE_TOKEN: ("secret", 0o400)}


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        (
            "prometheus",
            {
                **GATED,
                **TOKEN,
                mc.PATHS.prometheus_config: ("config", 0o440),
                mc.PATHS.rules: ("config", 0o440),
            },
        ),
        ("alertmanager", {**GATED, mc.PATHS.alertmanager_config: ("config", 0o440)}),
        ("node_exporter", GATED),
        ("postgres_exporter", {**GATED, f"{SECRETS}/exporter_password": ("secret", 0o400)}),
        ("sql_exporter", {**GATED, mc.PATHS.sql_exporter_config: ("secret", 0o400)}),
        (
            "blackbox_exporter",
            {**GATED, mc.PATHS.blackbox_config: ("config", 0o440), mc.PATHS.internal_ca: ("config", 0o440)},
        ),
    ],
)
def test_files_are_configs_and_secrets(graph: ProgramGraph, service: str, expected: dict[str, Any]) -> None:
    resource = services(graph)[service]
    assert files(resource) == expected
    container = spec(resource)
    uid = container["user"].split(":")[0]  # the service's own uid owns its files
    assert {ref["fileUid"] for ref in [*container.get("configs", []), *container.get("secrets", [])]} == {uid}


def test_no_password_lands_in_a_swarm_config(graph: ProgramGraph) -> None:
    """The exporter's password (and the DSN carrying it) are Swarm secrets only (R-SEC-1)."""
    configs = [base64.b64decode(c.prop("data")).decode() for c in graph.of_type(CONFIG)]
    secret = graph.by_name("monitoring-postgres-exporter-secrets-exporter-password")
    password = base64.b64decode(secret.prop("data")).decode()
    assert password and not any(password in text for text in configs)
    assert not any("postgres://exporter:" in text for text in configs)


def test_alertmanager_takes_the_smtp_password_and_a_webhook_config_as_secrets() -> None:
    alerting = {
        "alerting": {
            "email_to": ["ops@example.com"],
            "smtp_smarthost": "smtp.example.com:587",
            "smtp_from": "alerts@example.com",
            "smtp_password": "smtp-secret",
            "webhook_url": "https://hooks.example.com/T0/abc",
        }
    }
    config = stack_config("dev", overrides()) | alerting
    graph = evaluate_program("dev", config=config)
    assert graph.error is None, graph.error
    assert files(services(graph)["alertmanager"]) == {
        **GATED,
        mc.PATHS.alertmanager_secret_config: ("secret", 0o400),
        mc.PATHS.smtp_password: ("secret", 0o400),
    }
    configs = [base64.b64decode(c.prop("data")).decode() for c in graph.of_type(CONFIG)]
    assert not any("smtp-secret" in text or "hooks.example.com" in text for text in configs)


def smtp_password_type(args: type) -> object:
    """The ``smtp_password`` field's annotation, evaluated in its module."""
    (field,) = [f for f in dataclasses.fields(args) if f.name == "smtp_password"]
    return eval(str(field.type), vars(sys.modules[args.__module__]))  # noqa: S307 (the repository's own annotation)


def test_the_smtp_password_is_a_secret_as_on_a_host_and_stays_one_in_the_graph() -> None:
    """The args carry it as the host's do (a SecretStr, never a plain string), and the Swarm secret holding it is
    a Pulumi secret in the recorded graph: its data and its content-hashed name."""
    host_type = smtp_password_type(MonitoringArgs)
    assert smtp_password_type(SwarmMonitoringArgs) == host_type == SecretStr | None
    alerting = {
        "email_to": ["ops@example.com"],
        "smtp_smarthost": "smtp.example.com:587",
        "smtp_from": "alerts@example.com",
        "smtp_password": "smtp-secret",
    }
    config = stack_config("dev", overrides()) | {"alerting": alerting}
    args = swarm_monitoring_args(
        parse_settings(config, stack="dev"),
        metrics_token="token",
        exporter_password="password",
        internal_ca_pem="ca",
        volume_provider=cast(Any, None),
    )
    assert isinstance(args.smtp_password, SecretStr) and args.smtp_password.get_secret_value() == "smtp-secret"
    graph = evaluate_program("dev", config=config)
    assert graph.error is None, graph.error
    secret = graph.by_name("monitoring-alertmanager-secrets-smtp-password")
    assert is_secret(secret.inputs["data"]) and is_secret(secret.inputs["name"])
    assert base64.b64decode(secret.prop("data")).decode() == "smtp-secret"


PER_TASK = {
    # job: (DNS name, port, metrics path)
    "prometheus": ("prometheus", 9090, None),
    "alertmanager": ("alertmanager", 9093, None),
    "backend": ("backend", 8000, None),
    "postgres_exporter": ("postgres-exporter", 9187, None),
    "sql_exporter": ("sql-exporter", 9399, None),
    "node_exporter": ("node-exporter", 9100, None),
    "oauth2_proxy": ("oauth2-proxy", 44180, None),
    "keycloak": ("keycloak", 9000, "/sso/metrics"),
}


def test_prometheus_scrapes_every_task_through_dns_with_the_token(graph: ProgramGraph) -> None:
    """dns_sd_configs (type A) on every job: backend, oauth2-proxy and node_exporter resolve to each of their tasks
    (endpoint mode dnsrr); each job sends the metrics token from Prometheus' secret file (R-SEC-5)."""
    config = prometheus_yml(graph)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(PER_TASK)
    for name, (host, port, path) in PER_TASK.items():
        job = jobs[name]
        assert "static_configs" not in job, name
        assert job["dns_sd_configs"] == [{"names": [host], "type": "A", "port": port}], name
        assert job["authorization"] == {"type": "Bearer", "credentials_file": mc.PATHS.metrics_token}, name
        assert job.get("metrics_path") == path, name
        assert job["relabel_configs"] == [{"target_label": "service", "replacement": name}], name
    assert files(services(graph)["prometheus"])[mc.PATHS.metrics_token] == ("secret", 0o400)
    assert config["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]


def test_the_certificate_probe_is_per_nginx_task_on_an_https_stack() -> None:
    settings = parse_settings(stack_config("prod"), stack="prod")
    [job] = [
        job
        for job in yaml.safe_load(mc.render_prometheus_config(settings, per_task=True))["scrape_configs"]
        if job["job_name"] == "blackbox_tls"
    ]
    assert job["dns_sd_configs"] == [{"names": ["nginx"], "type": "A", "port": 443}]
    assert job["relabel_configs"][:2] == [
        {"target_label": "service", "replacement": "nginx"},
        {"target_label": "endpoint", "replacement": settings.public_url},
    ]
    assert job["relabel_configs"][-1] == {"target_label": "__address__", "replacement": "blackbox-exporter:9115"}
    # On a host nothing changes: one static target per job.
    host = yaml.safe_load(mc.render_prometheus_config(settings))["scrape_configs"]
    assert all("static_configs" in j and "dns_sd_configs" not in j for j in host)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_promtool_accepts_the_swarm_prometheus_config(stack: str, tmp_path: Path) -> None:
    settings = parse_settings(stack_config(stack), stack=stack)
    paths = mc.PATHS.under(tmp_path)
    for path, text in (
        (paths.prometheus_config, mc.render_prometheus_config(settings, paths, per_task=True, without=LEFT_OUT)),
        (paths.rules, mc.render_rules(settings)),
        (paths.metrics_token, "t" * 40),
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    checked = run([tool("promtool"), "check", "config", paths.prometheus_config])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_monitoring_services_wait_for_the_database_roles(graph: ProgramGraph) -> None:
    [roles] = [r for r in graph.resources if r.type == "fly-potato:database:PlatformDatabases"]
    for name, service in services(graph).items():
        if name in SERVICES_ON_SWARM:
            assert roles.urn in graph.ancestors_and_dependencies(service.urn), name


def test_stack_outputs_name_the_monitoring_services(graph: ProgramGraph) -> None:
    urls = graph.outputs["internal_urls"]
    assert (urls["prometheus"], urls["alertmanager"]) == ("http://prometheus:9090", "http://alertmanager:9093")
    assert set(graph.outputs["swarm_services"]) >= set(SERVICES_ON_SWARM)
    assert graph.outputs["swarm_services"]["node_exporter"] == "fly-potato-dev-node-exporter"
    monitoring = graph.outputs["zones"]["monitoring"]["services"]
    assert set(SERVICES_ON_SWARM) <= set(monitoring) and "container_exporter" not in monitoring


def test_the_pack_has_no_mandatory_violation_and_reads_the_swarm_prometheus_config(graph: ProgramGraph) -> None:
    result = crossguard.run(graph, context.make("dev", graph.config))
    assert [v.as_dict() for v in result.mandatory] == []
    # Not vacuous: a job without the token in the Swarm config Prometheus reads is caught (R-SEC-5).
    graph = copy.deepcopy(graph)
    config = prometheus_yml(graph)
    [backend] = [job for job in config["scrape_configs"] if job["job_name"] == "backend"]
    del backend["authorization"]
    [ref] = [r for r in spec(services(graph)["prometheus"])["configs"] if r["fileName"] == mc.PATHS.prometheus_config]
    [resource] = [c for c in graph.of_type(CONFIG) if c.prop("name") == ref["configName"]]
    resource.inputs["data"] = base64.b64encode(yaml.safe_dump(config).encode()).decode()
    result = crossguard.run(graph, context.make("dev", graph.config))
    [caught] = [v for v in result.violations if v.policy == SEC5]  # advisory in dev, mandatory in prod
    assert caught.resource == "prometheus"
    assert "prometheus job backend scrapes without the metrics token" in caught.message


def test_policy_plan_reports_no_mandatory_violation() -> None:
    args = [f"--set={key}={value}" for key, value in overrides().items()]
    done = subprocess.run(
        [sys.executable, "-m", "policy_plan", "--stack", "dev", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "violations: 0 mandatory" in done.stdout


def test_a_global_service_takes_no_replicas_and_binds_are_absolute() -> None:
    base: dict[str, Any] = {
        "project": "fly-potato",
        "stack": "s1",
        "service": "node_exporter",
        "image": f"198.18.232.1:5000/fly-potato/node-exporter@sha256:{DIGEST}",
        "healthcheck": Probe(["CMD", "true"]),
        "resources": Resources(cpus=0.25, memory_mb=64, pids=64),
    }
    assert HardenedServiceArgs(**base, global_=True).global_
    with pytest.raises(ValueError, match="a global service runs one task per node"):
        HardenedServiceArgs(**base, global_=True, replicas=2)
    with pytest.raises(ValueError, match="not a plain absolute path"):
        HardenedServiceArgs(**base, binds={"proc": "/host/proc"})
    with pytest.raises(ValueError, match="not a plain absolute path"):
        HardenedServiceArgs(**base, binds={"/proc/../etc": "/host/etc"})
