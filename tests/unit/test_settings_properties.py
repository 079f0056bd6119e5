"""Every stack-config key of docs/config.md, given ordinary and hostile values (hypothesis, bounded examples).

Three properties over the config model (components/settings/):

- a value either parses or is refused with ``SettingsError``: nothing else is ever raised;
- every refusal is one sentence per problem that names a key the example changed;
- every prod config the settings accept plans offline (policy_plan/plan.py) with 0 mandatory violations: a value
  that would weaken a requirement is refused at config time, not found by the policy pack after the fact.

``publish.<listener>`` is the one exception, on purpose: publishing a listener publicly in prod is reported by
the policy pack (R-NET-1, R-NET-2, R-NET-4; tests/e2e/test_policy_gate.py needs the preview to fail there), so
its property is that every mandatory violation it causes is one of those port and zone rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.catalog import LISTENERS, SERVICES, Profile, Zone
from components.settings import Settings, SettingsError, parse_settings
from policy_plan import plan
from policy_plan.program import stack_config

ROOT = Path(__file__).resolve().parents[2]
TODAY = date.today()
HEX = "0123456789abcdef" * 4
DIGEST = f"registry.example.com/fly-potato/x@sha256:{HEX}"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"

Overrides = dict[str, Any]
# One strategy per key of the reference: it draws the overrides (dotted path -> value) of one example.
KEYS: dict[str, Callable[[], st.SearchStrategy[Overrides]]] = {}


def key(name: str, values: st.SearchStrategy[Any], *, path: Callable[[], st.SearchStrategy[str]] | None = None) -> None:
    """Register ``name`` with the values it is tried with; ``path`` draws the concrete dotted path."""

    def strategy() -> st.SearchStrategy[Overrides]:
        paths = path() if path else st.just(name)
        return st.tuples(paths, values).map(lambda pair: {pair[0]: pair[1]})

    KEYS[name] = strategy


def pick(*values: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


def each(kind: str, names: list[str], suffix: str = "") -> Callable[[], st.SearchStrategy[str]]:
    return lambda: st.sampled_from([f"{kind}.{name}{suffix}" for name in names])


LISTENER_NAMES, SERVICE_NAMES, ZONE_NAMES = list(LISTENERS), list(SERVICES), [z.value for z in Zone]
PORTS = st.one_of(st.integers(-1, 70000), pick(*{item.port(p) for item in LISTENERS.values() for p in Profile}))
ADDRESSES = pick(
    "0.0.0.0", "127.0.0.1", "127.0.0.2", "::", "::1", "192.0.2.10", "203.0.113.5", "10.0.0.5", "224.0.0.1", "here"
)
ORIGINS = pick(
    "*",
    "null",
    "http://app.example.com",
    "https://datalens.yandex.ru",
    "https://localhost",
    "https://127.0.0.1:8443",
    "https://intranet",
    "https://a.example.com:99999",
    "https://*.example.com",
    "https://app.example.com/path",
    "HTTPS://APP.EXAMPLE.COM",
)
CIDRS = pick(
    "0.0.0.0/0",
    "0.0.0.0/1",
    "128.0.0.0/1",
    "10.0.0.0/8",
    "203.0.113.0/24",
    "198.51.100.7/32",
    "127.0.0.1/32",
    "::/0",
    "2001:db8::/48",
    "not-a-network",
)
SOURCES = pick(
    "'self'",
    "*",
    "https:",
    "http:",
    "data:",
    "blob:",
    "'unsafe-inline'",
    "'unsafe-eval'",
    "https://sentry.example.com",
    "http://cdn.example.com",
    "https://*.example.com",
    "a;b",
)
DIRECTIVES = pick("default-src", "script-src", "img-src", "connect-src", "frame-src", "font-src", "base-uri")

key("profile", pick("dev", "prod", "staging", "PROD", ""))
key(
    "domain",
    pick("flypotato.example.com", "localhost", "potato", "x.localhost", "10.0.0.1", "https://x.example.com/", "A.b"),
)
key("public_bind_address", ADDRESSES)
key("operator_bind_address", ADDRESSES)
key("public_address", ADDRESSES)
key("ports.<listener>", PORTS, path=each("ports", LISTENER_NAMES))
key("host_ports.<listener>", PORTS, path=each("host_ports", LISTENER_NAMES))
key("publish.<listener>", pick("public", "operator", "none", "internet"), path=each("publish", LISTENER_NAMES))
key(
    "images.<service>",
    pick(DIGEST, f"sha256:{HEX}", "fly-potato/backend:0.1.0", "postgis/postgis:latest", "", f"x@sha256:{HEX[:10]}"),
    path=each("images", SERVICE_NAMES),
)
key(
    "resources.<service>.cpus",
    st.one_of(st.floats(-1, 100, allow_nan=False), pick(0, 0.05, 64)),
    path=each("resources", SERVICE_NAMES, ".cpus"),
)
key(
    "resources.<service>.memory",
    pick(0, "8m", "16m", "512m", "4g", "256g", "257g", 10**9, "lots", -1),
    path=each("resources", SERVICE_NAMES, ".memory"),
)
key("resources.<service>.pids", st.integers(-1, 100000), path=each("resources", SERVICE_NAMES, ".pids"))
key("zones.<zone>.internal", st.one_of(st.booleans(), pick("maybe")), path=each("zones", ZONE_NAMES, ".internal"))
key(
    "zones.<zone>.subnet",
    pick(
        "0.0.0.0/0",
        "8.8.8.0/24",
        "100.64.0.0/24",
        "10.231.0.0/16",
        "10.231.200.0/24",
        "172.16.5.0/24",
        "192.168.1.0/30",
        "192.168.7.0/24",
        "fd00::/64",
        "nope",
    ),
    path=each("zones", ZONE_NAMES, ".subnet"),
)
EGRESS_RULE = st.fixed_dictionaries(
    {
        "service": pick(*SERVICE_NAMES, "backnd"),
        "purpose": pick("dns", "ntp", "object_storage", "smtp", "idp", "ssh"),
        "port": pick(53, 123, 443, 465, 587, 25, 22, 0),
    },
    optional={"protocol": pick("tcp", "udp", "icmp"), "destinations": st.lists(CIDRS, max_size=2)},
)
for sub in ("service", "purpose", "port", "protocol", "destinations"):
    key(f"egress[].{sub}", st.lists(EGRESS_RULE, max_size=3), path=lambda: st.just("egress"))
# A DataLens allow-list needs its own host port (the default collides with postgres' operator bind).
KEYS["datalens.allow_list"] = lambda: st.lists(CIDRS, max_size=3).map(
    lambda cidrs: {"datalens.allow_list": cidrs, "host_ports.datalens": 15433}
)
key("datalens.connection_limit", st.integers(-5, 200))
key("datalens.embed_origins", st.lists(ORIGINS, max_size=3))
key("cors_origins", st.lists(ORIGINS, max_size=3))
for flag in ("http_redirect", "dns_preflight", "seed_test_users", "monitoring", "backups"):
    key(f"features.{flag}", st.one_of(st.booleans(), pick("maybe")))
key("tls.mode", pick("internal_ca", "provided", "letsencrypt"))
key("tls.certificate_pem", pick("not a pem", "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n"))
key("tls.private_key_pem", pick("-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n"))
key("tls.validity_days", st.integers(-1, 500))
key("tls.renew_before_days", st.integers(-1, 400))
for name, low, high in (
    ("api_rate_per_second", -1, 20000),
    ("api_burst", -1, 20000),
    ("oauth2_rate_per_minute", -1, 10000),
    ("oauth2_burst", -1, 2000),
    ("max_body_mb", -1, 5000),
    ("hsts_max_age", -1, 10**9),
):
    key(f"edge.{name}", st.integers(low, high))
key("edge.csp_extra", st.dictionaries(DIRECTIVES, st.lists(SOURCES, max_size=2), max_size=2))
key("keycloak.realm", pick("master", "Master", "MASTER", "master ", "potato", "x", "fly-potato-prod", "mast3r"))
key("keycloak.admin_user", pick("platform-admin", "admin", "Admin", "temp-admin", "root", "keycloak", "ops-lead"))
key(
    "keycloak.admin_url",
    pick("https://flypotato.example.com", "http://localhost:18080", "https://kc-admin.example.com", "ftp://x"),
)
key("keycloak.groups", st.lists(pick("pilots", "admins", "Bad Group", "x"), max_size=3))
key("keycloak.groups_full_path", st.booleans())
key("keycloak.access_token_minutes", st.integers(-1, 120))
key("keycloak.session_idle_minutes", st.integers(-1, 2000))
key("keycloak.session_max_hours", st.integers(-1, 100))
key(
    "keycloak.test_users",
    st.lists(
        pick("analyst", "Bad Name", {"username": "bob", "groups": ["admins"]}, {"username": "eve", "groups": ["x1"]}),
        max_size=2,
    ),
)
key("operator_endpoints.postgres_host", pick("localhost", "127.0.0.1", "::1", "db.example.com", "203.0.113.9"))
key("operator_endpoints.postgres_port", PORTS)
key(
    "operator_endpoints.keycloak_url",
    pick("http://localhost:18080", "http://kc.example.com:8080", "https://kc.example.com", "http://10.0.0.5:8080"),
)
key("operator_endpoints.connect_timeout_seconds", st.integers(-1, 1000))
key("alerting.email_to", st.lists(pick("oncall@example.com", "not-an-address"), max_size=2))
key("alerting.smtp_smarthost", pick("smtp.example.com:587", "smtp.example.com:465", "smtp.example.com:25", "smtp"))
key("alerting.smtp_from", pick("alerts@example.com", "nobody"))
key("alerting.smtp_username", pick("alerts", ""))
key("alerting.smtp_password", pick("s3cret-password"))
key("alerting.smtp_require_tls", st.one_of(st.booleans(), pick("maybe")))
key("alerting.webhook_url", pick("https://hooks.example.com/T0/B0/x", "http://hooks.example.com/T0/B0/x"))
key("monitoring.retention_days", st.integers(-1, 400))
key("monitoring.scrape_interval_seconds", st.integers(-1, 400))
key(
    "monitoring.docker_socket",
    pick("/var/run/docker.sock", "/run/docker.sock", "/", "/etc", "/var/run/docker.sock/../../etc", "docker.sock"),
)
key("monitoring.docker_socket_gid", st.integers(-1, 70000))
key("backup.dump_retention_days", st.integers(-1, 100))
key("backup.wal_retention_days", st.integers(-1, 100))
key("backup.archive_timeout_seconds", st.integers(-1, 1000))
key("backup.schedule_utc", pick("02:30", "23:59", "24:00", "2:30", "noon"))
key("secrets.rotation_epoch", st.integers(-1, 10))
key(
    "secrets.rotated_on",
    pick(*(str(TODAY + timedelta(days=d)) for d in (-400, -100, -3, 0, 1, 2, 30, 3650)), "not-a-date"),
)
SSH = {"host": "203.0.113.7", "host_key": HOST_KEY}


def _ssh_with(sub: str, values: st.SearchStrategy[Any]) -> Callable[[], st.SearchStrategy[Overrides]]:
    def strategy() -> st.SearchStrategy[Overrides]:
        return values.map(lambda value: {"host.ssh": {k: v for k, v in {**SSH, sub: value}.items() if v is not None}})

    return strategy


for sub, values in (
    ("host", pick("203.0.113.7", "flypotato.example.com", "bad host", "")),
    ("user", pick("deploy", "root", "Bad User")),
    ("port", PORTS),
    ("private_key", pick("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n")),
    ("host_key", pick(HOST_KEY, None, "not a key")),
):
    KEYS[f"host.ssh.{sub}"] = _ssh_with(sub, values)
key("host.egress_rules", st.booleans())
key("host.backup_timeout_seconds", st.integers(-1, 10000))
key("host.smoke_timeout_seconds", st.integers(-1, 4000))
key("host.command_timeout_seconds", st.integers(-1, 1000))
key("host.max_open_files", st.integers(-1, 2_000_000))
# The deployment target. Prod on swarm also needs every image from swarm.registry by digest, which the committed
# prod images (registry.flypotato.example.com) never are for these registries, and dev on swarm publishes nothing
# (R-NET-3): tests/unit/test_swarm_platform.py covers the program on swarm.
key("target", pick("host", "swarm", "cloud", ""))
key(
    "swarm.docker_host",
    pick("unix:///run/fly-potato-swarm/node1.sock", "ssh://deploy@manager", "tcp://m:2376", "m:2375"),
)
key("swarm.registry", pick("198.18.232.1:5000", "registry.example.com", "https://registry.example.com", "Bad Host"))
key("swarm.encrypt_overlays", st.booleans())
key("swarm.replicas", st.integers(-1, 100))
key("swarm.role_label", pick("fly-potato.role", "zone", "Bad Label", ""))
key("swarm.data_role", pick("data", "db", "Bad Role", ""))
key("swarm.edge_role", pick("edge", "ingress", "bad role", ""))


def reference_keys() -> set[str]:
    """The keys of docs/config.md that take a value (rows of type object only group others)."""
    keys = set()
    for line in (ROOT / "docs" / "config.md").read_text().splitlines():
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 4 and cells[0].startswith("`") and cells[1] not in ("object", "list of objects"):
            keys.add(cells[0].strip("`"))
    return keys


def names_a_changed_key(sentence: str, overrides: Overrides) -> bool:
    """The sentence names a key the example set (the path itself, or the list/sub-key below it). A changed
    profile re-judges every key, so then the sentence names whichever key must change for that profile."""
    if "profile" in overrides:
        return re.match(r"^fly-potato:[a-z_]+", sentence) is not None
    for path in overrides:
        base = re.escape(f"fly-potato:{path}")
        if re.match(rf"^{base}(\b|\[|\.| )", sentence) or f" {path}" in sentence:
            return True
        # A host-port collision names the listener it collides with ("collides with postgres on ..."), also
        # when publishing that listener made the collision.
        listener = path.split(".", 1)[-1]
        if path.startswith(("host_ports.", "publish.")) and f"collides with {listener} on" in sentence:
            return True
        if path.startswith("publish.") and sentence.startswith(f"fly-potato:host_ports.{listener} "):
            return True  # the published listener's own host port
    return False


def outcome(stack: str, overrides: Overrides) -> Settings | SettingsError:
    """parse_settings' answer; any other exception fails the property."""
    try:
        return parse_settings(stack_config(stack, overrides), stack=stack)
    except SettingsError as refused:
        return refused


