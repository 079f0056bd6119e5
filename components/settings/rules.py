"""Cross-field rules: values that parse but cannot work together or would weaken a requirement."""

from __future__ import annotations

import ipaddress
import re
from datetime import date

from components.catalog import (
    EGRESS_SERVICES,
    LISTENERS,
    SERVICES,
    Exposure,
    Profile,
    Zone,
)
from components.settings.errors import PROJECT, _show
from components.settings.models import RawSettings, _dump
from components.settings.resolved import Settings


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
