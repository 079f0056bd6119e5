"""The certificate probe against a real TLS server (R-TLS-4): Debian's nginx serves a certificate for the
stack's domain signed by a test CA; the real blackbox_exporter, behind its metrics gate, runs the rendered
module with that CA as the stack's internal CA, and a real Prometheus scrapes the rendered ``blackbox_tls``
job with the token file. The probe succeeds and reports the certificate's real expiry, which the
CertExpirySoon rule reads; with any other CA as the trust anchor the handshake is refused
(CertProbeFailed), where skipping verification would have reported an unverified certificate."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from components import monitoring_config as mc
from tests.edge.conftest import DOMAIN, Pki, make_pki
from tests.monitoring.gate import Gate, nginx_bin, request, start_gate
from tests.monitoring.support import Processes, http_get, prometheus_query, tool, wait_for
from tests.monitoring.test_config import settings_for
from tests.support.postgres import free_port

TOKEN = "Probe0token" * 4


@dataclass
class Setup:
    tls_target: str
    not_after: dt.datetime
    trusted: Gate  # blackbox with the stack's CA
    foreign: Gate  # blackbox with another CA as its trust anchor
    root: Path
    paths: mc.MonitoringPaths


def _layout(root: Path, ca: Path) -> mc.MonitoringPaths:
    root.mkdir(mode=0o755)
    paths = mc.PATHS.under(root)
    for path, text in (
        (paths.metrics_token, TOKEN + "\n"),
        (paths.metrics_gate_token, mc.render_metrics_gate_token(TOKEN)),
        (paths.internal_ca, ca.read_text()),
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return paths


def _not_after(chain: Path) -> dt.datetime:
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-enddate", "-in", str(chain)], capture_output=True, text=True, check=True
    ).stdout
    return dt.datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("probe")
    root.chmod(0o755)  # nginx's workers run as nobody when the tests run as root
    stack_pki: Pki = make_pki(root / "stack-pki")
    foreign_pki: Pki = make_pki(root / "foreign-pki")
    processes = Processes(root)
    try:
        port = free_port()
        conf = root / "tls-server.conf"
        temp = "\n".join(f"{kind}_temp_path {root}/tls-{kind};" for kind in ("client_body", "proxy", "fastcgi"))
        conf.write_text(
            f"""pid {root}/tls-server.pid;
worker_processes 1;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    {temp}
    uwsgi_temp_path {root}/tls-uwsgi;
    scgi_temp_path {root}/tls-scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {DOMAIN};
        ssl_certificate {stack_pki.chain};
        ssl_certificate_key {stack_pki.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""
        )
        processes.start("tls-server", [nginx_bin(), "-e", "stderr", "-c", str(conf), "-g", "daemon off;"])
        trusted_paths = _layout(root / "trusted", stack_pki.ca)
        foreign_paths = _layout(root / "foreign", foreign_pki.ca)
        trusted = start_gate(processes, root / "trusted", trusted_paths, "blackbox_exporter")
        foreign = start_gate(processes, root / "foreign", foreign_paths, "blackbox_exporter")
        try:
            for gate in (trusted, foreign):
                wait_for("blackbox behind its gate", lambda g=gate: http_get(f"{g.url}/healthz")[0] == 200)
            wait_for("the TLS server", lambda: _handshake(port))
        except AssertionError as error:
            raise AssertionError(f"{error}\n{processes.logs()}") from None
        yield Setup(f"127.0.0.1:{port}", _not_after(stack_pki.chain), trusted, foreign, root, trusted_paths)
    finally:
        processes.stop()


def _handshake(port: int) -> bool:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return True


def probe(gate: Gate, target: str) -> dict[str, float]:
    status, _, body = request(f"{gate.url}/probe?module={mc.BLACKBOX_TLS_MODULE}&target={target}", f"Bearer {TOKEN}")
    assert status == 200, body
    values = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_the_probe_verifies_the_edge_with_the_internal_ca_and_reads_its_expiry(setup: Setup) -> None:
    values = probe(setup.trusted, setup.tls_target)
    assert values["probe_success"] == 1, values
    assert values["probe_ssl_earliest_cert_expiry"] == setup.not_after.timestamp()
    # Chain verified up to the stack's CA: blackbox reports the verified chain's expiry too.
    assert any(name.startswith("probe_ssl_last_chain_expiry_timestamp_seconds") for name in values), values


def test_with_any_other_ca_the_probe_fails(setup: Setup) -> None:
    values = probe(setup.foreign, setup.tls_target)
    assert values["probe_success"] == 0, values
    assert "probe_ssl_earliest_cert_expiry" not in values


def test_the_probe_endpoint_wants_the_token(setup: Setup) -> None:
    status, _, body = request(f"{setup.trusted.url}/probe?module={mc.BLACKBOX_TLS_MODULE}&target={setup.tls_target}")
    assert status == 401 and "probe_success" not in body


def test_prometheus_sees_the_real_expiry_through_the_rendered_job(setup: Setup) -> None:
    """The rendered blackbox_tls job (token from its file) with its targets on loopback; the CertExpirySoon
    expression evaluates to the certificate's days left, and CertProbeFailed's is empty."""
    settings = settings_for("prod")
    rendered = yaml.safe_load(mc.render_prometheus_config(settings, setup.paths))
    job = next(j for j in rendered["scrape_configs"] if j["job_name"] == "blackbox_tls")
    assert job["authorization"] == {"type": "Bearer", "credentials_file": setup.paths.metrics_token}
    job["static_configs"][0]["targets"] = [setup.tls_target]
    job["relabel_configs"][-1]["replacement"] = f"127.0.0.1:{setup.trusted.port}"
    fast = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}
    config = setup.root / "prometheus-probe.yml"
    config.write_text(yaml.safe_dump({"global": rendered["global"] | fast, "scrape_configs": [job]}))
    checked = subprocess.run(
        [tool("promtool"), "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = {
        rule["alert"]: rule["expr"]
        for group in yaml.safe_load(mc.render_rules(settings))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    processes = Processes(setup.root)
    port = free_port()
    tsdb = setup.root / "tsdb-probe"
    try:
        processes.start(
            "prometheus-probe",
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tsdb}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
        )
        base = f"http://127.0.0.1:{port}"
        try:
            success = wait_for(
                "probe_success", lambda: prometheus_query(base, 'probe_success{job="blackbox_tls"}'), timeout=60
            )
        except AssertionError as error:
            raise AssertionError(f"{error}\n{processes.logs()}") from None
        assert success[0]["value"][1] == "1", success
        assert success[0]["metric"]["endpoint"] == settings.public_url
        days_left = (setup.not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400
        expiry = prometheus_query(base, rules["CertExpirySoon"].split("<")[0].strip())
        assert abs(float(expiry[0]["value"][1]) - days_left) < 0.1, expiry
        assert prometheus_query(base, rules["CertExpirySoon"]) == []  # 90 days left: quiet
        assert prometheus_query(base, rules["CertProbeFailed"]) == []
        status, body = http_get(f"{base}/api/v1/targets")
        assert status == 200 and json.loads(body)["data"]["activeTargets"][0]["health"] == "up", body
    finally:
        processes.stop()
        shutil.rmtree(tsdb, ignore_errors=True)
