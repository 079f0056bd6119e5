"""The metrics gate with the real Debian exporters on loopback (R-SEC-5): each exporter listens on 127.0.0.1
behind nginx running the rendered gate configuration through monitoring/metrics_gate.sh, as in its
container. Without the stack's metrics token every path but /healthz answers 401; a real Prometheus with the
rendered scrape jobs sends the token from its file and scrapes them, and is refused without it."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from components import monitoring_config as mc
from tests.monitoring.gate import Gate, request, start_gate
from tests.monitoring.support import Processes, http_get, prometheus_query, tool, wait_for
from tests.monitoring.test_config import settings_for
from tests.support.postgres import free_port

TOKEN = "Gate0token" * 4
# A metric each exporter always serves: proof that the answer is the exporter's own metrics.
MARKERS = {
    "node_exporter": "node_exporter_build_info",
    "postgres_exporter": "pg_up",
    "sql_exporter": "go_goroutines",
    "blackbox_exporter": "blackbox_exporter_build_info",
}


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, mc.MonitoringPaths]:
    root = tmp_path_factory.mktemp("gate")
    root.chmod(0o755)  # nginx's workers run as nobody when the tests run as root
    paths = mc.PATHS.under(root)
    for path, text in (
        (paths.metrics_token, TOKEN + "\n"),
        (paths.metrics_gate_token, mc.render_metrics_gate_token(TOKEN)),
        (paths.internal_ca, ""),
    ):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    return root, paths


@pytest.fixture(scope="module")
def gates(layout: tuple[Path, mc.MonitoringPaths]) -> Iterator[dict[str, Gate]]:
    root, paths = layout
    processes = Processes(root)
    try:
        started = {service: start_gate(processes, root, paths, service) for service in mc.GATED_EXPORTERS}
        try:
            for gate in started.values():
                wait_for(f"{gate.service} behind its gate", lambda g=gate: http_get(f"{g.url}/healthz")[0] == 200)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{processes.logs()}") from None
        yield started
    finally:
        processes.stop()


@pytest.mark.parametrize("service", sorted(mc.GATED_EXPORTERS))
def test_exporter_metrics_need_the_bearer_token(gates: dict[str, Gate], service: str) -> None:
    gate = gates[service]
    refused = [
        None,
        "",
        f"Basic {TOKEN}",
        f"bearer {TOKEN}",  # the scheme as Prometheus writes it, and nothing else
        f"Bearer {TOKEN.lower()}",  # the token compares case-sensitively
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        f"Bearer  {TOKEN}",
        f"Bearer {TOKEN}, Bearer {TOKEN}",
    ]
    for authorization in refused:
        status, headers, body = request(f"{gate.url}/metrics", authorization)
        assert status == 401, f"{service}: {authorization!r} -> {status}"
        assert headers.get("WWW-Authenticate", "").startswith("Bearer"), headers
        assert MARKERS[service] not in body
    status, _, body = request(f"{gate.url}/metrics", f"Bearer {TOKEN}")
    assert status == 200 and MARKERS[service] in body, f"{service}: {status} {body[:300]}"
    # Any other path of the exporter wants the token too (its landing page, the probe endpoint, ...).
    for path in ("/", "/metrics/", "/probe?module=tls_certificate&target=127.0.0.1:1", "/-/reload"):
        assert request(f"{gate.url}{path}")[0] == 401, f"{service} {path}"


@pytest.mark.parametrize("service", sorted(mc.GATED_EXPORTERS))
def test_healthz_is_open_and_carries_no_metrics(gates: dict[str, Gate], service: str) -> None:
    status, _, body = request(f"{gates[service].url}/healthz")
    assert status == 200
    assert "# HELP" not in body and "# TYPE" not in body and MARKERS[service] not in body


def test_prometheus_scrapes_the_gated_exporters_with_the_token_file(
    gates: dict[str, Gate], layout: tuple[Path, mc.MonitoringPaths]
) -> None:
    """The rendered jobs, pointed at the gates on loopback, with and without their authorization."""
    root, paths = layout
    rendered = yaml.safe_load(mc.render_prometheus_config(settings_for("prod"), paths))
    jobs = {job["job_name"]: job for job in rendered["scrape_configs"]}
    scrape_configs = []
    for service in ("node_exporter", "postgres_exporter", "sql_exporter"):
        job = jobs[service]
        assert job["authorization"] == {"type": "Bearer", "credentials_file": paths.metrics_token}
        job["static_configs"][0]["targets"] = [f"127.0.0.1:{gates[service].port}"]
        anonymous = copy.deepcopy(job)
        anonymous["job_name"] = f"{service}_without_token"
        del anonymous["authorization"]
        scrape_configs += [job, anonymous]
    # node_exporter takes a second or more to collect on a busy host.
    fast = {"scrape_interval": "3s", "scrape_timeout": "3s", "evaluation_interval": "3s"}
    config = root / "prometheus-gates.yml"
    config.write_text(yaml.safe_dump({"global": rendered["global"] | fast, "scrape_configs": scrape_configs}))
    checked = subprocess.run(
        [tool("promtool"), "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    processes = Processes(root)
    port = free_port()
    try:
        processes.start(
            "prometheus-gates",
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
        )
        base = f"http://127.0.0.1:{port}"

        def scraped() -> dict[str, dict] | None:
            status, body = http_get(f"{base}/api/v1/targets")
            if status != 200:
                return None
            seen = {t["labels"]["job"]: t for t in json.loads(body)["data"]["activeTargets"]}
            return seen if len(seen) == 6 and all(t["health"] != "unknown" for t in seen.values()) else None

        try:
            seen = wait_for("every job scraped once", scraped, timeout=60)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{processes.logs()}") from None
        for service in ("node_exporter", "postgres_exporter", "sql_exporter"):
            assert seen[service]["health"] == "up", seen[service]["lastError"]
            refused = seen[f"{service}_without_token"]
            assert refused["health"] == "down" and "401" in refused["lastError"], refused
        assert prometheus_query(base, 'node_exporter_build_info{job="node_exporter"}')
        assert prometheus_query(base, 'pg_up{job="postgres_exporter"}')
    finally:
        processes.stop()


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def test_the_gate_goes_down_with_its_exporter(layout: tuple[Path, mc.MonitoringPaths]) -> None:
    """One exits, both stop and the script fails: the container's restart policy restarts the pair."""
    root, paths = layout
    processes = Processes(root)
    try:
        gate = start_gate(processes, root, paths, "node_exporter", name="node_exporter-crash")
        wait_for("the gate", lambda: http_get(f"{gate.url}/healthz")[0] == 200)
        exporter = next(
            child
            for child in _children(gate.process.pid)
            if "node" in Path(f"/proc/{child}/cmdline").read_text(errors="replace")
        )
        os.kill(exporter, signal.SIGKILL)
        assert gate.process.wait(timeout=20) != 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                http_get(f"{gate.url}/healthz", timeout=1)
            except OSError:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"nginx still answers on {gate.url} after its exporter died")
    finally:
        processes.stop()


def test_a_stop_signal_stops_both(layout: tuple[Path, mc.MonitoringPaths]) -> None:
    root, paths = layout
    processes = Processes(root)
    try:
        gate = start_gate(processes, root, paths, "sql_exporter", name="sql_exporter-stop")
        wait_for("the gate", lambda: http_get(f"{gate.url}/healthz")[0] == 200)
        children = _children(gate.process.pid)
        assert len(children) == 2
        gate.process.send_signal(signal.SIGTERM)
        gate.process.wait(timeout=20)
        for child in children:
            assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text()
    finally:
        processes.stop()


def test_the_gate_token_file_admits_letters_and_digits_only() -> None:
    assert mc.render_metrics_gate_token(TOKEN) == f'"~^Bearer {TOKEN}$" 1;\n'
    for bad in ("short", TOKEN + '"', TOKEN + "$", TOKEN + " x", TOKEN + ";", TOKEN + "\n"):
        with pytest.raises(ValueError, match="letters and digits"):
            mc.render_metrics_gate_token(bad)
