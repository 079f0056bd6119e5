"""Stack settings: every ``fly-potato:*`` config key, read once and validated before any resource exists.

A bad value stops the program with one sentence per problem that names the key and the fix, e.g.
``fly-potato:ports.postgres = 70000 is not a TCP port (1-65535)``.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from components.catalog import (
    EGRESS_PURPOSES,
    LISTENERS,
    SERVICES,
    Exposure,
    Listener,
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
    if not re.match(r"^https?://[a-z0-9.-]+(:\d{1,5})?$", value):
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
    model_config = ConfigDict(extra="forbid", frozen=True)


def _listener_fields(kind: Any) -> dict[str, Any]:
    return {name: (kind | None, None) for name in LISTENERS}


def _service_fields(kind: Any) -> dict[str, Any]:
    return {name: (kind | None, None) for name in SERVICES}


# Per-listener and per-service maps are models with one optional field each, so an unknown key is an
# error that names the key (and suggests the closest known one) instead of being ignored.
from pydantic import create_model  # noqa: E402

PortsConfig = create_model("PortsConfig", __base__=_Strict, **_listener_fields(Port))  # type: ignore[call-overload]
PublishConfig = create_model("PublishConfig", __base__=_Strict, **_listener_fields(Exposure))  # type: ignore[call-overload]
ImagesConfig = create_model("ImagesConfig", __base__=_Strict, **_service_fields(str))  # type: ignore[call-overload]


class ResourceConfig(_Strict):
    cpus: Cpus | None = None
    memory: MemoryMB | None = None
    pids: Pids | None = None


ResourcesConfig = create_model("ResourcesConfig", __base__=_Strict, **_service_fields(ResourceConfig))  # type: ignore[call-overload]


class ZoneConfig(_Strict):
    internal: bool | None = None


ZonesConfig = create_model(  # type: ignore[call-overload]
    "ZonesConfig", __base__=_Strict, **{z.value: (ZoneConfig | None, None) for z in Zone}
)


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


class TlsConfig(_Strict):
    """Server certificate: a per-stack internal CA, or a chain and key provided as secrets."""

    mode: Literal["internal_ca", "provided"] = "internal_ca"
    certificate_pem: str | None = None
    private_key_pem: SecretStr | None = None
    validity_days: Annotated[int, Field(ge=30, le=397)] = 90
    renew_before_days: Annotated[int, Field(ge=15, le=180)] = 30


class KeycloakConfig(_Strict):
    realm: str | None = None  # default: fly-potato-<stack>
    admin_user: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{2,31}$")] = "platform-admin"
    admin_hostname: Domain | None = None
    groups_full_path: bool = False
    test_users: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_.-]{1,31}$")]] = Field(default_factory=list)


class AlertingConfig(_Strict):
    email_to: list[str] = Field(default_factory=list)
    smtp_smarthost: str | None = None
    smtp_from: str | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    webhook_url: SecretStr | None = None


class MonitoringConfig(_Strict):
    retention_days: Annotated[int, Field(ge=1, le=90)] = 15


class BackupConfig(_Strict):
    dump_retention_days: Annotated[int, Field(ge=14, le=30)] = 14
    wal_retention_days: Annotated[int, Field(ge=7, le=14)] = 7
    archive_timeout_seconds: Annotated[int, Field(ge=30, le=300)] = 60
    schedule_utc: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "02:30"


class SecretsConfig(_Strict):
    """R-SEC-4: bump rotation_epoch to rotate every generated secret of the stack."""

    rotation_epoch: Annotated[int, Field(ge=1)] = 1
    rotated_on: date | None = None


class RawSettings(_Strict):
    """The shape of the stack config, as written in Pulumi.<stack>.yaml (without the project prefix)."""

    profile: Profile
    domain: Domain
    public_bind_address: IPAddress | None = None
    operator_bind_address: IPAddress = "127.0.0.1"
    ports: PortsConfig = Field(default_factory=PortsConfig)  # type: ignore[valid-type]
    host_ports: PortsConfig = Field(default_factory=PortsConfig)  # type: ignore[valid-type]
    publish: PublishConfig = Field(default_factory=PublishConfig)  # type: ignore[valid-type]
    images: ImagesConfig = Field(default_factory=ImagesConfig)  # type: ignore[valid-type]
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)  # type: ignore[valid-type]
    zones: ZonesConfig = Field(default_factory=ZonesConfig)  # type: ignore[valid-type]
    egress: list[EgressRule] = Field(default_factory=list)
    datalens: DataLensConfig = Field(default_factory=DataLensConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    cors_origins: list[Origin] = Field(default_factory=list)
    tls: TlsConfig = Field(default_factory=TlsConfig)
    keycloak: KeycloakConfig = Field(default_factory=KeycloakConfig)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    secrets: SecretsConfig = Field(default_factory=SecretsConfig)
    public_address: IPAddress | None = None  # where DNS must point (R-OPS-1); unset = any address


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
        return sorted(zones, key=lambda z: list(Zone).index(z))

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
                problems.append(
                    f"{PROJECT}:host_ports.{name} = {host_ports[name]} collides with {other} on "
                    f"{other_ip}:{other_port}; choose another host port for one of them"
                )
        seen[(ip, host_ports[name])] = name

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


def listener(name: str) -> Listener:
    return LISTENERS[name]
