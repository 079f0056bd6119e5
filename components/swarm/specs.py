"""What the swarm platform's services are made of: their zones on a swarm, their files as Swarm configs and
secrets, their probes, Keycloak's environment and the passwords applied once (``components.swarm.platform``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_random as random

from components.auth_services import keycloak_env as host_keycloak_env
from components.catalog import Zone
from components.hardened_container import SECRETS_DIR, ContainerFile, Healthcheck
from components.placement import Placement
from components.settings import Settings
from components.swarm.files import ServiceFile
from components.swarm.service import Probe, provider_duration
from components.swarm.zones import SwarmZonesArgs

OPERATOR_SERVICES = ("postgres", "keycloak")  # the operator listeners, reached through the operator proxy only


def swarm_zones_of(settings: Settings, service: str) -> list[Zone]:
    """A service's zones on a swarm: the host's, with the operator zone for exactly the operator services."""
    zones: list[Zone] = [zone for zone in settings.zones_of(service) if zone is not Zone.OPERATOR]
    if service in OPERATOR_SERVICES:
        zones.append(Zone.OPERATOR)
    return sorted(zones, key=lambda z: list(Zone).index(z))


def swarm_zones_args(settings: Settings) -> SwarmZonesArgs:
    """Every zone an overlay with the stack's fixed subnet (pg_hba and trusted proxies name them); the operator
    zone internal, whatever the profile (nothing in it may reach out)."""
    return SwarmZonesArgs(
        project=settings.project,
        stack=settings.stack,
        internal={**settings.zone_internal, Zone.OPERATOR: True},
        encrypted=settings.raw.swarm.encrypt_overlays,
        zones=tuple(Zone),
        subnets=dict(settings.zone_subnets),
    )


def service_files(files: Sequence[ContainerFile]) -> tuple[ServiceFile, ...]:
    """The host's container files as Swarm configs and secrets (group-readable at most: no other uid)."""
    return tuple(ServiceFile(f.path, f.content, secret=f.secret, mode=int(f.mode, 8) & 0o770 or 0o440) for f in files)


def probe(check: Healthcheck) -> Probe:
    return Probe(
        test=check.test,
        interval=provider_duration(check.interval),
        timeout=provider_duration(check.timeout),
        retries=check.retries,
        start_period=provider_duration(check.start_period),
    )


def tmpfs_bytes(size_mb: int) -> int:
    return size_mb * 1024 * 1024


def deployed_services() -> frozenset[str]:
    return frozenset({"postgres", "migration", "backend", "keycloak", "oauth2_proxy", "nginx"})


def backend_env(
    settings: Settings, issuer_url: str, jwks_url: str, client_id: str, secret_files: Mapping[str, object]
) -> dict[str, str]:
    """The backend's settings as environment (plain), as on a host; its secrets are files named here."""
    return {
        "FLY_POTATO_PROFILE": settings.profile.value,
        "FLY_POTATO_PORT": str(settings.ports["backend"]),
        "FLY_POTATO_PUBLIC_URL": settings.public_url,
        "FLY_POTATO_KEYCLOAK_ISSUER_URL": issuer_url,
        "FLY_POTATO_KEYCLOAK_JWKS_URL": jwks_url,
        "FLY_POTATO_OIDC_CLIENT_ID": client_id,
        "FLY_POTATO_CORS_ORIGINS": ",".join(settings.cors_origins),
        "FLY_POTATO_DATALENS_EMBED_ORIGINS": ",".join(settings.raw.datalens.embed_origins),
        **{f"FLY_POTATO_{key.upper()}_FILE": f"{SECRETS_DIR}/{key}" for key in secret_files},
    }


def manager_placement(settings: Settings) -> Placement:
    """The migration container's placement on the manager: the data overlay, no ports."""
    base = Placement.of(settings)
    return Placement(
        project=base.project,
        stack=base.stack,
        max_open_files=base.max_open_files,
        zones={"migration": [Zone.DATA]},
        resources=base.resources,
        bindings={"migration": []},
    )


def keycloak_env(settings: Settings, http_port: int, management_upstream: int) -> Mapping[str, str]:
    """Keycloak's environment on a swarm: the host's (``auth_services.keycloak_env``) for this stack."""
    admin = (settings.raw.keycloak.admin_url or settings.keycloak_operator_url) if settings.is_prod else None
    return host_keycloak_env(
        postgres_port=settings.ports["postgres"],
        http_port=http_port,
        management_upstream=management_upstream,
        public_url=settings.public_url,
        trusted_proxies=settings.zone_subnets[Zone.APP],
        admin_console_url=admin,
    )


def superuser_password(parent: pulumi.Resource) -> random.RandomPassword:
    """Applied at initdb only (as on a host): it cannot follow the rotation epoch."""
    return _fixed_password("data-postgres-superuser", "at-initdb", parent)


def keycloak_admin_password(parent: pulumi.Resource) -> random.RandomPassword:
    """Keycloak creates the bootstrap admin on its first start only (as on a host)."""
    return _fixed_password("auth-keycloak-admin", "at-first-start", parent)


def _fixed_password(name: str, applied: str, parent: pulumi.Resource) -> random.RandomPassword:
    return random.RandomPassword(
        name,
        length=40,
        special=False,
        min_lower=2,
        min_upper=2,
        min_numeric=2,
        keepers={"applied": applied},
        opts=pulumi.ResourceOptions(parent=parent, additional_secret_outputs=["result"]),
    )
