"""The deployment target (``target``: ``host`` or ``swarm``) and the ``swarm`` section, with their rules.

The target is orthogonal to the profile: ``prod`` on ``swarm`` is the scaled-out prod. On a swarm the nodes
pull every image from a registry (no local image ids), stateless services run ``swarm.replicas`` tasks (at
least 2 in prod) and stateful ones are pinned to nodes labelled ``swarm.role_label=swarm.data_role``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from components.catalog import Exposure, Profile
from components.settings.fields import _Strict

if TYPE_CHECKING:
    from components.settings.models import RawSettings

Target = Literal["host", "swarm"]

# unix:///path, tcp://host:port or ssh://[user@]host[:port]: what docker.Provider(host=…) takes.
_DOCKER_HOST = r"^(unix:///[^\s]+|tcp://[A-Za-z0-9.:\[\]-]+:\d{1,5}|ssh://([a-z_][a-z0-9_.-]*@)?[A-Za-z0-9.:\[\]-]+)$"
_REGISTRY = r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?$"


def _docker_host(value: str) -> str:
    if not re.match(_DOCKER_HOST, value):
        raise PydanticCustomError(
            "docker_host",
            "is not a Docker API address; write unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST",
        )
    return value


def _registry(value: str) -> str:
    if not re.match(_REGISTRY, value):
        raise PydanticCustomError(
            "registry", "is not a registry HOST[:PORT]; write it like registry.example.com:5000, without a scheme"
        )
    return value


_LABEL = r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$"
MIN_PROD_REPLICAS = 2


class SwarmConfig(_Strict):
    """Docker Swarm deployment (used when ``target`` is ``swarm``); see docs/swarm-lab.md for a real one."""

    docker_host: Annotated[str, AfterValidator(_docker_host)] | None = None
    """The manager's Docker API: unix:///run/…sock, tcp://host:2376 or ssh://user@manager (required on swarm)."""
    data_docker_host: Annotated[str, AfterValidator(_docker_host)] | None = None
    """The Docker API of the one node labelled with the data role, where the stateful volumes are created
    (default: docker_host, i.e. the manager holds the data)."""
    registry: Annotated[str, AfterValidator(_registry)] | None = None
    """Registry the nodes pull from, HOST:PORT; prod on swarm needs every image as REGISTRY/REPO@sha256:…."""
    encrypt_overlays: bool = True
    """IPsec between nodes on every overlay network; off only where the kernel has no ESP (the lab)."""
    replicas: Annotated[int, Field(ge=1, le=64)] = MIN_PROD_REPLICAS
    """Tasks per stateless service (backend, oauth2-proxy, nginx); at least 2 in prod."""
    role_label: Annotated[str, Field(pattern=_LABEL)] = "fly-potato.role"
    """Node label that places services: `node.labels.<role_label>==<role>`."""
    data_role: Annotated[str, Field(pattern=_LABEL)] = "data"
    """Role of the nodes that hold stateful services and their volumes (postgres, prometheus, backup)."""
    edge_role: Annotated[str, Field(pattern=_LABEL)] = "edge"
    """Role of the nodes that publish nginx's 443 and 80 in host mode."""

    def constraint(self, role: str) -> str:
        """The placement constraint of a role, e.g. ``node.labels.fly-potato.role==data``."""
        return f"node.labels.{self.role_label}=={role}"


_PINNED = re.compile(r"^(?:[^@\s]+@sha256:[0-9a-f]{64}|sha256:[0-9a-f]{64})$")


def _registry_digest(registry: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(registry)}/[a-z0-9._/-]+@sha256:[0-9a-f]{{64}}$")


def swarm_problems(raw: RawSettings, images: dict[str, str], exposure: Mapping[str, Exposure]) -> list[str]:
    """Sentences for a swarm target that cannot work or would weaken prod; none for ``target: host``."""
    from components.settings.errors import PROJECT, _show

    if raw.target != "swarm":
        return []
    swarm, prod = raw.swarm, raw.profile is Profile.PROD
    problems: list[str] = []
    # R-NET-3: a swarm publish binds every address of a node (host mode); dev binds loopback only.
    for name in ("nginx_http", "nginx_https"):
        if not prod and exposure[name] is Exposure.PUBLIC:
            problems.append(
                f"{PROJECT}:publish.{name} = public on target = swarm would publish nginx on every address of the "
                f"edge nodes, and dev binds 127.0.0.1 only (R-NET-3); set publish.{name} to none (come in through "
                "the SSH tunnel) or deploy dev with target = host"
            )
    if swarm.docker_host is None:
        problems.append(
            f"{PROJECT}:swarm.docker_host is required when target = swarm; set it to the manager's Docker API "
            "with `pulumi config set --path swarm.docker_host unix:///var/run/docker.sock` (or ssh://user@manager)"
        )
    if prod and swarm.replicas < MIN_PROD_REPLICAS:
        problems.append(
            f"{PROJECT}:swarm.replicas = {swarm.replicas} leaves prod's stateless services one task each; "
            f"set it to {MIN_PROD_REPLICAS} or more (the swarm target exists to scale out)"
        )
    if prod and swarm.registry is None:
        problems.append(
            f"{PROJECT}:swarm.registry is required in prod when target = swarm; set it to the registry the nodes "
            "pull from with `pulumi config set --path swarm.registry registry.example.com:5000`"
        )
    elif prod and swarm.registry is not None:
        pinned = _registry_digest(swarm.registry)
        for name, image in sorted(images.items()):
            # A tag is already refused as not pinned (R-SEC-3); a local image id is pinned but no node has it.
            if _PINNED.match(image) and not pinned.match(image):
                problems.append(
                    f"{PROJECT}:images.{name} = {_show(image)} is not pulled from swarm.registry by digest; "
                    f"push it and write {swarm.registry}/REPOSITORY@sha256:<64 hex> (R-SEC-3)"
                )
    return problems


__all__ = ["MIN_PROD_REPLICAS", "SwarmConfig", "Target", "swarm_problems"]
