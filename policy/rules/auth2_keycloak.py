"""R-AUTH-2: Keycloak 26 runs behind nginx at /sso with proxy headers; only /sso/realms/ and
/sso/resources/ are public; the admin console and management port never are."""

from __future__ import annotations

from pulumi_policy import StackValidationArgs

from policy import context, nginx, spec
from policy.props import is_unknown
from policy.rules._base import Report, StackRule, StackView

ID = "keycloak-proxy-exposure"
SERVICE = "keycloak"


def validate(args: StackValidationArgs, report: Report) -> None:
    ctx = context.current()
    view = StackView.of(args)
    keycloak = view.workload(SERVICE)  # a container, or a Swarm service
    if keycloak is None:
        return
    env = keycloak.env()
    for name, wanted in spec.KEYCLOAK_REQUIRED_ENV.items():
        if is_unknown(env.get(name)):
            report(f"keycloak {name} is not known at preview", keycloak.urn)
        elif env.get(name) != wanted:
            report(f"keycloak {name}={env.get(name)!r}; Keycloak 26 behind nginx needs {wanted!r}", keycloak.urn)
    for name in spec.KEYCLOAK_REMOVED_ENV:
        if name in env:
            report(
                f"keycloak sets {name}, an option Keycloak 26 removed (use KC_PROXY_HEADERS and KC_HOSTNAME)",
                keycloak.urn,
            )
    hostname = env.get("KC_HOSTNAME")
    if ctx.is_prod:
        if (
            not isinstance(hostname, str)
            or not hostname.startswith("https://")
            or not hostname.rstrip("/").endswith(spec.KEYCLOAK_PATH)
        ):
            report(f"keycloak KC_HOSTNAME={hostname!r}; prod needs https://DOMAIN/sso", keycloak.urn)
        if "start-dev" in keycloak.command():
            report("keycloak runs start-dev in prod", keycloak.urn)
    management = env.get("KC_HTTP_MANAGEMENT_PORT", str(spec.KEYCLOAK_MANAGEMENT_PORT))
    for binding in keycloak.bindings():
        if str(binding.container_port) == str(management):
            report(f"keycloak publishes its management port: {binding.describe()}", keycloak.urn)
        elif not spec.is_loopback(binding.ip):
            report(
                f"keycloak is published directly on {binding.describe()}; it is public only via nginx /sso",
                keycloak.urn,
            )
    edge = view.workload(spec.PUBLIC_SERVICE)  # with nginx.conf from its uploads or its Swarm configs
    if edge is None:
        return
    try:
        config = nginx.load(edge)
    except nginx.ConfigUnavailableError as error:
        if ctx.is_prod:
            report(f"cannot check nginx's /sso routes: {error}", edge.urn)
        return
    proxied: set[str] = set()
    for server in config.http_servers():
        for location in server.locations():
            upstream = nginx.upstream_of(location)
            hosts = [nginx.host_of(target) for target in (upstream or "").split("|") if target]
            if not any(host.split(":")[0].startswith(SERVICE) for host in hosts):
                continue
            path = location.args[-1] if location.args else ""
            regex = bool(location.args) and location.args[0] in ("~", "~*")
            if any(host.endswith(f":{management}") for host in hosts):
                report(f"nginx location {' '.join(location.args)} proxies Keycloak's management port", edge.urn)
            if regex or not path.startswith(spec.KEYCLOAK_PUBLIC_PREFIXES):
                report(
                    f"nginx location {' '.join(location.args)} exposes Keycloak beyond /sso/realms/ and "
                    "/sso/resources/ (the admin console must stay private)",
                    edge.urn,
                )
            else:
                proxied.update(p for p in spec.KEYCLOAK_PUBLIC_PREFIXES if path.startswith(p))
    if ctx.is_prod:
        for prefix in spec.KEYCLOAK_PUBLIC_PREFIXES:
            if prefix not in proxied:
                report(f"nginx does not route {prefix} to Keycloak", edge.urn)


POLICY = StackRule(
    ID,
    "R-AUTH-2",
    "Keycloak behind nginx at /sso with proxy headers; only /sso/realms/ and /sso/resources/ public",
    validate,
)
