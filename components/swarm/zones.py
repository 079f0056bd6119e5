"""SwarmZones: one overlay network per zone of docs/requirements.md on a Docker Swarm (R-NET-4, R-OPS-3).

The swarm counterpart of ``NetworkZones``: the same zones and names, ``internal`` where the host's bridges are
internal, attachable (a one-off task or an operator's container may join), and encrypted (IPsec between nodes)
unless the swarm's kernels lack ESP. Subnets come from the swarm's address pool unless given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_docker as docker

from components.catalog import Zone
from wire import PROJECT_LABEL, STACK_LABEL, ZONE_LABEL

TYPE = "fly-potato:swarm:SwarmZones"
# Docker's overlay option for IPsec between nodes; its value is ignored, its presence counts.
ENCRYPTED = "encrypted"


@dataclass(frozen=True)
class SwarmZonesArgs:
    """Per zone whether it is ``internal``; the stack names the networks ``<project>-<stack>-<zone>``."""

    project: str
    stack: str
    internal: Mapping[Zone, bool]
    encrypted: bool = True
    zones: Sequence[Zone] = tuple(Zone)
    subnets: Mapping[Zone, str] = field(default_factory=dict)  # unset: the swarm's default address pool

    def network_name(self, zone: Zone) -> str:
        return "-".join((self.project, self.stack, zone.value)).replace("_", "-")


class SwarmZones(pulumi.ComponentResource):
    """The platform's overlay networks. Pass the swarm manager's ``docker.Provider`` in ``opts``."""

    networks: dict[Zone, docker.Network]

    def __init__(self, name: str, args: SwarmZonesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(TYPE, name, None, opts)
        self.internal = {zone: bool(args.internal.get(zone, False)) for zone in args.zones}
        self.networks = {}
        for zone in args.zones:
            subnet = args.subnets.get(zone)
            self.networks[zone] = docker.Network(
                f"{name}-{zone.value}",
                name=args.network_name(zone),
                driver="overlay",
                attachable=True,
                internal=self.internal[zone],
                options={ENCRYPTED: "true"} if args.encrypted else None,
                ipam_configs=[docker.NetworkIpamConfigArgs(subnet=subnet)] if subnet else None,
                labels=[
                    docker.NetworkLabelArgs(label=PROJECT_LABEL, value=args.project),
                    docker.NetworkLabelArgs(label=STACK_LABEL, value=args.stack),
                    docker.NetworkLabelArgs(label=ZONE_LABEL, value=zone.value),
                ],
                # Networks are immutable in Docker: a change replaces them, after their services let go.
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.names = {zone.value: network.name for zone, network in self.networks.items()}
        self.register_outputs({"names": self.names})

    def network(self, zone: Zone) -> docker.Network:
        if zone not in self.networks:
            raise ValueError(f"zone {zone.value} has no overlay network here; add it to SwarmZonesArgs.zones")
        return self.networks[zone]


__all__ = ["ENCRYPTED", "SwarmZones", "SwarmZonesArgs"]
