"""Helpers of the monitoring tests: the Prometheus tools (never skipped) and small process/HTTP utilities."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPS_HINT = (
    "run scripts/deps/monitoring.sh to install Debian's prometheus, prometheus-alertmanager and the blackbox, sql, "
    "node and postgres exporters"
)
BINARIES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "alertmanager": "prometheus-alertmanager",
    "amtool": "prometheus-alertmanager",
    "blackbox_exporter": "prometheus-blackbox-exporter",
    "sql_exporter": "prometheus-sql-exporter",
    "node_exporter": "prometheus-node-exporter",
    "postgres_exporter": "prometheus-postgres-exporter",
}
EXECUTABLES = {
    "alertmanager": "prometheus-alertmanager",
    "blackbox_exporter": "prometheus-blackbox-exporter",
    "sql_exporter": "prometheus-sql-exporter",
    "node_exporter": "prometheus-node-exporter",
    "postgres_exporter": "prometheus-postgres-exporter",
}


def tool(name: str) -> str:
    """Path of a Prometheus tool, or fail the test with the sentence that says how to get it."""
    path = shutil.which(EXECUTABLES.get(name, name))
    if path is None:
        pytest.fail(f"{name} is not installed (Debian package {BINARIES[name]}); {DEPS_HINT}.", pytrace=False)
    return path


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)


def http_get(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback http only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.3) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


def prometheus_query(base: str, expr: str) -> list[dict[str, Any]]:
    status, body = http_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, body
    return json.loads(body)["data"]["result"]


class Processes:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.running: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.root / f"{name}.log"
        handle = log.open("wb")
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=self.root)
        self.running.append((name, process, log))
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{log.read_text()[-2000:]}" for name, _, log in self.running)

    def stop(self) -> None:
        for _, process, _ in reversed(self.running):
            process.terminate()
        for _, process, _ in self.running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
