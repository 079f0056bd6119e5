"""Stack settings: every ``fly-potato:*`` config key, read once and validated before any resource exists.

A bad value stops the program with one sentence per problem that names the key and the fix, e.g.
``fly-potato:ports.postgres = 70000 is not a TCP port (1-65535)``.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from components.catalog import (
    EGRESS_PURPOSES,
    EGRESS_SERVICES,
    LISTENERS,
    SERVICES,
    Exposure,
    Flow,
    Profile,
    Resources,
    Zone,
    default_resources,
)

PROJECT = "fly-potato"

# ---------------------------------------------------------------------------------------------
# Field types with their own error sentences
# ---------------------------------------------------------------------------------------------


def _tcp_port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise PydanticCustomError("tcp_port", "is not a TCP port (1-65535)")
    return value


def _ip_address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise PydanticCustomError(
            "ip_address", "is not an IP address; use a literal address such as 127.0.0.1 or 0.0.0.0"
        ) from None


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise PydanticCustomError(
            "cidr", "is not a CIDR block; write it like 203.0.113.0/24 or 198.51.100.7/32"
        ) from None


_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")


def _domain(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise PydanticCustomError(
            "domain", "is not a DNS name; use the bare host name users type, e.g. flypotato.example.com"
        )
    return value


MAX_MEMORY_MB = 256 * 1024
_SIZE = re.compile(r"^(\d+)\s*([kmg]?)i?b?$", re.IGNORECASE)


def _memory_mb(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        mb = value
    else:
        match = _SIZE.match(str(value).strip())
        if not match:
            raise PydanticCustomError("memory", "is not a memory size; write it like 512m or 4g")
        number, unit = int(match.group(1)), match.group(2).lower()
        mb = {"k": number // 1024, "m": number, "g": number * 1024, "": number // (1024 * 1024)}[unit]
    if mb < 16:
        raise PydanticCustomError("memory", "is below 16 MiB; no service of the platform starts in less")
    if mb > MAX_MEMORY_MB:
        raise PydanticCustomError(
            "memory", "is above 256 GiB, which limits nothing; give the service its real size, e.g. 4g (R-SEC-2)"
        )
    return mb


def _cpus(value: float) -> float:
    if not 0.05 <= value <= 64:
        raise PydanticCustomError("cpus", "is not a CPU share between 0.05 and 64")
    return value


def _pids(value: int) -> int:
    if not 16 <= value <= 65536:
        raise PydanticCustomError("pids", "is not a PID limit between 16 and 65536")
    return value


def _origin(value: str) -> str:
    match = re.match(r"^https?://([a-z0-9.-]+)(?::(\d{1,5}))?$", value)
    if not match or not _HOSTNAME.match(match.group(1)) or (match.group(2) and not 1 <= int(match.group(2)) <= 65535):
        raise PydanticCustomError(
            "origin", "is not a web origin; write scheme://host[:port] with no path, e.g. https://datalens.yandex.ru"
        )
    return value


Port = Annotated[int, AfterValidator(_tcp_port)]
IPAddress = Annotated[str, AfterValidator(_ip_address)]
Cidr = Annotated[str, AfterValidator(_cidr)]
Domain = Annotated[str, AfterValidator(_domain)]
MemoryMB = Annotated[Any, AfterValidator(_memory_mb)]
Cpus = Annotated[float, AfterValidator(_cpus)]
Pids = Annotated[int, AfterValidator(_pids)]
Origin = Annotated[str, AfterValidator(_origin)]


class _Strict(BaseModel):
    # Attribute docstrings become field descriptions, which the generated config reference shows.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _listener_fields(kind: Any) -> dict[str, Any]:
    return {name: (kind | None, None) for name in LISTENERS}


def _service_fields(kind: Any) -> dict[str, Any]:
    return {name: (kind | None, None) for name in SERVICES}


# Per-listener and per-service maps are models with one optional field each, so an unknown key is an
# error that names the key (and suggests the closest known one) instead of being ignored.
# Type checkers see them as plain models; at run time each has one field per listener/service/zone.
if TYPE_CHECKING:
    PortsConfig: TypeAlias = BaseModel
    PublishConfig: TypeAlias = BaseModel
    ImagesConfig: TypeAlias = BaseModel
    ResourcesConfig: TypeAlias = BaseModel
    ZonesConfig: TypeAlias = BaseModel
else:
    PortsConfig = create_model("PortsConfig", __base__=_Strict, **_listener_fields(Port))
    PublishConfig = create_model("PublishConfig", __base__=_Strict, **_listener_fields(Exposure))
    ImagesConfig = create_model("ImagesConfig", __base__=_Strict, **_service_fields(str))


class ResourceConfig(_Strict):
    cpus: Cpus | None = None
    memory: MemoryMB | None = None
    pids: Pids | None = None


if not TYPE_CHECKING:
    ResourcesConfig = create_model("ResourcesConfig", __base__=_Strict, **_service_fields(ResourceConfig))


class ZoneConfig(_Strict):
    internal: bool | None = None
    subnet: Cidr | None = Field(
        default=None,
        description="Fixed IPv4 block of the zone's network (default: a per-stack /24 in 10.231.0.0/16); "
        "pg_hba and Keycloak's trusted proxies are built from it.",
    )


if not TYPE_CHECKING:
    ZonesConfig = create_model("ZonesConfig", __base__=_Strict, **{z.value: (ZoneConfig | None, None) for z in Zone})


class EgressRule(_Strict):
    """One allowed outbound flow (R-NET-5)."""

    service: str
    purpose: Literal["dns", "ntp", "object_storage", "smtp", "idp"]
    port: Port
    protocol: Literal["tcp", "udp"] = "tcp"
    destinations: list[Cidr] = Field(default_factory=lambda: ["0.0.0.0/0"])


class DataLensConfig(_Strict):
    """Direct read-only Postgres access for DataLens (R-NET-6); off while allow_list is empty."""

    allow_list: list[Cidr] = Field(default_factory=list)
    connection_limit: Annotated[int, Field(ge=1, le=100)] = 5
    embed_origins: list[Origin] = Field(default_factory=list)


class FeaturesConfig(_Strict):
    http_redirect: bool | None = None  # prod: publish 80 for the 301 to HTTPS
    dns_preflight: bool | None = None  # prod: the domain must resolve before anything changes (R-OPS-1)
    seed_test_users: bool | None = None  # dev only: Keycloak test users with generated passwords
    monitoring: bool = True
    backups: bool = True


def _pem_chain(value: str | None) -> str | None:
    if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
        raise PydanticCustomError(
            "pem_chain", "is not a PEM certificate chain; paste the server certificate first, then its intermediates"
        )
    return value


class TlsConfig(_Strict):
    """Server certificate: a per-stack internal CA, or a chain and key provided as secrets (R-TLS-4)."""

    mode: Literal["internal_ca", "provided"] = "internal_ca"
    certificate_pem: Annotated[str | None, AfterValidator(_pem_chain)] = None
    private_key_pem: SecretStr | None = None  # its form is checked by components.tls (errors here echo input)
    # Mozilla "intermediate" caps certificate lifespan at 366 days (stricter than the CA/B 397).
    validity_days: Annotated[int, Field(ge=30, le=366)] = 90
    # Renewal on the first `pulumi up` inside this window; the expiry alert fires at 14 days.
    renew_before_days: Annotated[int, Field(ge=15, le=180)] = 30


CspDirective = Literal[
    "default-src",
    "script-src",
    "style-src",
    "img-src",
    "font-src",
    "connect-src",
    "frame-src",
    "worker-src",
    "media-src",
    "manifest-src",
    "form-action",
]
# One CSP source per item: no whitespace, separators or nginx variables ('self' and https://x are fine).
CspSource = Annotated[str, Field(pattern=r"^[^\s;,\"$\\{}]+$")]


class EdgeConfig(_Strict):
    """nginx limits and headers at the edge."""

    api_rate_per_second: Annotated[int, Field(ge=1, le=10000)] = 20
    api_burst: Annotated[int, Field(ge=0, le=10000)] = 40
    oauth2_rate_per_minute: Annotated[int, Field(ge=1, le=6000)] = 60
    oauth2_burst: Annotated[int, Field(ge=0, le=1000)] = 20
    max_body_mb: Annotated[int, Field(ge=1, le=2048)] = 50  # uploads to /api/imports
    hsts_max_age: Annotated[int, Field(ge=31536000)] = 63072000  # R-TLS-2; Mozilla recommends two years
    csp_extra: dict[CspDirective, list[CspSource]] = Field(default_factory=dict)


Username = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{1,31}$")]
GroupName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{1,31}$")]

# Groups every realm has (R-AUTH-3); config may add more with keycloak.groups.
REQUIRED_GROUPS = ("admins", "analysts")


class TestUserConfig(_Strict):
    """A dev-only Keycloak user; a bare name in config means a member of ``analysts``."""

    username: Username
    groups: list[GroupName] = Field(default_factory=lambda: ["analysts"])


# Keycloak's own realm: its admin console and the bootstrap admin live there (R-AUTH-2).
KEYCLOAK_ADMIN_REALM = "master"
# Names a bootstrap admin of a Keycloak image is known by: guessing the name must not be half the work (R-AUTH-4).
WELL_KNOWN_ADMIN_NAMES = frozenset({"admin", "administrator", "root", "keycloak", "temp-admin", "kcadmin"})


def _stack_realm(value: str) -> str:
    if value.casefold() == KEYCLOAK_ADMIN_REALM:
        raise PydanticCustomError(
            "admin_realm",
            "is Keycloak's own admin realm; give the stack its own realm, e.g. fly-potato-prod (R-AUTH-2, R-AUTH-3)",
        )
    return value


def _admin_name(value: str) -> str:
    if value.casefold() in WELL_KNOWN_ADMIN_NAMES:
        raise PydanticCustomError(
            "admin_name",
            "is a name every Keycloak scanner tries; keep the default platform-admin or pick your own (R-AUTH-4)",
        )
    return value


class KeycloakConfig(_Strict):
    realm: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{1,63}$"), AfterValidator(_stack_realm)] | None = Field(
        default=None, description="Realm of the stack (default: fly-potato-<stack>)."
    )
    admin_user: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{2,31}$"), AfterValidator(_admin_name)] = Field(
        default="platform-admin",
        description="Bootstrap admin of the master realm; its password is generated (R-AUTH-4).",
    )
    admin_url: Annotated[str, Field(pattern=r"^https?://[a-z0-9.-]+(:\d{1,5})?$")] | None = Field(
        default=None,
        description="Where an operator's browser opens the admin console (prod KC_HOSTNAME_ADMIN, "
        "without /sso); default: the Keycloak operator endpoint.",
    )
    groups: list[GroupName] = Field(default_factory=list, description="Groups besides admins and analysts.")
    groups_full_path: bool = Field(default=False, description="The groups claim carries /parent/child paths.")
    access_token_minutes: Annotated[int, Field(ge=1, le=60)] = Field(default=5, description="Access token lifetime.")
    session_idle_minutes: Annotated[int, Field(ge=5, le=1440)] = Field(
        default=30, description="SSO session idle timeout."
    )
    session_max_hours: Annotated[int, Field(ge=1, le=72)] = Field(default=10, description="SSO session maximum.")
    test_users: list[Username | TestUserConfig] = Field(
        default_factory=list,
        description="Dev only: users with generated passwords (output keycloak_test_users); "
        "a bare name joins analysts, {username, groups} chooses.",
    )

    @property
    def all_groups(self) -> list[str]:
        return list(dict.fromkeys([*REQUIRED_GROUPS, *self.groups]))

    @property
    def users(self) -> list[TestUserConfig]:
        return [u if isinstance(u, TestUserConfig) else TestUserConfig(username=u) for u in self.test_users]


class OperatorEndpointsConfig(_Strict):
    """Where the Postgres and Keycloak providers reach the operator binds.

    Default: this machine's operator bind address and the host ports. With ``DOCKER_HOST=ssh://…`` the
    binds are on the remote host's loopback; point these at the local ends of an SSH tunnel
    (docs/remote-docker-host.md).
    """

    postgres_host: str | None = Field(
        default=None, description="Postgres provider host (default: the operator bind address; tunnel: localhost)."
    )
    postgres_port: Port | None = Field(
        default=None, description="Postgres provider port (default: host_ports.postgres)."
    )
    keycloak_url: Annotated[str, Field(pattern=r"^https?://[a-z0-9.-]+(:\d{1,5})?$")] | None = Field(
        default=None, description="Keycloak provider URL without /sso (default: http://<operator bind>:<host port>)."
    )
    connect_timeout_seconds: Annotated[int, Field(ge=1, le=300)] = Field(
        default=15, description="How long the providers wait for a connection."
    )


_EMAIL = re.compile(r"^[^@\s]+@[a-z0-9.-]+\.[a-z]{2,}$", re.IGNORECASE)


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise PydanticCustomError("email", "is not an e-mail address; write it like oncall@example.com")
    return value


def _smarthost(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise PydanticCustomError("smarthost", "is not HOST:PORT; write it like smtp.example.com:587")
    return value


Email = Annotated[str, AfterValidator(_email)]


class AlertingConfig(_Strict):
    """Alertmanager receivers (R-OBS-1): e-mail through an SMTP smarthost and/or a webhook.

    With neither set, alerts stay visible in Alertmanager only. Passwords and the webhook URL are secrets
    (`pulumi config set --secret`) and reach the container as files.
    """

    email_to: list[Email] = Field(default_factory=list)
    smtp_smarthost: Annotated[str, AfterValidator(_smarthost)] | None = Field(default=None, validate_default=True)
    smtp_from: Email | None = Field(default=None, validate_default=True)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_require_tls: bool = True
    webhook_url: SecretStr | None = None  # not format-checked: an error sentence would print it

    @field_validator("smtp_smarthost", "smtp_from")
    @classmethod
    def _needed_for_email(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("email_to"):
            raise PydanticCustomError(
                "needed_for_email",
                "must be set when alerting.email_to lists recipients; set it with "
                "`pulumi config set --path alerting.{field} VALUE`",
                {"field": info.field_name},
            )
        return value


# Where the Docker daemon's socket is; nothing else of the host is mounted (R-SEC-2, policy HOST_READERS).
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


def _docker_socket(value: str) -> str:
    if value not in DOCKER_SOCKETS:
        raise PydanticCustomError(
            "docker_socket",
            "is not the Docker daemon's socket; use /var/run/docker.sock (or /run/docker.sock): no other host path "
            "is mounted into a container (R-SEC-2)",
        )
    return value


class MonitoringConfig(_Strict):
    retention_days: Annotated[int, Field(ge=1, le=90)] = 15
    scrape_interval_seconds: Annotated[int, Field(ge=5, le=120)] = 15
    # Source of ContainerRestarts: the container exporter reads RestartCount from the Docker API through
    # this socket (read-only mount). Its group id on the Docker host; unset = the local socket's group.
    docker_socket: Annotated[str, Field(pattern=r"^/[^\s]+$"), AfterValidator(_docker_socket)] = "/var/run/docker.sock"
    docker_socket_gid: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None


class BackupConfig(_Strict):
    dump_retention_days: Annotated[int, Field(ge=14, le=30)] = 14
    wal_retention_days: Annotated[int, Field(ge=7, le=14)] = 7
    archive_timeout_seconds: Annotated[int, Field(ge=30, le=300)] = 60
    schedule_utc: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "02:30"


class SecretsConfig(_Strict):
    """R-SEC-4: bump rotation_epoch to rotate every generated secret of the stack."""

    rotation_epoch: Annotated[int, Field(ge=1)] = 1
    rotated_on: date | None = None


class HostSshConfig(_Strict):
    """SSH access to a remote Docker host, for the host-side commands (pulumi-command ``remote.Command``)."""

    host: Annotated[str, Field(pattern=r"^[A-Za-z0-9.:-]{1,253}$")]
    """Host name or address of the Docker host."""
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")] = "deploy"
    """Login user; runs iptables through `sudo -n` unless it is root."""
    port: Port = 22
    """SSH port."""
    private_key: SecretStr | None = None
    """PEM private key (`pulumi config set --secret`); unset: the SSH agent of the operator."""
    host_key: Annotated[str, Field(pattern=r"^(ssh-|ecdsa-)[A-Za-z0-9-]+ [A-Za-z0-9+/=]+$")] | None = None
    """The host's public key (`ssh-ed25519 AAAA…`), verified on connect; unset: not verified."""


