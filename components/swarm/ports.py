"""What a swarm stack publishes, and its port matrix (the ``port_matrix`` output) as it is true on a swarm.

Only two things publish on a swarm: nginx, in host mode on each edge node that runs a task (Swarm binds every
address of the node: a service port has no host IP), and the operator proxy, on the manager's 127.0.0.1, for
Postgres and Keycloak whatever their ``publish`` setting (the providers' way in). Every other listener is
reached inside its overlays only. The platform publishes from :func:`edge_ports` and
:func:`operator_forwards`, and :func:`port_matrix` reports from the same two, so the output cannot drift from
what is declared.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from components.catalog import SERVICES, Exposure
from components.settings import Settings
from components.swarm.operator_proxy import Forward
from components.swarm.service import HostPort

EDGE_LISTENERS = ("nginx_http", "nginx_https")
EDGE_NODES = "edge_nodes"  # published_on: every edge node running a task, on every address of the node
MANAGER = "manager"  # published_on: the manager's loopback, through the operator proxy (the SSH tunnel)
EVERY_ADDRESS = "0.0.0.0"  # what a host-mode service port binds on its node
MANAGER_LOOPBACK = "127.0.0.1"


def edge_ports(settings: Settings) -> list[HostPort]:
    """nginx's host-mode ports: its listeners whose exposure is not ``none``."""
    ports, host_ports = settings.ports, settings.host_ports
    return [
        HostPort(ports[listener], host_ports[listener])
        for listener in EDGE_LISTENERS
        if settings.exposure[listener] is not Exposure.NONE
    ]


def operator_forwards(settings: Settings) -> tuple[Forward, ...]:
    """The operator proxy's listeners on the manager's loopback -> Postgres and Keycloak in the operator overlay."""
    ports, host_ports = settings.ports, settings.host_ports
    return tuple(
        Forward(name, host_ports[name], SERVICES[name].docker_alias, ports[name]) for name in ("postgres", "keycloak")
    )


def port_matrix(settings: Settings, deployed: Collection[str]) -> list[dict[str, Any]]:
    """The host's port-matrix rows (``Settings.port_matrix``) for the services the swarm runs, with where each
    listener is really published: ``host_ip``/``host_port`` and ``published_on`` (``edge_nodes``, ``manager``,
    or None when it is reached inside the overlays only)."""
    edge = {(p.target, p.published) for p in edge_ports(settings)}
    manager = {f.name: f for f in operator_forwards(settings)}
    rows = []
    for row in settings.port_matrix():
        if row.service not in deployed:
            continue
        where: tuple[str | None, int | None, str | None] = (None, None, None)
        if row.listener in EDGE_LISTENERS and (row.container_port, settings.host_ports[row.listener]) in edge:
            where = (EVERY_ADDRESS, settings.host_ports[row.listener], EDGE_NODES)
        elif row.listener in manager:
            where = (MANAGER_LOOPBACK, manager[row.listener].host_port, MANAGER)
        host_ip, host_port, published_on = where
        rows.append(
            row.model_dump(exclude={"listener"})
            | {"host_ip": host_ip, "host_port": host_port, "listener": row.listener, "published_on": published_on}
        )
    return rows


__all__ = ["EDGE_NODES", "MANAGER", "edge_ports", "operator_forwards", "port_matrix"]