def one_key() -> st.SearchStrategy[Overrides]:
    return st.sampled_from(sorted(KEYS)).flatmap(lambda name: KEYS[name]())


def several_keys(exclude: tuple[str, ...] = ()) -> st.SearchStrategy[Overrides]:
    names = sorted(k for k in KEYS if not k.startswith(exclude))

    def merge(parts: list[Overrides]) -> Overrides:
        merged: Overrides = {}
        for part in parts:
            merged |= part
        return merged

    return st.lists(st.sampled_from(names).flatmap(lambda name: KEYS[name]()), min_size=1, max_size=3).map(merge)


def test_every_key_of_the_reference_is_covered() -> None:
    assert reference_keys() == set(KEYS), "a key of docs/config.md has no strategy here (or one is stale)"
    assert len(KEYS) >= 80


@pytest.mark.parametrize("stack", ["dev", "prod"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=one_key())
def test_one_changed_key_parses_or_is_refused_naming_it(stack: str, overrides: Overrides) -> None:
    result = outcome(stack, overrides)
    if isinstance(result, SettingsError):
        assert result.problems, "a refusal without a sentence"
        for sentence in result.problems:
            assert "\n" not in sentence and "Traceback" not in sentence
            assert names_a_changed_key(sentence, overrides), (overrides, sentence)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=several_keys())
