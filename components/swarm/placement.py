"""Where each catalog service runs on a swarm, and how many of it, from the ``swarm`` settings section.

Stateless services (backend, oauth2-proxy, nginx) run ``swarm.replicas`` tasks; nginx only on nodes of the
edge role, one per node, as it publishes host ports. Stateful services (postgres, prometheus, alertmanager,
backup) run one task on a node of the data role, where their volumes live. The rest run one task anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi_docker as docker

from components.catalog import SERVICES, Zone
from components.settings import Settings, SwarmConfig
from components.swarm.zones import SwarmZonesArgs

STATELESS = frozenset({"backend", "oauth2_proxy", "nginx"})
STATEFUL = frozenset({"postgres", "prometheus", "alertmanager", "backup"})
EDGE = frozenset({"nginx"})


@dataclass(frozen=True)
class SwarmPlacement:
    replicas: int
    constraints: tuple[str, ...] = ()
    max_replicas_per_node: int | None = None


def placement_of(swarm: SwarmConfig, service: str) -> SwarmPlacement:
    if service not in SERVICES:
        raise ValueError(f"service {service!r} is not in the catalog (components/catalog.py)")
    if service in EDGE:
        return SwarmPlacement(swarm.replicas, (swarm.constraint(swarm.edge_role),), max_replicas_per_node=1)
    if service in STATELESS:
        return SwarmPlacement(swarm.replicas)
    if service in STATEFUL:
        return SwarmPlacement(1, (swarm.constraint(swarm.data_role),))
    return SwarmPlacement(1)


def zones_args_of(settings: Settings) -> SwarmZonesArgs:
    """The stack's overlay zones: internal as the host's bridges are, encrypted unless ``swarm.encrypt_overlays``
    is off (a kernel without ESP)."""
    return SwarmZonesArgs(
        project=settings.project,
        stack=settings.stack,
        internal=dict(settings.zone_internal),
        encrypted=settings.raw.swarm.encrypt_overlays,
        # No operator zone on swarm: a publish binds every address of a node, so operators come in through an
        # SSH tunnel (R-NET-1, R-NET-2), not a loopback-only network.
        zones=tuple(zone for zone in Zone if zone is not Zone.OPERATOR),
    )


def manager_provider(settings: Settings) -> docker.Provider:
    """The Docker provider of the swarm's manager (``swarm.docker_host``), for the components' ``opts``."""
    host = settings.raw.swarm.docker_host
    if host is None:
        raise ValueError("swarm.docker_host is not set; the settings refuse target = swarm without it")
    return docker.Provider("swarm-manager", host=host)


__all__ = ["EDGE", "STATEFUL", "STATELESS", "SwarmPlacement", "manager_provider", "placement_of", "zones_args_of"]
