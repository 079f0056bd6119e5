"""What docs/requirements.md requires, as data the policies compare against.

Deliberately independent of ``components/``: the pack checks the program, so it does not take the
program's own catalog as the truth.
"""

from __future__ import annotations

import ipaddress

# R-NET-1: the only routable host bindings in prod.
PUBLIC_SERVICE = "nginx"
PUBLIC_HTTPS_PORT = 443
PUBLIC_HTTP_PORT = 80

# R-NET-4: who may join each zone ("Zones" of docs/requirements.md). The blackbox probe reaches the app zone
# to probe the services it watches.
ZONE_MEMBERS: dict[str, frozenset[str]] = {
    "edge": frozenset({"nginx"}),
    "app": frozenset({"nginx", "oauth2_proxy", "backend", "keycloak", "blackbox_exporter"}),
    "data": frozenset({"backend", "migration", "postgres", "keycloak", "postgres_exporter", "sql_exporter", "backup"}),
    "monitoring": frozenset(
        {
            "prometheus",
            "alertmanager",
            "node_exporter",
            "postgres_exporter",
            "sql_exporter",
            "blackbox_exporter",
            "container_exporter",
            "backend",
            "keycloak",
            "oauth2_proxy",
            "nginx",
            "backup",
        }
    ),
}
# Members a zone admits only while a feature is on: nginx reaches Postgres for the DataLens proxy (R-NET-6).
CONDITIONAL_MEMBERS: dict[tuple[str, str], str] = {("data", "nginx"): "datalens.allow_list"}
NEVER_IN: dict[str, frozenset[str]] = {"postgres": frozenset({"edge", "app"})}
# Services with an operator listener (docs/requirements.md "Services and ports"): on a swarm the only members
# of the operator zone's internal overlay, next to the operator proxy.
OPERATOR_SERVICES = ("keycloak", "postgres")
INNER_ZONES = ("app", "data", "monitoring")  # internal: true in prod

# R-NET-5: purposes a service may reach outside for, with their ports and protocols.
EGRESS_PURPOSES: dict[str, tuple[frozenset[int], frozenset[str]]] = {
    "dns": (frozenset({53}), frozenset({"udp", "tcp"})),
    "ntp": (frozenset({123}), frozenset({"udp"})),
    "object_storage": (frozenset({443}), frozenset({"tcp"})),
    "smtp": (frozenset({587, 465}), frozenset({"tcp"})),
    "idp": (frozenset({443}), frozenset({"tcp"})),
}

# R-TLS-1: Mozilla "intermediate" (server side TLS v5.7) for TLS 1.2; TLS 1.3 suites are not configurable.
TLS_PROTOCOLS = frozenset({"TLSv1.2", "TLSv1.3"})
INTERMEDIATE_CIPHERS = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    }
)
# R-TLS-2
HSTS_MIN_MAX_AGE = 31536000

# R-TLS-4: keys and the renewal window. Renewal must start before the 14-day expiry alert fires.
MIN_RSA_BITS = 2048
ECDSA_CURVES = frozenset({"P256", "P384", "P521"})
EXPIRY_ALERT_DAYS = 14
MIN_EARLY_RENEWAL_HOURS = (EXPIRY_ALERT_DAYS + 1) * 24
MAX_LEAF_VALIDITY_HOURS = 397 * 24

# R-AUTH-1: oauth2-proxy options required in prod (config-file names; flags use dashes).
OAUTH2_PROXY_REQUIRED: dict[str, object] = {
    "cookie_secure": True,
    "cookie_httponly": True,
    "cookie_samesite": "lax",
    "pass_access_token": True,
    "reverse_proxy": True,
}
COOKIE_SECRET_BYTES = 32

# R-AUTH-2: Keycloak 26 behind nginx at /sso.
KEYCLOAK_PATH = "/sso"
KEYCLOAK_PUBLIC_PREFIXES = ("/sso/realms/", "/sso/resources/")
KEYCLOAK_REQUIRED_ENV = {"KC_HTTP_RELATIVE_PATH": "/sso", "KC_PROXY_HEADERS": "xforwarded", "KC_HTTP_ENABLED": "true"}
KEYCLOAK_REMOVED_ENV = (
    "KC_PROXY",
    "KC_HOSTNAME_URL",
    "KC_HOSTNAME_ADMIN_URL",
    "KC_HOSTNAME_PATH",
    "KC_HOSTNAME_PORT",
    "KC_HOSTNAME_STRICT_BACKCHANNEL",
)
KEYCLOAK_MANAGEMENT_PORT = 9000

# R-SEC-1: environment variable names that must not carry a secret value.
SECRET_NAME_PARTS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "PRIVATE_KEY", "API_KEY", "CREDENTIALS")

# R-SEC-2
ALLOWED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
# The host paths a container may see, read-only, and who: the Docker socket for the restart-count
# exporter (R-OBS-1 container_restarts), the kernel's /proc and /sys for node_exporter (host metrics).
# Source code and other host paths are never bind-mounted.
DOCKER_SOCKET = "/var/run/docker.sock"
HOST_READERS: dict[str, frozenset[str]] = {
    "container_exporter": frozenset({DOCKER_SOCKET, "/run/docker.sock"}),
    "node_exporter": frozenset({"/proc", "/sys"}),
}
ROTATING_LOG_DRIVERS = frozenset({"json-file", "local"})
RESTART_POLICIES = frozenset({"always", "unless-stopped", "on-failure"})

# R-SEC-4
MAX_ROTATION_AGE_DAYS = 90


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def is_routable(address: str) -> bool:
    """True for every address other than loopback (0.0.0.0 and :: bind every interface)."""
    return not is_loopback(address)
