"""Resolved settings of one stack: defaults from the catalog applied, cross-field rules checked."""

from __future__ import annotations

import hashlib
import ipaddress

from pydantic import (
    BaseModel,
    ConfigDict,
)

from components.catalog import (
    LISTENERS,
    SERVICES,
    Exposure,
    Flow,
    Profile,
    Resources,
    Zone,
)
from components.settings.models import FeaturesConfig, RawSettings


class PortBinding(BaseModel):
    """One row of the port matrix."""

    model_config = ConfigDict(frozen=True)

    service: str
    listener: str
    zone: str
    host_ip: str | None
    host_port: int | None
    container_port: int
    protocol: str

    @property
    def published(self) -> bool:
        return self.host_port is not None


class Settings(BaseModel):
    """Validated, fully resolved settings of one stack."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    project: str
    stack: str
    raw: RawSettings
    ports: dict[str, int]
    host_ports: dict[str, int]
    exposure: dict[str, Exposure]
    images: dict[str, str]
    resources: dict[str, Resources]
    zone_internal: dict[Zone, bool]

    @property
    def profile(self) -> Profile:
        return self.raw.profile

    @property
    def is_prod(self) -> bool:
        return self.raw.profile is Profile.PROD

    @property
    def domain(self) -> str:
        return self.raw.domain

    @property
    def public_bind_address(self) -> str:
        return self.raw.public_bind_address or ("0.0.0.0" if self.is_prod else "127.0.0.1")

    @property
    def operator_bind_address(self) -> str:
        return self.raw.operator_bind_address

    @property
    def features(self) -> FeaturesConfig:
        return self.raw.features

    @property
    def http_redirect(self) -> bool:
        return self.raw.features.http_redirect is not False

    @property
    def dns_preflight(self) -> bool:
        flag = self.raw.features.dns_preflight
        return self.is_prod if flag is None else flag

    @property
    def seed_test_users(self) -> bool:
        flag = self.raw.features.seed_test_users
        return (not self.is_prod) if flag is None else flag

    @property
    def datalens_enabled(self) -> bool:
        return bool(self.raw.datalens.allow_list)

    @property
    def public_url(self) -> str:
        if self.is_prod:
            return f"https://{self.domain}"
        port = self.host_ports["nginx_http"]
        return f"http://{self.domain}" + ("" if port == 80 else f":{port}")

    @property
    def realm(self) -> str:
        return self.raw.keycloak.realm or f"{self.project}-{self.stack}"

    # --- zone subnets and provider endpoints (pg_hba, Postgres and Keycloak providers) ----------------

    @property
    def zone_subnets(self) -> dict[Zone, str]:
        """One fixed /24 per zone, so pg_hba and trusted proxies are known at preview.

        Default: the stack's /21 inside 10.231.0.0/16, picked from a hash of project and stack so two
        stacks on one host do not collide (set ``zones.<zone>.subnet`` when they do).
        """
        slot = int(hashlib.sha256(f"{self.project}/{self.stack}".encode()).hexdigest(), 16) % 32
        block = ipaddress.ip_network(f"10.231.{slot * 8}.0/21")
        defaults = dict(zip(Zone, block.subnets(new_prefix=24), strict=False))
        configured = self.raw.zones.model_dump()  # type: ignore[attr-defined]
        return {zone: (configured.get(zone.value) or {}).get("subnet") or str(defaults[zone]) for zone in Zone}

    def zone_gateway(self, zone: Zone) -> str:
        """The bridge's address in the zone: where the Docker host (and its published ports) appear from."""
        return str(next(ipaddress.ip_network(self.zone_subnets[zone]).hosts()))

    @property
    def postgres_endpoint(self) -> tuple[str, int]:
        """Host and port the Postgres provider connects to (the operator bind, or a tunnel's local end)."""
        given = self.raw.operator_endpoints
        return (
            given.postgres_host or _loopback_of(self.operator_bind_address),
            given.postgres_port or self.host_ports["postgres"],
        )

    @property
    def keycloak_operator_url(self) -> str:
        """Keycloak's root URL (without /sso) for the Keycloak provider and the admin console."""
        given = self.raw.operator_endpoints.keycloak_url
        return given or f"http://{_loopback_of(self.operator_bind_address)}:{self.host_ports['keycloak']}"

    @property
    def cors_origins(self) -> list[str]:
        return self.raw.cors_origins or [self.public_url]

    def resource_name(self, *parts: str) -> str:
        """Docker object name carrying project and stack, so stacks can share a host (R-OPS-3)."""
        return "-".join((self.project, self.stack, *parts)).replace("_", "-")

    def port_matrix(self) -> list[PortBinding]:
        rows = []
        for listener in LISTENERS.values():
            exposure = self.exposure[listener.name]
            host_ip = {
                Exposure.PUBLIC: self.public_bind_address,
                Exposure.OPERATOR: self.operator_bind_address,
                Exposure.NONE: None,
            }[exposure]
            rows.append(
                PortBinding(
                    service=listener.service,
                    listener=listener.name,
                    zone=listener.zone.value,
                    host_ip=host_ip,
                    host_port=self.host_ports[listener.name] if host_ip else None,
                    container_port=self.ports[listener.name],
                    protocol=listener.protocol,
                )
            )
        return rows

    def bindings_of(self, service: str) -> list[PortBinding]:
        return [row for row in self.port_matrix() if row.service == service]

    def zones_of(self, service: str) -> list[Zone]:
        zones = set(SERVICES[service].zones)
        if any(row.published for row in self.bindings_of(service)) and self.zone_internal_any(service):
            zones.add(Zone.OPERATOR)
        if any(rule.service == service for rule in self.raw.egress):
            zones.add(Zone.EGRESS)
        if service == "nginx" and self.datalens_enabled:
            zones.add(Zone.DATA)  # the DataLens TCP proxy forwards to postgres (R-NET-6)
        return sorted(zones, key=lambda z: list(Zone).index(z))

    def flow_active(self, flow: Flow) -> bool:
        return {
            None: True,
            "datalens": self.datalens_enabled,
            "monitoring": self.raw.features.monitoring,
            "backups": self.raw.features.backups,
        }[flow.when]

    def zone_internal_any(self, service: str) -> bool:
        """True when the service's own zones are all internal, so publishing needs the operator zone."""
        return all(self.zone_internal[zone] for zone in SERVICES[service].zones)


def _loopback_of(bind_address: str) -> str:
    """A wildcard bind is reached on loopback; a specific address is reached on itself."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bind_address, bind_address)
