"""NetworkZones: one Docker network per zone of docs/requirements.md, named per stack (R-NET-4, R-OPS-3)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import pulumi
import pulumi_docker as docker

from components.catalog import Zone
from wire import STACK_LABEL, ZONE_LABEL

TYPE = "fly-potato:network:NetworkZones"


class ZoneNetworks(Protocol):
    """What a container needs of the zones: the network of a zone (a host's bridges or a swarm's overlays)."""

    def network(self, zone: Zone) -> docker.Network: ...


@dataclass(frozen=True)
class ZonesArgs:
    """Per zone: whether it is ``internal`` and its fixed subnet and gateway; the stack names the networks."""

    project: str
    stack: str
    internal: Mapping[Zone, bool]
    subnets: Mapping[Zone, str]
    gateways: Mapping[Zone, str]

    def resource_name(self, *parts: str) -> str:
        return "-".join((self.project, self.stack, *parts)).replace("_", "-")


class NetworkZones(pulumi.ComponentResource):
    """The platform's Docker networks. Inner zones are ``internal`` in prod, so they cannot reach out."""

    networks: dict[Zone, docker.Network]

    def __init__(self, name: str, args: ZonesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.networks = {}
        for zone in Zone:
            options: dict[str, str] = {}
            if zone is Zone.OPERATOR:
                # Reachable from the host's loopback via published ports, but no outbound NAT.
                options["com.docker.network.bridge.enable_ip_masquerade"] = "false"
            self.networks[zone] = docker.Network(
                f"{name}-{zone.value}",
                name=args.resource_name(zone.value),
                driver="bridge",
                internal=args.internal[zone],
                # Fixed per stack, so pg_hba and Keycloak's trusted proxies are known at preview.
                ipam_configs=[docker.NetworkIpamConfigArgs(subnet=args.subnets[zone], gateway=args.gateways[zone])],
                options=options or None,
                labels=[
                    docker.NetworkLabelArgs(label=STACK_LABEL, value=args.stack),
                    docker.NetworkLabelArgs(label=ZONE_LABEL, value=zone.value),
                ],
                opts=child,
            )
        self.names = {zone.value: network.name for zone, network in self.networks.items()}
        self.register_outputs({"names": self.names})

    def network(self, zone: Zone) -> docker.Network:
        return self.networks[zone]
