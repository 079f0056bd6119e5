"""The platform's services, listeners and zones: the one place where ports and zones are decided.

Everything here mirrors the tables of docs/requirements.md ("Services and ports", "Zones"). Stack config may
override ports, host ports, exposure and images (see ``components.settings``); the defaults live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Profile(StrEnum):
    DEV = "dev"
    PROD = "prod"


class Zone(StrEnum):
    """Docker networks; each container joins only the zones it talks in (R-NET-4)."""

    EDGE = "edge"
    APP = "app"
    DATA = "data"
    MONITORING = "monitoring"
    EGRESS = "egress"
    # Non-internal bridge without masquerading: Docker publishes no port of a container that is only on
    # internal networks, so prod's loopback operator binds (postgres, keycloak) need this, and only this.
    OPERATOR = "operator"


class Exposure(StrEnum):
    """Where a listener is published on the Docker host."""

    PUBLIC = "public"  # on the public bind address (prod: routable; dev: loopback)
    OPERATOR = "operator"  # on the operator bind address (loopback) for providers and humans over SSH
    NONE = "none"  # not published; reachable only inside its zones


class Group(StrEnum):
    """Service groups; one ComponentResource each."""

    DATA = "data"
    APP = "app"
    AUTH = "auth"
    EDGE = "edge"
    MONITORING = "monitoring"


@dataclass(frozen=True)
class Service:
    name: str
    group: Group
    zones: frozenset[Zone]
    uid: int
    gid: int
    one_shot: bool = False  # runs to completion (migration) instead of staying up

    @property
    def user(self) -> str:
        return f"{self.uid}:{self.gid}"

    @property
    def docker_alias(self) -> str:
        """DNS name of the service inside its zones (underscores are not valid in host names)."""
        return self.name.replace("_", "-")


@dataclass(frozen=True)
class Listener:
    """A TCP port a service listens on, with its per-profile defaults."""

    name: str
    service: str
    zone: Zone  # the zone the listener is meant to be reached in
    dev_port: int
    prod_port: int
    dev_exposure: Exposure
    prod_exposure: Exposure
    dev_host_port: int | None = None
    prod_host_port: int | None = None
    protocol: str = "tcp"
    description: str = ""

    def port(self, profile: Profile) -> int:
        return self.dev_port if profile is Profile.DEV else self.prod_port

    def exposure(self, profile: Profile) -> Exposure:
        return self.dev_exposure if profile is Profile.DEV else self.prod_exposure

    def host_port(self, profile: Profile) -> int:
        explicit = self.dev_host_port if profile is Profile.DEV else self.prod_host_port
        return explicit if explicit is not None else self.port(profile)


_D, _A, _M, _E = Zone.DATA, Zone.APP, Zone.MONITORING, Zone.EDGE

SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        # One uid per service: isolation between containers, and the per-uid process limit (RLIMIT_NPROC)
        # that caps PIDs is then a per-service limit. backup shares postgres' group to read its WAL archive.
        Service("postgres", Group.DATA, frozenset({_D}), 10010, 10010),
        Service("migration", Group.DATA, frozenset({_D}), 10020, 10020, one_shot=True),
        Service("backup", Group.DATA, frozenset({_D, _M}), 10011, 10010),
        Service("backend", Group.APP, frozenset({_A, _D, _M}), 10020, 10020),
        Service("keycloak", Group.AUTH, frozenset({_A, _D, _M}), 10030, 10030),
        Service("oauth2_proxy", Group.AUTH, frozenset({_A, _M}), 10031, 10031),
        Service("nginx", Group.EDGE, frozenset({_E, _A, _M}), 10040, 10040),
        Service("prometheus", Group.MONITORING, frozenset({_M}), 10050, 10050),
        Service("alertmanager", Group.MONITORING, frozenset({_M}), 10051, 10051),
        Service("node_exporter", Group.MONITORING, frozenset({_M}), 10052, 10052),
        Service("postgres_exporter", Group.MONITORING, frozenset({_M, _D}), 10053, 10053),
        Service("sql_exporter", Group.MONITORING, frozenset({_M, _D}), 10054, 10054),
        Service("blackbox_exporter", Group.MONITORING, frozenset({_M, _A}), 10055, 10055),
        # Per-container restart counts from the Docker API (read-only socket mount; see monitoring_services.py).
        Service("container_exporter", Group.MONITORING, frozenset({_M}), 10056, 10056),
    )
}

_PUB, _OP, _NO = Exposure.PUBLIC, Exposure.OPERATOR, Exposure.NONE

LISTENERS: dict[str, Listener] = {
    item.name: item
    for item in (
        Listener("postgres", "postgres", _D, 5433, 5433, _OP, _OP, description="PostGIS"),
        Listener("backend", "backend", _A, 8000, 80, _OP, _NO, dev_host_port=8073, description="API, health, metrics"),
        Listener("nginx_http", "nginx", _E, 80, 80, _PUB, _PUB, description="HTTP (prod: 301 to HTTPS only)"),
        Listener("nginx_https", "nginx", _E, 443, 443, _NO, _PUB, description="HTTPS entry point"),
        Listener(
            "datalens",
            "nginx",
            _E,
            5433,
            5433,
            _NO,
            _NO,
            description="DataLens TCP proxy to postgres (R-NET-6, on when the allow-list is set)",
        ),
        Listener("keycloak", "keycloak", _A, 8080, 8080, _OP, _OP, description="Keycloak under /sso"),
        Listener(
            "keycloak_management",
            "keycloak",
            _M,
            9000,
            9000,
            _NO,
            _NO,
            description="Keycloak health and metrics; never public",
        ),
        Listener("oauth2_proxy", "oauth2_proxy", _A, 4180, 4180, _OP, _NO, description="OIDC proxy"),
        Listener(
            "oauth2_proxy_metrics", "oauth2_proxy", _M, 44180, 44180, _NO, _NO, description="oauth2-proxy metrics"
        ),
        Listener("prometheus", "prometheus", _M, 9090, 9090, _OP, _NO, description="Prometheus"),
        Listener("alertmanager", "alertmanager", _M, 9093, 9093, _OP, _NO, description="Alertmanager"),
        Listener("node_exporter", "node_exporter", _M, 9100, 9100, _OP, _NO, description="host metrics"),
        Listener("postgres_exporter", "postgres_exporter", _M, 9187, 9187, _OP, _NO, description="database metrics"),
        Listener("sql_exporter", "sql_exporter", _M, 9399, 9399, _OP, _NO, description="custom SQL metrics"),
        Listener(
            "blackbox_exporter",
            "blackbox_exporter",
            _M,
            9115,
            9115,
            _NO,
            _NO,
            description="certificate and HTTP probes",
        ),
        Listener("backup_metrics", "backup", _M, 9481, 9481, _NO, _NO, description="backup freshness metrics"),
        Listener(
            "container_exporter", "container_exporter", _M, 9417, 9417, _NO, _NO, description="container restart counts"
        ),
    )
}

# Purposes a service may reach outside the host for, and their ports (R-NET-5).
EGRESS_PURPOSES: dict[str, tuple[frozenset[int], frozenset[str]]] = {
    "dns": (frozenset({53}), frozenset({"udp", "tcp"})),
    "ntp": (frozenset({123}), frozenset({"udp"})),
    "object_storage": (frozenset({443}), frozenset({"tcp"})),
    "smtp": (frozenset({587, 465}), frozenset({"tcp"})),
    "idp": (frozenset({443}), frozenset({"tcp"})),
}


# What each service may leave the host for (R-NET-5). A service not listed holds or serves the platform's data
# (postgres, migration, backend, the exporters, prometheus, nginx...) and never joins the egress zone; DNS and
# NTP only accompany a service's own purpose.
EGRESS_SERVICES: dict[str, frozenset[str]] = {
    "alertmanager": frozenset({"smtp", "dns", "ntp"}),
    "backup": frozenset({"object_storage", "dns", "ntp"}),
    "keycloak": frozenset({"idp", "smtp", "dns", "ntp"}),
    "oauth2_proxy": frozenset({"idp", "dns", "ntp"}),
}


def listeners_of(service: str) -> list[Listener]:
    return [item for item in LISTENERS.values() if item.service == service]


@dataclass(frozen=True)
class Resources:
    """Container limits. memory in MiB."""

    cpus: float
    memory_mb: int
    pids: int


# PROD sizing follows the manual's "Ресурсы и sizing" table (nginx+oauth2-proxy share 1–2 vCPU / 1–2 GB;
# the exporters share 1 vCPU / 1 GB). DEV fits a laptop.
PROD_RESOURCES: dict[str, Resources] = {
    "postgres": Resources(4.0, 8192, 512),
    "migration": Resources(1.0, 1024, 128),
    "backup": Resources(1.0, 1024, 128),
    "backend": Resources(2.0, 2048, 256),
    "keycloak": Resources(2.0, 4096, 512),
    "oauth2_proxy": Resources(0.5, 512, 128),
    "nginx": Resources(1.0, 1024, 256),
    "prometheus": Resources(2.0, 4096, 256),
    "alertmanager": Resources(1.0, 1024, 128),
    "node_exporter": Resources(0.25, 256, 64),
    "postgres_exporter": Resources(0.25, 256, 64),
    "sql_exporter": Resources(0.25, 256, 64),
    "blackbox_exporter": Resources(0.25, 256, 64),
    "container_exporter": Resources(0.25, 128, 32),
}

DEV_RESOURCES: dict[str, Resources] = {
    name: Resources(min(r.cpus, 1.0), min(r.memory_mb, 1024 if name == "keycloak" else 512), r.pids)
    for name, r in PROD_RESOURCES.items()
}


def default_resources(profile: Profile) -> dict[str, Resources]:
    return dict(DEV_RESOURCES if profile is Profile.DEV else PROD_RESOURCES)


@dataclass(frozen=True)
class Flow:
    """Who talks to whom, on which listener: documentation and zone checks read these."""

    source: str
    target_listener: str
    purpose: str
    when: str | None = None  # a feature the flow exists for ("datalens", "monitoring", "backups")


FLOWS: tuple[Flow, ...] = (
    Flow("nginx", "backend", "/api/"),
    Flow("nginx", "oauth2_proxy", "/oauth2/, auth_request"),
    Flow("nginx", "keycloak", "/sso/realms/, /sso/resources/"),
    Flow("nginx", "postgres", "DataLens TCP proxy", when="datalens"),
    Flow("oauth2_proxy", "keycloak", "OIDC"),
    Flow("backend", "postgres", "app role"),
    Flow("backend", "keycloak", "JWKS"),
    Flow("migration", "postgres", "migrator role"),
    Flow("keycloak", "postgres", "keycloak database"),
    Flow("backup", "postgres", "dumps, WAL"),
    Flow("postgres_exporter", "postgres", "exporter role"),
    Flow("sql_exporter", "postgres", "exporter role"),
    Flow("prometheus", "backend", "scrape"),
    Flow("prometheus", "node_exporter", "scrape"),
    Flow("prometheus", "postgres_exporter", "scrape"),
    Flow("prometheus", "sql_exporter", "scrape"),
    Flow("prometheus", "oauth2_proxy_metrics", "scrape"),
    Flow("prometheus", "keycloak_management", "scrape"),
    Flow("prometheus", "blackbox_exporter", "probe"),
    Flow("prometheus", "backup_metrics", "scrape"),
    Flow("prometheus", "container_exporter", "scrape"),
    Flow("prometheus", "alertmanager", "alerts"),
    Flow("blackbox_exporter", "nginx_https", "certificate probe"),
)
