"""Where each catalog service runs on a swarm, and how many of it, from the ``swarm`` settings section.

Stateless services (backend, oauth2-proxy, nginx) run ``swarm.replicas`` tasks; nginx only on nodes of the
edge role, one per node, as it publishes host ports. Stateful services (postgres, prometheus, alertmanager,
backup) run one task on a node of the data role, where their volumes live. The rest run one task anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.catalog import SERVICES
from components.settings import SwarmConfig

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


__all__ = ["EDGE", "STATEFUL", "STATELESS", "SwarmPlacement", "placement_of"]