class HostConfig(_Strict):
    """The Docker host: where the release steps and the DOCKER-USER egress rules run (R-OPS-2, R-NET-5).

    Unset ``ssh``: the machine running `pulumi up` is the Docker host, unless ``docker:host`` is
    ``ssh://user@host[:port]``, whose user, host and port are then used.
    """

    ssh: HostSshConfig | None = None
    """Remote Docker host over SSH; unset: local (or derived from `docker:host`)."""
    egress_rules: bool | None = None
    """DOCKER-USER allow-list for the egress zone (default: on in prod, off in dev)."""
    backup_timeout_seconds: Annotated[int, Field(ge=30, le=7200)] = 1800
    """Longest pre-deploy backup before the release stops."""
    smoke_timeout_seconds: Annotated[int, Field(ge=10, le=1800)] = 180
    """How long `/health/ready` through nginx may take to answer 200 after the backend is replaced."""
    command_timeout_seconds: Annotated[int, Field(ge=5, le=600)] = 60
    """Longest firewall or gate command."""
    max_open_files: Annotated[int, Field(ge=1024, le=1048576)] = 16384
    """Open-files limit (soft and hard) of every service; at most the Docker daemon's own hard limit."""


class RawSettings(_Strict):
    """The shape of the stack config, as written in Pulumi.<stack>.yaml (without the project prefix)."""

    profile: Profile
    """Hardening profile: `dev` (laptop, loopback only) or `prod` (single hardened server)."""
    domain: Domain
    """Public host name of the platform (no scheme, no path)."""
    public_bind_address: IPAddress | None = None
    """Host address of public listeners (nginx); dev `127.0.0.1`, prod `0.0.0.0`."""
    operator_bind_address: IPAddress = "127.0.0.1"
    """Host address of operator listeners (postgres, keycloak) for providers and SSH tunnels."""
    ports: PortsConfig = Field(default_factory=PortsConfig)
    """Container port per listener (defaults: components/catalog.py)."""
    host_ports: PortsConfig = Field(default_factory=PortsConfig)
    """Published host port per listener."""
    publish: PublishConfig = Field(default_factory=PublishConfig)
    """Where a listener is published: `public`, `operator` or `none`."""
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    """Image per service; prod needs `REPO@sha256:…` or a local image id `sha256:…` (R-SEC-3)."""
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    """CPU, memory and PID limits per service (prod defaults: the manual's sizing table)."""
    zones: ZonesConfig = Field(default_factory=ZonesConfig)
    """Per-zone overrides of the Docker networks."""
    egress: list[EgressRule] = Field(default_factory=list)
    """Services allowed to reach outside the host, and for what (R-NET-5)."""
    datalens: DataLensConfig = Field(default_factory=DataLensConfig)
    """Direct read-only Postgres access for DataLens (R-NET-6)."""
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    """Feature switches."""
    cors_origins: list[Origin] = Field(default_factory=list)
    """Origins allowed by the API's CORS policy (default: the public URL) (R-APP-2)."""
    tls: TlsConfig = Field(default_factory=TlsConfig)
    """Server certificate of the edge."""
    edge: EdgeConfig = Field(default_factory=EdgeConfig)
    keycloak: KeycloakConfig = Field(default_factory=KeycloakConfig)
    """Keycloak realm and bootstrap settings."""
    operator_endpoints: OperatorEndpointsConfig = Field(
        default_factory=OperatorEndpointsConfig,
        description="Where the Postgres and Keycloak providers connect; see docs/remote-docker-host.md.",
    )
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    """Alertmanager receivers."""
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    """Prometheus settings."""
    backup: BackupConfig = Field(default_factory=BackupConfig)
    """Backup schedule and retention (R-DB-2)."""
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)
    """Generated-secret rotation (R-SEC-4)."""
    host: HostConfig = Field(default_factory=HostConfig)
    """Where release steps and egress rules run, and their timeouts (R-OPS-2, R-NET-5)."""
    public_address: IPAddress | None = None
    """Address the domain must resolve to before a prod deploy (R-OPS-1); unset: any address."""


