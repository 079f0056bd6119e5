"""The metrics gate (R-SEC-5): nginx in front of a server whose metrics cannot ask for a bearer token.

The server listens on 127.0.0.1 inside its container; nginx (Debian's, installed in the image) answers on the
server's listener and wants ``Authorization: Bearer <metrics token>``, read from a secret file, on the gated
paths. ``/healthz`` answers the server's own health page (no metrics) without the token, for the container's
healthcheck. ``monitoring/metrics_gate.sh`` runs both and exits when either does, so the restart policy
restarts the pair.

Two kinds of gates:

- every path wants the token (``token_paths`` None): the Debian exporters, oauth2-proxy's metrics server and
  Keycloak's management interface serve nothing anyone but Prometheus needs;
- only the metrics paths want it (Prometheus' ``/metrics`` and ``/federate``, Alertmanager's ``/metrics``): their
  UI and API stay as they were, for operators on the loopback publish and for Prometheus → Alertmanager.

This module is pure (known at preview) and imports no service module, so the auth and monitoring groups both use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pulumi

from components.hardened_container import CONFIG_DIR, SECRETS_DIR, ContainerFile, Healthcheck, http_probe

SOURCE = Path(__file__).resolve().parent.parent / "monitoring" / "metrics_gate.sh"
SCRIPT_PATH = f"{CONFIG_DIR}/metrics_gate.sh"
CONFIG_PATH = f"{CONFIG_DIR}/metrics-gate.conf"
# The token as nginx reads it (a `map` entry): secret, like the token file Prometheus sends from.
TOKEN_PATH = f"{SECRETS_DIR}/metrics-gate-token.conf"

HEALTH_PATH = "/healthz"
RUNTIME_DIR = "/tmp"  # the containers' own tmpfs: nginx's pid file and buffers
_UPSTREAM_PORTS = (9999, 9998, 9997)
_TOKEN_TEXT = re.compile(r"[A-Za-z0-9]{32,}")
_PATH_TEXT = re.compile(r"/[a-z0-9_-]+")


@dataclass(frozen=True)
class MetricsGate:
    """A server behind the gate."""

    service: str
    listener: str  # the catalog listener the gate answers on (the server's public port before the gate)
    health_path: str  # a page of the server without metrics, 200 while it runs
    # None: every path wants the token. Otherwise only these paths (and anything below them) do.
    token_paths: tuple[str, ...] | None = None
    # The server's health page is on another of its loopback listeners (oauth2-proxy: the metrics server
    # serves /metrics alone, /ping is on the proxy's port); a catalog listener name, or None for the upstream.
    health_listener: str | None = None

    def __post_init__(self) -> None:
        if self.token_paths is not None and (
            not self.token_paths or not all(_PATH_TEXT.fullmatch(p) for p in self.token_paths)
        ):
            raise ValueError(f"{self.service}: token_paths are single path segments like /metrics")


def upstream_port(listen_port: int, *taken: int) -> int:
    """The server's loopback port behind the gate: any port but the gate's own and the container's others."""
    return next(port for port in _UPSTREAM_PORTS if port != listen_port and port not in taken)


def render_token(token: str) -> str:
    """The nginx ``map`` entry that admits ``Authorization: Bearer <token>`` (exact, case-sensitive match)."""
    if not _TOKEN_TEXT.fullmatch(token):
        raise ValueError("the metrics token must be 32 or more letters and digits")
    return f'"~^Bearer {token}$" 1;\n'


def render_config(
    gate: MetricsGate,
    listen_port: int,
    *,
    token_file: str = TOKEN_PATH,
    listen_host: str = "",
    upstream: int | None = None,
    health_port: int | None = None,
    runtime_dir: str = RUNTIME_DIR,
) -> str:
    """nginx configuration of the gate in front of ``gate.service`` (answering on ``listen_port``)."""
    server = f"http://127.0.0.1:{upstream or upstream_port(listen_port)}"
    health = f"http://127.0.0.1:{health_port}" if health_port is not None else server
    listen = f"{listen_host}:{listen_port}" if listen_host else str(listen_port)
    temp = "\n".join(
        f"    {kind}_temp_path {runtime_dir}/gate-{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    refuse = """            if ($metrics_authorized != 1) {
                add_header WWW-Authenticate 'Bearer realm="metrics"' always;
                return 401;
            }
"""
    if gate.token_paths is None:
        scope = f"every path but {HEALTH_PATH}"
        limits = "    client_max_body_size 1k;"
        locations = f"""        location / {{
{refuse}            proxy_pass {server};
        }}"""
    else:
        scope = " and ".join(gate.token_paths) + " (and below them)"
        # nginx matches locations on the normalized path (percent-decoding, merged slashes, dot segments) and
        # case-insensitively here, so no spelling of a metrics path reaches the server without the token.
        alternatives = "|".join(p.lstrip("/") for p in gate.token_paths)
        # The rest is the server's UI and API as before: alert batches, long queries.
        limits = "    client_max_body_size 8m;\n    proxy_read_timeout 150s;"
        locations = f"""        location ~* ^/({alternatives})(/|$) {{
{refuse}            proxy_pass {server};
        }}

        location / {{
            proxy_pass {server};
        }}"""
    return f"""# Metrics gate of {gate.service} (R-SEC-5): the server listens on {server} only; this answers on its
# listener and wants the stack's metrics token as a bearer token on {scope}.
pid {runtime_dir}/metrics-gate.pid;
worker_processes 1;
error_log stderr warn;

events {{
    worker_connections 64;
}}

http {{
    access_log off;
    server_tokens off;
{limits}
{temp}

    map $http_authorization $metrics_authorized {{
        default 0;
        include {token_file};
    }}

    server {{
        listen {listen};

        location = {HEALTH_PATH} {{
            proxy_pass {health}{gate.health_path};
        }}

{locations}
    }}
}}
"""


def entrypoint() -> list[str]:
    """The container's entrypoint: the gate script; the command is the server and its flags."""
    return ["bash", SCRIPT_PATH, CONFIG_PATH, "--"]


def files(
    gate: MetricsGate,
    listen_port: int,
    token: pulumi.Input[str],
    *,
    upstream: int | None = None,
    health_port: int | None = None,
) -> list[ContainerFile]:
    """The script, the gate's configuration and its token file (secret, 0400) for the server's container."""
    return [
        ContainerFile(SCRIPT_PATH, SOURCE.read_text()),
        ContainerFile(CONFIG_PATH, render_config(gate, listen_port, upstream=upstream, health_port=health_port)),
        ContainerFile(TOKEN_PATH, pulumi.Output.from_input(token).apply(render_token), secret=True, mode="0400"),
    ]


def healthcheck(listen_port: int, *, start_period: str = "20s", retries: int = 6) -> Healthcheck:
    """The gate's /healthz: nginx answers and the server behind it is healthy."""
    return http_probe(listen_port, HEALTH_PATH, start_period=start_period, retries=retries)