def test_several_changed_keys_are_refused_each_by_name(overrides: Overrides) -> None:
    result = outcome("prod", overrides)
    if isinstance(result, SettingsError):
        for sentence in result.problems:
            assert names_a_changed_key(sentence, overrides), (overrides, sentence)


def _mandatory(overrides: Overrides) -> list[str]:
    graph, result, _ = plan.run("prod", overrides)
    assert graph.error is None, graph.error  # the settings accepted it: the program must not stop
    assert result is not None
    return [f"{v.policy} ({v.requirement}) {v.resource}: {v.message}" for v in result.mandatory]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(overrides=several_keys(exclude=("publish.",)))
def test_every_accepted_prod_config_plans_without_a_mandatory_violation(overrides: Overrides) -> None:
    if isinstance(outcome("prod", overrides), SettingsError):
        return
    assert _mandatory(overrides) == [], overrides


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=KEYS["publish.<listener>"]())
def test_publish_values_are_left_to_the_port_policies(overrides: Overrides) -> None:
    if isinstance(outcome("prod", overrides), SettingsError):
        return
    for violation in _mandatory(overrides):
        assert violation.startswith(
            (
                "public-bindings-nginx-only (R-NET-1)",
                "other-bindings-loopback (R-NET-2)",
                "zone-membership (R-NET-4)",  # a published service joins the operator zone for it
                "keycloak-proxy-exposure (R-AUTH-2)",  # keycloak published other than through nginx /sso
            )
        ), (overrides, violation)
