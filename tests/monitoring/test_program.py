"""The monitoring group in the real program's resource graph (mocked engine): exposure, files, secrets."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
import yaml

from components import metrics_gate
from components.hardened_container import CONFIG_DIR
from components.monitoring_config import (
    BLACKBOX_TLS_MODULE,
    GATED_EXPORTERS,
    METRICS_GATE_SOURCE,
    METRICS_GATES,
    PATHS,
)
from policy_plan.program import ProgramGraph, evaluate_program, is_secret


def graph(stack: str, **overrides: object) -> ProgramGraph:
    # The mocked engine runs on the current event loop; an earlier asyncio.run (alembic) leaves none.
    asyncio.set_event_loop(asyncio.new_event_loop())
    result = evaluate_program(stack, {"monitoring.docker_socket_gid": 4242, **overrides})
    assert result.error is None, result.error
    return result


def uploads(container: object) -> dict[str, dict]:
    """Uploaded files by path. The provider input holds them as one list, secret as a whole once any
    file is secret, so per-file secrecy shows as the 0400 mode the secret files get."""
    assert is_secret(container.inputs["uploads"])  # type: ignore[attr-defined]
    return {item["file"]: item for item in container.prop("uploads")}  # type: ignore[attr-defined]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_prometheus_is_never_public(stack: str) -> None:
    ports = graph(stack).containers()["prometheus"].prop("ports", [])
    if stack == "prod":
        assert ports == []
    else:
        assert [(p["ip"], p["external"]) for p in ports] == [("127.0.0.1", 9090)]


def test_retention_and_files_come_from_the_stack_config() -> None:
    g = graph("prod", **{"monitoring.retention_days": 30})
    prometheus = g.containers()["prometheus"]
    assert "--storage.tsdb.retention.time=30d" in prometheus.prop("command")
    files = uploads(prometheus)
    assert {PATHS.prometheus_config, PATHS.rules, PATHS.metrics_token} <= set(files)
    assert files[PATHS.metrics_token]["permissions"] == "0400"
    assert "alert: ContainerRestarts" in files[PATHS.rules]["content"]
    assert "--storage.tsdb.retention.time=30d" in prometheus.prop("command")


def test_alertmanager_credentials_are_files() -> None:
    g = graph(
        "prod",
        alerting={
            "email_to": ["oncall@example.com"],
            "smtp_smarthost": "smtp.example.com:587",
            "smtp_from": "alerts@example.com",
            "smtp_password": "smtp-secret-value",
            "webhook_url": "https://hooks.example.com/secret-path",
        },
    )
    alertmanager = g.containers()["alertmanager"]
    files = uploads(alertmanager)
    assert files[PATHS.smtp_password]["permissions"] == "0400"
    # Alertmanager 0.25 has no url_file: with a webhook the whole config is a secret file.
    assert files[PATHS.alertmanager_secret_config]["permissions"] == "0400"
    assert PATHS.alertmanager_config not in files
    assert "smtp-secret-value" not in files[PATHS.alertmanager_secret_config]["content"]
    assert f"--config.file={PATHS.alertmanager_secret_config}" in alertmanager.prop("command")
    envs = " ".join(alertmanager.prop("envs", []))
    assert "smtp-secret-value" not in envs and "secret-path" not in envs


def test_container_exporter_reads_the_socket_read_only_and_publishes_nothing() -> None:
    container = graph("prod").containers()["container_exporter"]
    mounts = container.prop("mounts")
    socket = [m for m in mounts if m["type"] == "bind"]
    assert socket == [
        {"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock", "readOnly": True}
    ]
    assert container.prop("user") == "10056:4242"
    assert container.prop("ports", []) == []
    assert container.prop("privileged") is False
    assert container.prop("readOnly") is True
    labels = {item["label"]: item["value"] for item in container.prop("labels")}
    assert labels["org.flypotato.zones"] == "monitoring"
    assert container.prop("entrypoints") == ["python3", f"{CONFIG_DIR}/container_exporter.py"]


SELF_SIGNED = "tls:index/selfSignedCert:SelfSignedCert"
GATED = {"node_exporter": 9100, "postgres_exporter": 9187, "sql_exporter": 9399, "blackbox_exporter": 9115}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_debian_exporter_listens_on_loopback_behind_the_metrics_gate(stack: str) -> None:
    """R-SEC-5: the exporters that cannot ask for a bearer token listen on 127.0.0.1 only; the gate on their
    listener admits the stack's metrics token, the same one Prometheus sends from its token file."""
    g = graph(stack)
    containers = g.containers()
    token = uploads(containers["prometheus"])[PATHS.metrics_token]["content"]
    assert len(token) == 40
    for service, port in GATED.items():
        container = containers[service]
        assert container.prop("entrypoints") == [
            "bash",
            PATHS.metrics_gate_script,
            PATHS.metrics_gate_config,
            "--",
        ], service
        command = container.prop("command")
        assert command[0] == GATED_EXPORTERS[service].executable
        assert command[1] == f"{GATED_EXPORTERS[service].listen_flag}=127.0.0.1:9999", service
        assert not any("0.0.0.0" in part for part in command), f"{service} listens beyond loopback: {command}"
        files = uploads(container)
        assert files[PATHS.metrics_gate_token]["permissions"] == "0400"
        assert files[PATHS.metrics_gate_token]["content"] == f'"~^Bearer {token}$" 1;\n'
        gate = files[PATHS.metrics_gate_config]["content"]
        assert f"listen {port};" in gate and "proxy_pass http://127.0.0.1:9999" in gate
        assert f"include {PATHS.metrics_gate_token};" in gate and token not in gate
        assert files[PATHS.metrics_gate_script]["content"] == METRICS_GATE_SOURCE.read_text()
        health = " ".join(container.prop("healthcheck")["tests"])
        assert f"/dev/tcp/127.0.0.1/{port}" in health and "GET /healthz " in health, service
        envs = " ".join(container.prop("envs", []))
        assert token not in envs and token not in " ".join(command)


