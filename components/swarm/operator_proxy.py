"""OperatorProxy: the one way into a swarm's Postgres and Keycloak for operators and the Pulumi providers.

No swarm service publishes them: a swarm publish binds every address of a node (R-NET-1, R-NET-2). Instead a
hardened nginx (stream module) runs as a plain container on the **manager**, attached to the operator zone's
internal overlay (which only postgres and keycloak join), and publishes their listeners on the manager's
127.0.0.1 only. Operators and the providers reach them through an SSH tunnel to the manager
(``ssh -N -L 127.0.0.1:PORT:127.0.0.1:PORT user@manager``), which the stack's ``operator_endpoints`` point at.

The proxy has a fixed address in the operator overlay, so Postgres' pg_hba admits the providers from exactly
that address. It resolves the services' names (endpoint mode dnsrr: the tasks' addresses) through Docker's
embedded DNS on every connection, so a rescheduled task is found again. The container needs a non-internal
network to publish at all: a local bridge on the manager without outbound NAT, labelled as the operator zone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.catalog import Resources, Zone
from components.hardened_container import docker_cpus
from components.swarm.zones import SwarmZones
from wire import PROJECT_LABEL, SERVICE_LABEL, STACK_LABEL, ZONE_LABEL, ZONES_LABEL

TYPE = "fly-potato:swarm:OperatorProxy"
SERVICE = "operator_proxy"
USER = "10040:10040"  # the nginx image's own user (components/catalog.py: nginx)
RESOLVER = "127.0.0.11"
LOG_OPTS = {"max-size": "10m", "max-file": "5"}
MIB = 1024 * 1024


def proxy_address(operator_subnet: str) -> str:
    """The proxy's fixed address in the operator overlay: the subnet's last host (Docker hands out from the
    bottom), so pg_hba can name it."""
    network = ipaddress.ip_network(operator_subnet)
    return str(network.broadcast_address - 1)


@dataclass(frozen=True)
class Forward:
    """One listener: ``127.0.0.1:host_port`` on the manager -> ``target_host:target_port`` in the overlay."""

    name: str
    host_port: int
    target_host: str
    target_port: int


@dataclass(frozen=True)
class OperatorProxyArgs:
    project: str
    stack: str
    image: pulumi.Input[str]  # REGISTRY/REPO@sha256:…, pulled onto the manager
    operator_subnet: str
    forwards: tuple[Forward, ...]
    resources: Resources = field(default_factory=lambda: Resources(cpus=0.25, memory_mb=64, pids=64))

    def resource_name(self, *parts: str) -> str:
        return "-".join((self.project, self.stack, *parts)).replace("_", "-")


def render_conf(forwards: tuple[Forward, ...]) -> str:
    """nginx.conf of the proxy: stream servers only, names resolved per connection."""
    servers = "\n".join(
        f"    server {{ listen {f.target_port}; set $upstream_{f.name} {f.target_host}:{f.target_port}; "
        f"proxy_pass $upstream_{f.name}; proxy_connect_timeout 5s; }}"
        for f in forwards
    )
    return (
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n"
        "worker_processes 1;\npid /tmp/nginx.pid;\nerror_log stderr warn;\n"
        "events { worker_connections 256; }\n"
        "stream {\n"
        f"    resolver {RESOLVER} valid=5s ipv6=off;\n"
        "    resolver_timeout 3s;\n"
        f"{servers}\n"
        "}\n"
    )


class OperatorProxy(pulumi.ComponentResource):
    """Pass the manager's ``docker.Provider`` in ``opts`` (``providers``)."""

    def __init__(
        self, name: str, args: OperatorProxyArgs, zones: SwarmZones, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels: Mapping[str, str] = {
            STACK_LABEL: args.stack,
            PROJECT_LABEL: args.project,
            SERVICE_LABEL: SERVICE,
            ZONES_LABEL: Zone.OPERATOR.value,
        }
        self.image = docker.RemoteImage(f"{name}-image", name=args.image, keep_locally=True, opts=child)
        # Docker publishes no port of a container on internal networks only: this bridge is what it publishes
        # through, and it does no outbound NAT (the same options as the host's operator zone).
        self.publish_network = docker.Network(
            f"{name}-publish",
            name=args.resource_name("operator", "publish"),
            driver="bridge",
            internal=False,
            options={"com.docker.network.bridge.enable_ip_masquerade": "false"},
            labels=[
                docker.NetworkLabelArgs(label=STACK_LABEL, value=args.stack),
                docker.NetworkLabelArgs(label=PROJECT_LABEL, value=args.project),
                docker.NetworkLabelArgs(label=ZONE_LABEL, value=Zone.OPERATOR.value),
            ],
            opts=child,
        )
        self.address = proxy_address(args.operator_subnet)
        conf = render_conf(args.forwards)
        probe = " && ".join(f"exec 3<>/dev/tcp/127.0.0.1/{f.target_port} && exec 3>&-" for f in args.forwards[:1])
        self.container = docker.Container(
            name,
            name=args.resource_name(SERVICE),
            image=args.image,  # by digest, as the manager pulled it (the RemoteImage above)
            # The config is plain text (no secret): written to the tmpfs at start, as the root filesystem is read-only.
            entrypoints=["/bin/sh", "-c"],
            command=['printf "%s" "$0" > /tmp/nginx.conf && exec nginx -c /tmp/nginx.conf -g "daemon off;"', conf],
            user=USER,
            read_only=True,
            tmpfs={"/tmp": "rw,noexec,nosuid,size=16m,uid=10040,gid=10040"},
            privileged=False,
            capabilities=docker.ContainerCapabilitiesArgs(drops=["ALL"]),
            security_opts=["no-new-privileges:true"],
            memory=args.resources.memory_mb,
            memory_swap=args.resources.memory_mb,
            cpus=docker_cpus(args.resources.cpus),
            ulimits=[
                docker.ContainerUlimitArgs(name="nofile", soft=1024, hard=1024),
                docker.ContainerUlimitArgs(name="nproc", soft=args.resources.pids, hard=args.resources.pids),
            ],
            healthcheck=docker.ContainerHealthcheckArgs(
                tests=["CMD", "bash", "-c", probe],
                interval="10s",
                timeout="5s",
                retries=6,
                start_period="10s",
            ),
            restart="unless-stopped",
            wait=True,
            wait_timeout=60,
            log_driver="json-file",
            log_opts=LOG_OPTS,
            ports=[
                docker.ContainerPortArgs(internal=f.target_port, external=f.host_port, ip="127.0.0.1")
                for f in args.forwards
            ],
            networks_advanced=[
                docker.ContainerNetworksAdvancedArgs(
                    name=zones.network(Zone.OPERATOR).name, ipv4_address=self.address, aliases=["operator-proxy"]
                ),
                docker.ContainerNetworksAdvancedArgs(name=self.publish_network.name),
            ],
            labels=[docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(labels.items())],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.image]),
        )
        self.register_outputs({"container": self.container.name, "address": self.address})


__all__ = ["Forward", "OperatorProxy", "OperatorProxyArgs", "proxy_address", "render_conf"]
