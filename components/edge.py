"""The edge zone: nginx, the only container that may publish on a routable address (R-NET-1, R-NET-4)."""

from __future__ import annotations

import pulumi

from components.container import CONFIG_DIR, ContainerFile, HardenedContainer, HardenedContainerArgs, http_probe
from components.network import NetworkZones
from components.settings import Settings

TYPE = "fly-potato:edge:EdgeServices"

NGINX_CONF = f"{CONFIG_DIR}/nginx.conf"


def render_minimal_nginx_conf(settings: Settings) -> str:
    """A plain-HTTP reverse proxy; the TLS edge replaces it in prod."""
    http = settings.ports["nginx_http"]
    backend = settings.ports["backend"]
    return f"""worker_processes auto;
pid /tmp/nginx.pid;
error_log stderr warn;
events {{ worker_connections 1024; }}
http {{
    access_log /dev/stdout;
    client_body_temp_path /tmp/client_body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server_tokens off;
    resolver 127.0.0.11 valid=10s;
    server {{
        listen {http};
        server_name {settings.domain};
        location = /healthz {{ return 200 "ok\\n"; }}
        location /api/ {{ set $u http://backend:{backend}; proxy_pass $u; }}
    }}
}}
"""


class EdgeServices(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        settings: Settings,
        zones: NetworkZones,
        *,
        nginx_conf: pulumi.Input[str] | None = None,
        extra_files: list[ContainerFile] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        conf = nginx_conf if nginx_conf is not None else render_minimal_nginx_conf(settings)
        self.nginx = HardenedContainer(
            f"{name}-nginx",
            HardenedContainerArgs(
                service="nginx",
                image=settings.images["nginx"],
                command=["nginx", "-c", NGINX_CONF, "-g", "daemon off;"],
                files=[ContainerFile(NGINX_CONF, conf), *(extra_files or [])],
                # Non-root nginx binds 80/443 through the unprivileged port range, not a capability.
                sysctls={"net.ipv4.ip_unprivileged_port_start": "0"},
                healthcheck=http_probe(settings.ports["nginx_http"], "/healthz"),
            ),
            settings,
            zones,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"nginx": self.nginx.name})
