"""The restart-count exporter against a Docker API stand-in on a unix socket, checked by promtool."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from monitoring import container_exporter as exporter
from tests.monitoring.support import http_get, run, tool

TOKEN = "x" * 40
CONTAINERS = {
    "aaa": {
        "Name": "/fly-potato-prod-backend",
        "RestartCount": 4,
        "Config": {"Labels": {"org.flypotato.stack": "prod", "org.flypotato.service": "backend"}},
        "State": {"Running": True, "OOMKilled": False, "Health": {"Status": "healthy"}},
    },
    "bbb": {
        "Name": "/fly-potato-prod-keycloak",
        "RestartCount": 0,
        "Config": {"Labels": {"org.flypotato.stack": "prod", "org.flypotato.service": "keycloak"}},
        "State": {"Running": False, "OOMKilled": True},
    },
}


class FakeDocker(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    requests: list[tuple[str, str]]


class Handler(BaseHTTPRequestHandler):
    server: FakeDocker

    def address_string(self) -> str:
        return "unix"

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))
        body: Any
        if self.path.startswith("/containers/json"):
            body = [{"Id": key} for key in CONTAINERS]
        elif self.path.startswith("/containers/") and self.path.endswith("/json"):
            body = CONTAINERS[self.path.split("/")[2]]
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def docker_api(tmp_path: Path) -> Iterator[FakeDocker]:
    server = FakeDocker(str(tmp_path / "docker.sock"), Handler)
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def serve(socket_path: str) -> tuple[Any, str]:
    server = exporter.make_server("127.0.0.1", 0, exporter.DockerReader(socket_path), "prod", TOKEN)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_restart_counts_need_the_token_and_pass_promtool(docker_api: FakeDocker, tmp_path: Path) -> None:
    server, base = serve(docker_api.server_address)
    try:
        assert http_get(f"{base}/metrics")[0] == 401
        assert http_get(f"{base}/metrics", token="wrong")[0] == 401
        assert http_get(f"{base}/healthz") == (200, "ok\n")
        status, body = http_get(f"{base}/metrics", token=TOKEN)
    finally:
        server.shutdown()
    assert status == 200
    assert 'flypotato_container_restarts_total{container="fly-potato-prod-backend",service="backend"} 4' in body
    assert 'flypotato_container_running{container="fly-potato-prod-keycloak",service="keycloak"} 0' in body
    assert 'flypotato_container_oom_killed{container="fly-potato-prod-keycloak",service="keycloak"} 1' in body
    assert 'flypotato_container_healthy{container="fly-potato-prod-backend",service="backend"} 1' in body
    lint = run([tool("promtool"), "check", "metrics"], input=body)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # Only reads, and only this stack's containers.
    assert {method for method, _ in docker_api.requests} == {"GET"}
    listing = docker_api.requests[0][1]
    assert listing.startswith("/containers/json?all=1&filters=")
    assert "org.flypotato.stack%3Dprod" in listing


def test_an_unreachable_docker_api_fails_the_scrape(tmp_path: Path) -> None:
    server, base = serve(str(tmp_path / "missing.sock"))
    try:
        status, body = http_get(f"{base}/metrics", token=TOKEN)
    finally:
        server.shutdown()
    assert status == 503 and "Docker API" in body


def test_the_exporter_refuses_to_start_without_its_stack() -> None:
    assert exporter.main({"EXPORTER_PORT": "0"}) == 2
