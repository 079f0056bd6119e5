"""The throwaway Pulumi program the swarm tier deploys onto the lab with components.swarm (``__main__`` of a
project in a temp folder; PYTHONPATH is the checkout). Config ``lab:*`` carries the manager, the image
references by digest, the published port and the secret's content.

- zones ``edge`` (not internal: the host-mode port needs it) and ``app`` (internal), unencrypted (no ESP);
- ``backend``: python's http.server on the internal zone only, 2 replicas anywhere (one per node with
  ``lab:backend_spread``), serving a Swarm config;
- ``nginx``: 2 replicas on the edge nodes (one per node), 8443 published in host mode on lab:port, a Swarm
  config (nginx.conf) and a Swarm secret (0400), proxying /api/ to the backend over the overlay (dnsrr, the name
  looked up again every second, a dead address skipped for the next one after a 1 s connect timeout).
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from components.catalog import Resources, Zone
from components.swarm import (
    HardenedService,
    HardenedServiceArgs,
    HostPort,
    Probe,
    ServiceFile,
    SwarmZones,
    SwarmZonesArgs,
)

BACKEND_PAGE = "backend over the overlay\n"
SECRET_PATH = "/etc/fly-potato/secrets/token"
NGINX_CONF = """
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr warn;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    # Docker's embedded DNS; the backend's name resolves to its tasks (dnsrr), looked up again after 1 s, so
    # a task that is gone leaves the list within a second of the swarm dropping it from the name.
    resolver 127.0.0.11 valid=1s ipv6=off;
    resolver_timeout 2s;
    server {
        listen 8443;
        location = /healthz { return 200 "ok\\n"; }
        location /api/ {
            set $backend backend;
            proxy_pass http://$backend:8000/;
            # A task that went away (its address no longer answers, or refuses) costs at most 1 s: the
            # request goes to the next address of the name.
            proxy_connect_timeout 1s;
            proxy_read_timeout 5s;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 3;
        }
        location / { return 200 "nginx on $hostname\\n"; }
    }
}
"""


def http_probe(port: int, path: str) -> Probe:
    script = (
        f"exec 3<>/dev/tcp/127.0.0.1/{port} && "
        f"printf 'GET {path} HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"
    )
    return Probe(["CMD", "bash", "-c", script], interval="2s", timeout="2s", retries=5, start_period="5s")


def main() -> None:
    lab = pulumi.Config("lab")
    project, stack = "fly-potato", pulumi.get_stack()
    provider = docker.Provider("manager", host=lab.require("docker_host"))
    opts = pulumi.ResourceOptions(provider=provider)
    zones = SwarmZones(
        "zones",
        SwarmZonesArgs(
            project=project,
            stack=stack,
            internal={Zone.EDGE: False, Zone.APP: True},
            encrypted=lab.get_bool("encrypt_overlays") or False,
            zones=(Zone.EDGE, Zone.APP),
        ),
        opts,
    )
    backend = HardenedService(
        "backend",
        HardenedServiceArgs(
            project=project,
            stack=stack,
            service="backend",
            image=lab.require("python_image"),
            healthcheck=Probe(
                ["CMD", "python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/', timeout=2)"],
                interval="2s",
                timeout="2s",
                retries=5,
                start_period="5s",
            ),
            resources=Resources(cpus=0.25, memory_mb=64, pids=64),
            replicas=2,
            zones=(Zone.APP,),
            # lab:backend_spread: one task per node, so losing a node loses one replica at most.
            max_replicas_per_node=1 if lab.get_bool("backend_spread") else None,
            # lab:backend_port other than 8000: a release whose healthcheck fails, which the update rolls back.
            command=[
                "python3",
                "-m",
                "http.server",
                lab.get("backend_port") or "8000",
                "--directory",
                "/etc/fly-potato",
            ],
            files=(ServiceFile("/etc/fly-potato/index.html", BACKEND_PAGE),),
            stop_grace_period="10s",
            update_delay="1s",
            update_monitor="5s",
            converge_timeout="90s",
        ),
        zones,
        opts,
    )
    nginx = HardenedService(
        "nginx",
        HardenedServiceArgs(
            project=project,
            stack=stack,
            service="nginx",
            image=lab.require("nginx_image"),
            healthcheck=http_probe(8443, "/healthz"),
            resources=Resources(cpus=0.25, memory_mb=64, pids=64),
            replicas=2,
            zones=(Zone.EDGE, Zone.APP),
            constraints=("node.labels.fly-potato.role==edge",),
            max_replicas_per_node=1,
            ports=(HostPort(8443, lab.require_int("port")),),
            command=["nginx", "-c", "/etc/fly-potato/nginx.conf", "-e", "stderr", "-g", "daemon off;"],
            files=(
                ServiceFile("/etc/fly-potato/nginx.conf", NGINX_CONF),
                ServiceFile(SECRET_PATH, lab.require_secret("token"), secret=True, mode=0o400),
            ),
            stop_grace_period="10s",
            update_delay="1s",
            update_monitor="5s",
        ),
        zones,
        opts,
    )
    pulumi.export("services", {"backend": backend.name, "nginx": nginx.name})
    pulumi.export("networks", zones.names)
    pulumi.export("secret", nginx.files[1].name)