# ---------------------------------------------------------------------------------------------
# Resolved settings: defaults from the catalog applied, cross-field rules checked
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class SettingsError(Exception):
    """One or more stack config problems; ``str()`` is one sentence per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _loopback_of(bind_address: str) -> str:
    """A wildcard bind is reached on loopback; a specific address is reached on itself."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(bind_address, bind_address)


def _key(loc: tuple[Any, ...]) -> str:
    return f"{PROJECT}:" + ".".join(str(part) if not isinstance(part, int) else f"[{part}]" for part in loc).replace(
        ".[", "["
    )


def _show(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "[secret]"
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = RawSettings
    for part in loc[:-1]:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return list(model.model_fields)


def _sentence(error: Any) -> str:
    loc, kind, value = tuple(error["loc"]), error["type"], error.get("input")
    key = _key(loc)
    if kind == "missing":
        return f"{key} is required; set it with `pulumi config set {'.'.join(map(str, loc))} VALUE`"
    if kind == "extra_forbidden":
        known = _known_keys(loc)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"
        return f"{key} is not a known setting; {hint}"
    shown = f"{key} = {_show(value)}"
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return f"{shown} is not a whole number; write digits only"
    if kind in {"float_parsing", "float_type"}:
        return f"{shown} is not a number; write it like 0.5 or 2"
    if kind in {"bool_parsing", "bool_type"}:
        return f"{shown} is not true or false"
    if kind in {"enum", "literal_error"}:
        return f"{shown} must be one of {error['ctx'].get('expected', '')}"
    if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
        bound = {k: v for k, v in error.get("ctx", {}).items()}
        return f"{shown} is out of range ({', '.join(f'{k} {v}' for k, v in bound.items())})"
    if kind == "string_pattern_mismatch":
        return f"{shown} does not match the expected form {error['ctx']['pattern']}"
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        return f"{shown} must be an object; set it with `pulumi config set --path {'.'.join(map(str, loc))}.KEY VALUE`"
    if kind == "list_type":
        return f"{shown} must be a list; set items with `pulumi config set --path '{'.'.join(map(str, loc))}[0]' VALUE`"
    if kind == "string_type":
        return f"{shown} must be a string"
    return f"{shown} {error['msg']}"


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

_DIGEST_PINNED = re.compile(r"^(?:[^@\s]+@sha256:[0-9a-f]{64}|sha256:[0-9a-f]{64})$")


def _decode(value: Any) -> Any:
    """Pulumi hands structured config over as JSON text and scalars as plain text."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _dump(section: Any) -> dict[str, Any]:
    """model_dump of the generated per-service/per-listener models (typed as Any for mypy)."""
    return dict(section.model_dump())


def _data_and_identity_problems(raw: RawSettings, exposure: dict[str, Exposure]) -> list[str]:
    """Zone subnets, provider endpoints and Keycloak users that cannot work together."""
    problems: list[str] = []
    subnets = {
        zone: ipaddress.ip_network(cfg["subnet"])
        for zone, cfg in raw.zones.model_dump().items()  # type: ignore[attr-defined]
        if cfg and cfg.get("subnet")
    }
    for zone, net in subnets.items():
        if net.version != 4 or net.prefixlen > 28:
            problems.append(
                f"{PROJECT}:zones.{zone}.subnet = {_show(str(net))} is not an IPv4 block of at least 16 "
                "addresses; use a /24 such as 10.231.40.0/24"
            )
    for zone, net in subnets.items():
        for other, other_net in subnets.items():
            if zone < other and net.overlaps(other_net):
                problems.append(
                    f"{PROJECT}:zones.{zone}.subnet = {_show(str(net))} overlaps zones.{other}.subnet = "
                    f"{_show(str(other_net))}; give every zone its own block"
                )
    endpoints = raw.operator_endpoints
    if exposure["postgres"] is Exposure.NONE and not endpoints.postgres_host:
        problems.append(
            f"{PROJECT}:publish.postgres = none leaves the Postgres provider no way in; publish it on the "
            "operator bind or set operator_endpoints.postgres_host to a reachable address"
        )
    if exposure["keycloak"] is Exposure.NONE and not endpoints.keycloak_url:
        problems.append(
            f"{PROJECT}:publish.keycloak = none leaves the Keycloak provider no way in; publish it on the "
            "operator bind or set operator_endpoints.keycloak_url to a reachable URL"
        )
    known = set(raw.keycloak.all_groups)
    for index, user in enumerate(raw.keycloak.users):
        for group in user.groups:
            if group not in known:
                problems.append(
                    f"{PROJECT}:keycloak.test_users[{index}].groups names {_show(group)}, which is not a group of "
                    f"the realm; use one of {', '.join(sorted(known))} or add it to keycloak.groups"
                )
    return problems


_PRIVATE_BLOCKS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
# R-OBS-1's alerts use 5-minute windows; rate() needs at least four samples in one.
MAX_SCRAPE_INTERVAL_SECONDS = 75
# R-NET-6: DataLens publishes a few small source ranges; a wider block is (nearly) the internet.
_WIDEST_ALLOW = {4: 16, 6: 32}
# Sources that let any host, inline code or eval into a page (R-APP-3: CSP limits what a page may load).
_UNSAFE_CSP = re.compile(r"^(\*.*|[a-z][a-z0-9+.-]*:|'unsafe-[a-z-]+'|[a-z][a-z0-9+.-]*://\*.*)$", re.IGNORECASE)
_SAFE_SCHEME_SOURCES = {"img-src": {"data:", "blob:"}, "media-src": {"data:", "blob:"}, "font-src": {"data:"}}


def _is_loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost" or host.endswith(".localhost")


def _origin_host(origin: str) -> str:
    return origin.split("://", 1)[1].rsplit(":", 1)[0] if origin.count(":") > 1 else origin.split("://", 1)[1]


def _prod_origin_problem(key: str, origin: str, requirement: str) -> str | None:
    """Why an origin is insecure in prod, as a sentence, or None."""
    if origin.startswith("http://"):
        return (
            f"{PROJECT}:{key} = {_show(origin)} is plain http; prod trusts https:// origins only, "
            f"e.g. https://datalens.yandex.ru ({requirement})"
        )
    host = _origin_host(origin)
    if _is_loopback_host(host) or "." not in host:
        return (
            f"{PROJECT}:{key} = {_show(origin)} is not a public origin (any visitor's own machine would match); "
            f"list the real https:// origin ({requirement})"
        )
    return None


def _network_and_profile_problems(
    raw: RawSettings, ports: dict[str, int], host_ports: dict[str, int], exposure: dict[str, Exposure]
) -> list[str]:
    """Values that parse but would weaken a requirement: bind addresses, origins, dev-only and prod-only keys."""
    prod = raw.profile is Profile.PROD
    problems: list[str] = []

    # R-NET-3 (every profile, mandatory): a dev stack publishes on loopback only.
    if not prod and raw.public_bind_address is not None and not _is_loopback_host(raw.public_bind_address):
        problems.append(
            f"{PROJECT}:public_bind_address = {_show(raw.public_bind_address)} publishes a dev stack on the network; "
            "dev binds loopback only: remove the key or use 127.0.0.1 (R-NET-3)"
        )
    # R-NET-2: the operator bind (postgres, keycloak for providers and SSH tunnels) is never routable.
    if not _is_loopback_host(raw.operator_bind_address):
        problems.append(
            f"{PROJECT}:operator_bind_address = {_show(raw.operator_bind_address)} would publish postgres and keycloak "
            "on the network; use 127.0.0.1 and reach it over SSH (R-NET-2)"
        )
    if raw.public_address is not None:
        address = ipaddress.ip_address(raw.public_address)
        if address.is_unspecified or address.is_multicast or (prod and address.is_loopback):
            problems.append(
                f"{PROJECT}:public_address = {_show(raw.public_address)} is not an address the domain can resolve to "
                "for users; set the server's public IP or remove the key (R-OPS-1)"
            )
    if prod and (raw.domain == "localhost" or raw.domain.endswith(".localhost") or "." not in raw.domain):
        problems.append(
            f"{PROJECT}:domain = {_show(raw.domain)} is not a public DNS name; prod needs the name users type, "
            "e.g. flypotato.example.com (R-OPS-1, R-AUTH-3)"
        )
    if prod and re.fullmatch(r"[0-9.]+", raw.domain):
        problems.append(
            f"{PROJECT}:domain = {_show(raw.domain)} is an IP address; prod needs a DNS name for its certificate "
            "and the DNS check, e.g. flypotato.example.com (R-OPS-1)"
        )

    # Two listeners of one service on one container port: the public one would serve the other's
    # endpoints (metrics, Keycloak's management port) (R-AUTH-2, R-SEC-5).
    claimed: dict[tuple[str, int], str] = {}
    for name, item in LISTENERS.items():
        other = claimed.setdefault((item.service, ports[name]), name)
        if other != name:
            problems.append(
                f"{PROJECT}:ports.{name} = {ports[name]} is also ports.{other} of the same container; give each "
                "listener of a service its own port"
            )
    # R-NET-1: on a routable public address nginx answers 443 (and 80 for the redirect) only.
    public = raw.public_bind_address or ("0.0.0.0" if prod else "127.0.0.1")
    if prod and not _is_loopback_host(public):
        for name, wanted in (("nginx_https", 443), ("nginx_http", 80)):
            if exposure[name] is Exposure.PUBLIC and host_ports[name] != wanted:
                problems.append(
                    f"{PROJECT}:host_ports.{name} = {host_ports[name]} on the routable {public} is not {wanted}; "
                    f"prod answers users on {wanted} only: remove the key, or bind public_bind_address to "
                    "127.0.0.1 behind another proxy (R-NET-1)"
                )

    # Zones: prod's inner zones are internal (R-NET-4, R-NET-5); subnets are private and disjoint.
    for zone, override in _dump(raw.zones).items():
        if prod and override and override.get("internal") is False and zone in (Zone.APP, Zone.DATA, Zone.MONITORING):
            problems.append(
                f"{PROJECT}:zones.{zone}.internal = false would let the {zone} zone reach outside the host; "
                "remove the key (prod's inner zones are internal) (R-NET-4, R-NET-5)"
            )
        subnet = (override or {}).get("subnet")
        if subnet:
            net = ipaddress.ip_network(subnet)
            if net.version == 4 and not any(net.subnet_of(block) for block in _PRIVATE_BLOCKS):  # type: ignore[arg-type]
                problems.append(
                    f"{PROJECT}:zones.{zone}.subnet = {_show(str(net))} is not a private (RFC 1918) block; pg_hba "
                    "and Keycloak trust it: use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16, "
                    "such as 10.231.40.0/24"
                )

    # R-NET-5: only the services that need the outside join egress, and only for their own purposes.
    for index, rule in enumerate(raw.egress):
        if rule.service not in SERVICES:
            continue  # named by the unknown-service sentence
        purposes = EGRESS_SERVICES.get(rule.service)
        if purposes is None:
            problems.append(
                f"{PROJECT}:egress[{index}].service = {_show(rule.service)} must never leave the host; egress is for "
                + ", ".join(f"{s} ({'|'.join(sorted(p))})" for s, p in EGRESS_SERVICES.items())
                + " (R-NET-5)"
            )
        elif rule.purpose not in purposes:
            problems.append(
                f"{PROJECT}:egress[{index}].purpose = {_show(rule.purpose)} is not what {rule.service} leaves the host "
                f"for; it may use {', '.join(sorted(purposes))} (R-NET-5)"
            )

    # R-NET-6: DataLens sources are its published ranges, never (nearly) the whole internet.
    for index, cidr in enumerate(raw.datalens.allow_list):
        net = ipaddress.ip_network(cidr)
        if 0 < net.prefixlen < _WIDEST_ALLOW[net.version]:
            problems.append(
                f"{PROJECT}:datalens.allow_list[{index}] = {_show(cidr)} is wider than a "
                f"/{_WIDEST_ALLOW[net.version]}; "
                "list DataLens' published source ranges instead (R-NET-6)"
            )

    # R-APP-2, R-APP-3: prod trusts https origins on public names only.
    if prod:
        for key, origins, requirement in (
            ("cors_origins", raw.cors_origins, "R-APP-2"),
            ("datalens.embed_origins", raw.datalens.embed_origins, "R-APP-3"),
        ):
            for index, origin in enumerate(origins):
                problem = _prod_origin_problem(f"{key}[{index}]", origin, requirement)
                if problem:
                    problems.append(problem)
    for directive, sources in raw.edge.csp_extra.items():
        for index, source in enumerate(sources):
            if _UNSAFE_CSP.match(source) and source.lower() not in _SAFE_SCHEME_SOURCES.get(directive, set()):
                problems.append(
                    f"{PROJECT}:edge.csp_extra.{directive}[{index}] = {_show(source)} lets any host, inline code or "
                    "eval in; list exact origins such as https://sentry.example.com (R-APP-3)"
                )
            elif prod and source.lower().startswith(("http://", "ws://")):
                problems.append(
                    f"{PROJECT}:edge.csp_extra.{directive}[{index}] = {_show(source)} is plain http; prod pages load "
                    "from https:// origins only (R-APP-3)"
                )

    # Dev-only and prod-mandatory switches.
    if prod and raw.keycloak.test_users:
        problems.append(
            f"{PROJECT}:keycloak.test_users is refused in prod; test users exist only in dev stacks: remove the key"
        )
    if prod and not raw.features.monitoring:
        problems.append(
            f"{PROJECT}:features.monitoring = false is refused in prod; its alerts (certificate expiry, database down, "
            "5xx) are required: remove the key (R-OBS-1, R-TLS-4)"
        )
    if prod and not raw.features.backups:
        problems.append(
            f"{PROJECT}:features.backups = false is refused in prod; daily dumps and the WAL archive are required: "
            "remove the key (R-DB-2)"
        )
    if prod and raw.host.egress_rules is False:
        problems.append(
            f"{PROJECT}:host.egress_rules = false is refused in prod; the egress zone would reach any address: "
            "remove the key (R-NET-5)"
        )
    if prod and raw.host.ssh is not None and raw.host.ssh.host_key is None:
        problems.append(
            f"{PROJECT}:host.ssh.host_key is required in prod; without it anyone in the path can answer for the host: "
            "set it to the line of `ssh-keyscan -t ed25519 HOST` without the host name"
        )

    # Keycloak's admin console never on the public name (R-AUTH-2).
    admin_url = raw.keycloak.admin_url
    if prod and admin_url and admin_url.split("://", 1)[1].split(":", 1)[0] == raw.domain:
        problems.append(
            f"{PROJECT}:keycloak.admin_url = {_show(admin_url)} puts the admin console on the public name; use the "
            "operator endpoint over SSH, e.g. http://localhost:18080 (R-AUTH-2)"
        )

    # The providers send the superuser and admin passwords without TLS: loopback or a tunnel's local end only.
    endpoints = raw.operator_endpoints
    if endpoints.postgres_host is not None and not _is_loopback_host(endpoints.postgres_host):
        problems.append(
            f"{PROJECT}:operator_endpoints.postgres_host = {_show(endpoints.postgres_host)} is not this machine; the "
            "provider logs in as the superuser without TLS: open an SSH tunnel and use localhost "
            "(docs/remote-docker-host.md)"
        )
    keycloak_url = endpoints.keycloak_url
    if keycloak_url and keycloak_url.startswith("http://"):
        host = keycloak_url.split("://", 1)[1].split(":", 1)[0]
        if not _is_loopback_host(host):
            problems.append(
                f"{PROJECT}:operator_endpoints.keycloak_url = {_show(keycloak_url)} sends the admin password in plain "
                "http over the network; open an SSH tunnel and use http://localhost:PORT (docs/remote-docker-host.md)"
            )

    # Alerts leave the host only encrypted, through the egress allow-list (R-OBS-1, R-NET-5).
    alerting = raw.alerting
    if prod and not alerting.smtp_require_tls:
        problems.append(
            f"{PROJECT}:alerting.smtp_require_tls = false is refused in prod; alert mail and the SMTP password "
            "would travel in clear: remove the key"
        )
    if prod and alerting.smtp_smarthost and alerting.smtp_smarthost.rpartition(":")[2] not in ("465", "587"):
        problems.append(
            f"{PROJECT}:alerting.smtp_smarthost = {_show(alerting.smtp_smarthost)} is not on 587 or 465, the only "
            "SMTP ports prod lets out; use the provider's submission port (R-NET-5)"
        )
    if prod and alerting.webhook_url is not None and not alerting.webhook_url.get_secret_value().startswith("https://"):
        problems.append(f"{PROJECT}:alerting.webhook_url = [secret] is not https://; prod sends alerts over TLS only")
    if raw.monitoring.scrape_interval_seconds > MAX_SCRAPE_INTERVAL_SECONDS:
        problems.append(
            f"{PROJECT}:monitoring.scrape_interval_seconds = {raw.monitoring.scrape_interval_seconds} leaves fewer "
            f"than four samples in the alerts' 5-minute windows; use {MAX_SCRAPE_INTERVAL_SECONDS} or less (R-OBS-1)"
        )
    rotated_on = raw.secrets.rotated_on
    if rotated_on is not None and (rotated_on - date.today()).days > 1:
        problems.append(
            f"{PROJECT}:secrets.rotated_on = {rotated_on.isoformat()} is in the future, which would hide the 90-day "
            "rotation warning; set the day of the last rotation (R-SEC-4)"
        )
    return problems


def _default_subnet_overlaps(raw: RawSettings, project: str, stack: str) -> list[str]:
    """A configured zone subnet must not overlap another zone's default block (configured pairs are checked
    in :func:`_data_and_identity_problems`)."""
    configured = {zone: cfg["subnet"] for zone, cfg in _dump(raw.zones).items() if cfg and cfg.get("subnet")}
    if not configured:
        return []
    probe = Settings.model_construct(project=project, stack=stack, raw=raw)
    problems = []
    for zone, subnet in configured.items():
        net = ipaddress.ip_network(subnet)
        for other, other_subnet in probe.zone_subnets.items():
            overlaps = net.overlaps(ipaddress.ip_network(other_subnet))
            if other.value != zone and other.value not in configured and overlaps:
                problems.append(
                    f"{PROJECT}:zones.{zone}.subnet = {_show(str(net))} overlaps zones.{other.value}.subnet = "
                    f"{_show(other_subnet)}; give every zone its own block"
                )
    return problems


def _resolve(raw: RawSettings, project: str, stack: str) -> tuple[Settings | None, list[str]]:
    profile = raw.profile
    problems: list[str] = []

    def merged(section: BaseModel, default: Any) -> dict[str, Any]:
        given = {k: v for k, v in section.model_dump().items() if v is not None}
        return {name: given.get(name, default(item)) for name, item in LISTENERS.items()}

    ports = merged(raw.ports, lambda item: item.port(profile))
    host_ports = merged(raw.host_ports, lambda item: item.host_port(profile))
    exposure: dict[str, Exposure] = merged(raw.publish, lambda item: item.exposure(profile))
    if not raw.features.http_redirect and raw.features.http_redirect is not None and raw.publish.nginx_http is None:  # type: ignore[attr-defined]
        exposure["nginx_http"] = Exposure.NONE if profile is Profile.PROD else exposure["nginx_http"]
    if raw.datalens.allow_list and raw.publish.datalens is None:  # type: ignore[attr-defined]
        exposure["datalens"] = Exposure.PUBLIC

    images = {k: v for k, v in _dump(raw.images).items() if v}
    for name in SERVICES:
        if name not in images:
            problems.append(
                f"{PROJECT}:images.{name} is required; set it with "
                f"`pulumi config set --path images.{name} REPOSITORY:TAG`"
                + (" pinned by digest (REPOSITORY@sha256:...)" if profile is Profile.PROD else "")
            )
        elif profile is Profile.PROD and not _DIGEST_PINNED.match(images[name]):
            problems.append(
                f"{PROJECT}:images.{name} = {_show(images[name])} is not pinned by digest; prod needs "
                "REPOSITORY@sha256:<64 hex> or a local image id sha256:<64 hex> (R-SEC-3)"
            )

    resources = default_resources(profile)
    for name, override in _dump(raw.resources).items():
        if override:
            base = resources[name]
            resources[name] = Resources(
                cpus=override["cpus"] if override["cpus"] is not None else base.cpus,
                memory_mb=override["memory"] if override["memory"] is not None else base.memory_mb,
                pids=override["pids"] if override["pids"] is not None else base.pids,
            )

    zone_internal = {
        zone: (profile is Profile.PROD and zone in {Zone.APP, Zone.DATA, Zone.MONITORING}) for zone in Zone
    }
    for zone, override in _dump(raw.zones).items():
        if override and override.get("internal") is not None:
            zone_internal[Zone(zone)] = override["internal"]
    for zone in (Zone.EDGE, Zone.EGRESS, Zone.OPERATOR):
        if zone_internal[zone]:
            problems.append(
                f"{PROJECT}:zones.{zone.value}.internal = true would cut the zone off the host; "
                f"remove the key (the {zone.value} zone exists to reach outside)"
            )

    for index, rule in enumerate(raw.egress):
        where = f"{PROJECT}:egress[{index}]"
        if rule.service not in SERVICES:
            close = difflib.get_close_matches(rule.service, list(SERVICES), n=1)
            problems.append(
                f"{where}.service = {_show(rule.service)} is not a service of the platform"
                + (f"; did you mean {close[0]}?" if close else "")
            )
        allowed_ports, allowed_protocols = EGRESS_PURPOSES[rule.purpose]
        if rule.port not in allowed_ports or rule.protocol not in allowed_protocols:
            problems.append(
                f"{where} = {rule.purpose} on {rule.port}/{rule.protocol} is outside the egress allow-list; "
                f"{rule.purpose} may use {', '.join(map(str, sorted(allowed_ports)))}/"
                f"{'|'.join(sorted(allowed_protocols))} (R-NET-5)"
            )

    for index, cidr in enumerate(raw.datalens.allow_list):
        if ipaddress.ip_network(cidr).prefixlen == 0:
            problems.append(
                f"{PROJECT}:datalens.allow_list[{index}] = {_show(cidr)} opens Postgres to the whole internet; "
                "list DataLens' published source ranges instead (R-NET-6)"
            )

    if profile is Profile.PROD and raw.features.seed_test_users:
        problems.append(
            f"{PROJECT}:features.seed_test_users = true is refused in prod; test users exist only in dev stacks"
        )
    if raw.tls.mode == "provided" and not (raw.tls.certificate_pem and raw.tls.private_key_pem):
        problems.append(
            f'{PROJECT}:tls.mode = "provided" needs tls.certificate_pem and a secret tls.private_key_pem; set '
            'them with `pulumi config set --path tls.certificate_pem -- "$(cat chain.pem)"` and '
            '`pulumi config set --secret --path tls.private_key_pem -- "$(cat key.pem)"`'
        )
    if raw.tls.renew_before_days >= raw.tls.validity_days:
        problems.append(
            f"{PROJECT}:tls.renew_before_days = {raw.tls.renew_before_days} is not below tls.validity_days = "
            f"{raw.tls.validity_days}; the certificate would be renewed on every update"
        )

    # Two published listeners must not claim the same host address and port.
    seen: dict[tuple[str, int], str] = {}
    public = raw.public_bind_address or ("0.0.0.0" if profile is Profile.PROD else "127.0.0.1")
    for name in LISTENERS:
        ip = {Exposure.PUBLIC: public, Exposure.OPERATOR: raw.operator_bind_address}.get(exposure[name])
        if ip is None:
            continue
        for (other_ip, other_port), other in seen.items():
            overlap = ip == other_ip or "0.0.0.0" in (ip, other_ip) or "::" in (ip, other_ip)
            if overlap and other_port == host_ports[name]:
                wildcard = ip != other_ip and "0.0.0.0" in (ip, other_ip)
                fix = (
                    "set public_bind_address to the server's public IP, or choose another host port"
                    if wildcard
                    else "choose another host port for one of them"
                )
                problems.append(
                    f"{PROJECT}:host_ports.{name} = {host_ports[name]} collides with {other} on "
                    f"{other_ip}:{other_port}; {fix}"
                )
        seen[(ip, host_ports[name])] = name

    problems += _data_and_identity_problems(raw, exposure)
    problems += _network_and_profile_problems(raw, ports, host_ports, exposure)
    problems += _default_subnet_overlaps(raw, project, stack)

    if problems:
        return None, problems
    return (
        Settings(
            project=project,
            stack=stack,
            raw=raw,
            ports=ports,
            host_ports=host_ports,
            exposure=exposure,
            images=images,
            resources=resources,
            zone_internal=zone_internal,
        ),
        [],
    )


def parse_settings(config: Mapping[str, Any], *, stack: str, project: str = PROJECT) -> Settings:
    """Validate a mapping of config keys (with or without the ``project:`` prefix) into ``Settings``."""
    data: dict[str, Any] = {}
    foreign: list[str] = []
    for key, value in config.items():
        namespace, _, name = key.rpartition(":")
        if namespace and namespace != project:
            continue  # provider settings such as docker:host belong to their providers
        if not name or name in data:
            foreign.append(key)
        data[name] = _decode(value)
    try:
        raw = RawSettings.model_validate(data)
    except ValidationError as error:
        raise SettingsError([_sentence(e) for e in error.errors(include_url=False)]) from None
    settings, problems = _resolve(raw, project, stack)
    if problems:
        raise SettingsError(problems)
    assert settings is not None
    return settings


def load_settings() -> Settings:
    """Read the running stack's config (under the engine or under mocks)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    config = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return parse_settings(config, stack=pulumi.get_stack(), project=pulumi.get_project())
