"""The shape of the stack config: one strict model per section, ``RawSettings`` the whole."""

from __future__ import annotations

import re
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    ValidationInfo,
    create_model,
    field_validator,
)
from pydantic_core import PydanticCustomError

from components.catalog import (
    Exposure,
    Profile,
    Zone,
)
from components.settings.fields import (
    Cidr,
    Cpus,
    Domain,
    IPAddress,
    MemoryMB,
    Origin,
    Pids,
    Port,
    _listener_fields,
    _service_fields,
    _Strict,
)
from components.settings.swarm import SwarmConfig, Target

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
    # Its form is checked by components.server_certificate (errors here echo input).
    private_key_pem: SecretStr | None = None
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
    target: Target = "host"
    """Where the platform runs: `host` (containers on one Docker host) or `swarm` (services on a Docker Swarm)."""
    swarm: SwarmConfig = Field(default_factory=SwarmConfig)
    """The swarm's manager, registry, replicas and node roles (used when target is `swarm`)."""


def _dump(section: Any) -> dict[str, Any]:
    """model_dump of the generated per-service/per-listener models (typed as Any for mypy)."""
    return dict(section.model_dump())
