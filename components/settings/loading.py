"""Loading: config keys in, validated ``Settings`` out, or a ``SettingsError`` with every problem."""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from components.catalog import (
    EGRESS_PURPOSES,
    LISTENERS,
    SERVICES,
    Exposure,
    Profile,
    Resources,
    Zone,
    default_resources,
)
from components.settings.errors import PROJECT, SettingsError, _sentence, _show
from components.settings.models import RawSettings, _dump
from components.settings.resolved import Settings
from components.settings.rules import (
    _data_and_identity_problems,
    _default_subnet_overlaps,
    _network_and_profile_problems,
)
from components.settings.swarm import swarm_problems

_DIGEST_PINNED = re.compile(r"^(?:[^@\s]+@sha256:[0-9a-f]{64}|sha256:[0-9a-f]{64})$")


def _decode(value: Any) -> Any:
    """Pulumi hands structured config over as JSON text and scalars as plain text."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


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
    problems += swarm_problems(raw, images, exposure)

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
