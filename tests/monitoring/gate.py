"""The metrics gate as its container runs it, on loopback: ``bash metrics_gate.sh CONF -- EXPORTER ARGS``."""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from components import monitoring_config as mc
from tests.monitoring.support import Processes, tool
from tests.monitoring.test_config import settings_for
from tests.support.postgres import free_port

NGINX = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")


@dataclass
class Gate:
    service: str
    port: int
    upstream: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def nginx_bin() -> str:
    if not (Path(NGINX).is_file() and os.access(NGINX, os.X_OK)):
        pytest.fail(f"nginx not found at {NGINX}; run scripts/deps/nginx.sh (or set NGINX_BIN).", pytrace=False)
    return NGINX


def start_gate(
    processes: Processes, root: Path, paths: mc.MonitoringPaths, service: str, *, name: str | None = None
) -> Gate:
    """The exporter and its gate as its container runs them: ``bash metrics_gate.sh CONF -- EXPORTER ARGS``."""
    name = name or service
    port, upstream = free_port(), free_port()
    runtime = root / f"run-{name}"
    runtime.mkdir()
    config = root / f"gate-{name}.conf"
    config.write_text(
        mc.render_metrics_gate_config(
            service, port, paths, listen_host="127.0.0.1", upstream_port=upstream, runtime_dir=str(runtime)
        )
    )
    argv = mc.gated_exporter_argv(service, port, upstream_port=upstream)
    argv[0] = tool(service)  # the same Debian package as the image's
    env = {key: value for key, value in os.environ.items() if not key.startswith("DATA_SOURCE")}
    env["NGINX_BIN"] = nginx_bin()
    if service == "postgres_exporter":
        # No server answers there: the exporter still serves its metrics, with pg_up 0.
        env["DATA_SOURCE_NAME"] = f"postgresql://exporter@127.0.0.1:{free_port()}/postgres?sslmode=disable"
    elif service == "sql_exporter":
        sql_config = root / "sql_exporter.yml"
        settings = settings_for("dev")
        sql_config.write_text(
            mc.render_sql_exporter_config(settings, mc.sql_exporter_dsn(settings, "pw", "127.0.0.1", free_port()))
        )
        argv.append(f"-config.file={sql_config}")
    elif service == "blackbox_exporter":
        blackbox_config = root / "blackbox.yml"
        blackbox_config.write_text(mc.render_blackbox_config(settings_for("prod"), paths))
        argv.append(f"--config.file={blackbox_config}")
    process = processes.start(name, ["bash", str(mc.METRICS_GATE_SOURCE), str(config), "--", *argv], env=env)
    return Gate(service, port, upstream, process)


def request(url: str, authorization: str | None = None) -> tuple[int, dict[str, str], str]:
    headers = {"Authorization": authorization} if authorization is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()
