"""Per-container restart counts for Prometheus, read from the Docker Engine API (ContainerRestarts alert).

Docker exports no restart counter of its own: the engine's metrics endpoint has only engine-wide action
counts, and cAdvisor is not packaged by Debian. The engine does keep ``RestartCount`` per container (how
often the restart policy restarted it), so this exporter reads it with two GET calls per scrape:

    GET /containers/json?all=1&filters={"label":["org.flypotato.stack=<stack>"]}
    GET /containers/<id>/json

Standard library only, so it runs on the platform's Python image. It never issues anything but GET, but
the socket it talks to is root-equivalent whatever the mount mode: see components/monitoring.py for the
trade-off and the confinement of this container.

Environment: EXPORTER_STACK (required: only containers of this stack are reported), EXPORTER_PORT (9417),
EXPORTER_ADDRESS (0.0.0.0), EXPORTER_DOCKER_SOCKET (/var/run/docker.sock), EXPORTER_TOKEN_FILE (bearer token
required on /metrics, R-SEC-5). ``/healthz`` is open for the container healthcheck.
"""

from __future__ import annotations

import hmac
import http.client
import json
import logging
import os
import socket
import sys
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("container_exporter")

STACK_LABEL = "org.flypotato.stack"
SERVICE_LABEL = "org.flypotato.service"


class DockerUnavailableError(RuntimeError):
    """The Docker API did not answer as expected."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


@dataclass(frozen=True)
class DockerReader:
    """Read-only client of the Docker Engine API on a unix socket: GET is the only method it has."""

    socket_path: str
    timeout: float = 5.0

    def get(self, path: str) -> Any:
        connection = _UnixConnection(self.socket_path, self.timeout)
        try:
            connection.request("GET", path, headers={"Accept": "application/json"})
            response = connection.getresponse()
            body = response.read()
        except OSError as exc:
            raise DockerUnavailableError(f"Docker API at {self.socket_path}: {exc}") from exc
        finally:
            connection.close()
        if response.status != 200:
            raise DockerUnavailableError(f"Docker API GET {path.split('?')[0]} answered {response.status}")
        return json.loads(body)

    def containers(self, stack: str) -> list[dict[str, Any]]:
        filters = urllib.parse.quote(json.dumps({"label": [f"{STACK_LABEL}={stack}"]}))
        listed = self.get(f"/containers/json?all=1&filters={filters}")
        return [self.get(f"/containers/{item['Id']}/json") for item in listed]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(containers: list[dict[str, Any]]) -> str:
    """Exposition text for the inspected containers."""
    families: dict[str, tuple[str, str, list[str]]] = {
        "flypotato_container_restarts_total": (
            "counter",
            "Times the restart policy restarted the container (Docker RestartCount).",
            [],
        ),
        "flypotato_container_running": ("gauge", "1 if the container is running.", []),
        "flypotato_container_healthy": ("gauge", "1 if the container's healthcheck passes (only with one).", []),
        "flypotato_container_oom_killed": ("gauge", "1 if the container's last exit was an OOM kill.", []),
    }
    for item in sorted(containers, key=lambda c: c.get("Name", "")):
        labels = (item.get("Config") or {}).get("Labels") or {}
        state = item.get("State") or {}
        name = item.get("Name", "").lstrip("/")
        label_text = f'container="{_escape(name)}",service="{_escape(labels.get(SERVICE_LABEL, ""))}"'
        families["flypotato_container_restarts_total"][2].append(f"{{{label_text}}} {int(item.get('RestartCount', 0))}")
        families["flypotato_container_running"][2].append(f"{{{label_text}}} {1 if state.get('Running') else 0}")
        health = (state.get("Health") or {}).get("Status")
        if health:
            families["flypotato_container_healthy"][2].append(f"{{{label_text}}} {1 if health == 'healthy' else 0}")
        families["flypotato_container_oom_killed"][2].append(f"{{{label_text}}} {1 if state.get('OOMKilled') else 0}")
    lines: list[str] = []
    for metric, (kind, help_text, samples) in families.items():
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}"]
        lines += [f"{metric}{sample}" for sample in samples]
    return "\n".join(lines) + "\n"


def make_server(address: str, port: int, reader: DockerReader, stack: str, token: str | None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._send(200, "ok\n")
                return
            if self.path != "/metrics":
                self._send(404, "not found\n")
                return
            if token is not None:
                given = self.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                    self._send(401, "bearer token required\n")
                    return
            try:
                body = render(reader.containers(stack))
            except DockerUnavailableError as exc:  # a failed scrape (up == 0) is the signal
                log.warning("%s", exc)
                self._send(503, f"{exc}\n")
                return
            self._send(200, body, "text/plain; version=0.0.4; charset=utf-8")

        def _send(self, status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return ThreadingHTTPServer((address, port), Handler)


def main(environ: dict[str, str] | None = None) -> int:
    env = dict(os.environ if environ is None else environ)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stack = env.get("EXPORTER_STACK", "")
    if not stack:
        print("EXPORTER_STACK is not set; set it to the stack whose containers to report (e.g. prod).", file=sys.stderr)
        return 2
    token = None
    token_file = env.get("EXPORTER_TOKEN_FILE")
    if token_file:
        token = open(token_file, encoding="utf-8").read().strip()  # noqa: SIM115
        if not token:
            print(f"EXPORTER_TOKEN_FILE={token_file} is empty; put the metrics bearer token there.", file=sys.stderr)
            return 2
    port = int(env.get("EXPORTER_PORT", "9417"))
    reader = DockerReader(env.get("EXPORTER_DOCKER_SOCKET", "/var/run/docker.sock"))
    server = make_server(env.get("EXPORTER_ADDRESS", "0.0.0.0"), port, reader, stack, token)
    log.info("serving restart counts of stack %s on :%d", stack, port)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