# Where each server behind a gate listens instead (loopback only), as its own flags say it.
LOOPBACK_FLAGS = {
    "prometheus": "--web.listen-address=127.0.0.1:9999",
    "alertmanager": "--web.listen-address=127.0.0.1:9999",
}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_metrics_endpoint_that_cannot_check_the_token_is_behind_a_gate(stack: str) -> None:
    """R-SEC-5, exact sets: the containers run through the metrics gate are the eight servers that cannot ask for
    the token; with the three that check it themselves they are every scrape target. Each gate answers on the
    server's listener, and the server listens on 127.0.0.1 only."""
    g = graph(stack)
    containers = g.containers()
    token = uploads(containers["prometheus"])[PATHS.metrics_token]["content"]
    gated = {name for name, c in containers.items() if c.prop("entrypoints") == metrics_gate.entrypoint()}
    assert (
        gated
        == set(METRICS_GATES)
        == {
            "node_exporter",
            "postgres_exporter",
            "sql_exporter",
            "blackbox_exporter",
            "prometheus",
            "alertmanager",
            "oauth2_proxy",
            "keycloak",
        }
    )
    scraped = {job["labels"]["service"] for job in _static_configs(containers["prometheus"])}
    assert scraped == (gated - {"blackbox_exporter"}) | {"backend", "backup", "container_exporter"}
    ports = {"prometheus": 9090, "alertmanager": 9093, "oauth2_proxy": 44180, "keycloak": 9000}
    for service, port in ports.items():
        container = containers[service]
        files = uploads(container)
        gate = files[PATHS.metrics_gate_config]["content"]
        assert f"listen {port};" in gate and "proxy_pass http://127.0.0.1:9999" in gate, service
        assert files[PATHS.metrics_gate_token]["permissions"] == "0400"
        assert files[PATHS.metrics_gate_token]["content"] == f'"~^Bearer {token}$" 1;\n'
        health = " ".join(container.prop("healthcheck")["tests"])
        assert f"/dev/tcp/127.0.0.1/{port}" in health and "GET /healthz " in health, service
        command = container.prop("command")
        assert not any("0.0.0.0" in part for part in command), f"{service} listens beyond loopback: {command}"
        assert token not in " ".join(command) and token not in " ".join(container.prop("envs", []))
        if service in LOOPBACK_FLAGS:
            assert LOOPBACK_FLAGS[service] in command, command
    env = dict(item.split("=", 1) for item in containers["keycloak"].prop("envs"))
    assert (env["KC_HTTP_MANAGEMENT_HOST"], env["KC_HTTP_MANAGEMENT_PORT"]) == ("127.0.0.1", "9999")
    proxy = uploads(containers["oauth2_proxy"])["/etc/fly-potato/oauth2-proxy.cfg"]["content"]
    assert 'metrics_address = "127.0.0.1:9999"' in proxy
    # Prometheus and Alertmanager gate their metrics paths only; the others every path.
    assert (
        "location ~* ^/(metrics|federate)(/|$)"
        in uploads(containers["prometheus"])[PATHS.metrics_gate_config]["content"]
    )
    assert "location ~* ^/(metrics)(/|$)" in uploads(containers["alertmanager"])[PATHS.metrics_gate_config]["content"]


def _static_configs(prometheus: object) -> list[dict]:
    config = yaml.safe_load(uploads(prometheus)[PATHS.prometheus_config]["content"])
    return [sc for job in config["scrape_configs"] for sc in job["static_configs"] if job["job_name"] != "blackbox_tls"]


def test_the_certificate_probe_trusts_the_stacks_internal_ca() -> None:
    """R-TLS-4: the blackbox exporter receives the internal CA's certificate and verifies the edge with it."""
    g = graph("prod")
    [ca] = [r for r in g.of_type(SELF_SIGNED) if r.prop("isCaCertificate")]
    # The mocked engine's certificate of that CA resource (policy_plan.program._fake_state).
    digest = hashlib.sha256(f"{SELF_SIGNED}/{ca.name}".encode()).hexdigest()
    files = uploads(g.containers()["blackbox_exporter"])
    assert (
        files[PATHS.internal_ca]["content"] == f"-----BEGIN CERTIFICATE-----\nmock{digest}\n-----END CERTIFICATE-----\n"
    )
    module = yaml.safe_load(files[PATHS.blackbox_config]["content"])["modules"][BLACKBOX_TLS_MODULE]
    assert module["tcp"]["tls_config"] == {
        "server_name": "flypotato.example.com",
        "insecure_skip_verify": False,
        "ca_file": PATHS.internal_ca,
    }
