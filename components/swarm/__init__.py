"""The platform on a Docker Swarm (``target: swarm``): overlay zones, hardened replicated services, their
configs and secrets, and where each service runs. Every component takes the manager's ``docker.Provider``
through its ``opts`` (``docker.Provider(host=settings.raw.swarm.docker_host)``)."""

from components.swarm.files import CONFIG_DIR, SECRETS_DIR, ServiceFile, content_name
from components.swarm.placement import (
    STATEFUL,
    STATELESS,
    SwarmPlacement,
    manager_provider,
    placement_of,
    zones_args_of,
)
from components.swarm.service import HardenedService, HardenedServiceArgs, HostPort, Probe
from components.swarm.zones import SwarmZones, SwarmZonesArgs

__all__ = [
    "CONFIG_DIR",
    "SECRETS_DIR",
    "STATEFUL",
    "STATELESS",
    "HardenedService",
    "HardenedServiceArgs",
    "HostPort",
    "Probe",
    "ServiceFile",
    "SwarmPlacement",
    "SwarmZones",
    "SwarmZonesArgs",
    "content_name",
    "manager_provider",
    "placement_of",
    "zones_args_of",
]
