"""Stack config is validated before any resource exists; each bad value gives one sentence naming the
key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.settings import SettingsError, parse_settings
from policy_plan.program import evaluate_program, stack_config

BROKEN: list[tuple[str, dict[str, Any], str]] = [
    ("dev", {"ports.postgres": 70000}, "fly-potato:ports.postgres = 70000 is not a TCP port (1-65535)"),
    (
        "dev",
        {"ports.backend": "eighty"},
        'fly-potato:ports.backend = "eighty" is not a whole number; write digits only',
    ),
    ("dev", {"prots": {"postgres": 1}}, "fly-potato:prots is not a known setting; did you mean ports?"),
    ("dev", {"ports.postgress": 5433}, "fly-potato:ports.postgress is not a known setting; did you mean postgres?"),
    ("dev", {"profile": "staging"}, "fly-potato:profile = \"staging\" must be one of 'dev' or 'prod'"),
    ("dev", {"domain": None}, "fly-potato:domain is required; set it with `pulumi config set domain VALUE`"),
    (
        "dev",
        {"domain": "https://flypotato.example.com/"},
        'fly-potato:domain = "https://flypotato.example.com/" is not a DNS name; use the bare host name users type, '
        "e.g. flypotato.example.com",
    ),
    (
        "prod",
        {"public_bind_address": "everywhere"},
        'fly-potato:public_bind_address = "everywhere" is not an IP address; use a literal address such as '
        "127.0.0.1 or 0.0.0.0",
    ),
    (
        "dev",
        {"resources.keycloak.memory": "lots"},
        'fly-potato:resources.keycloak.memory = "lots" is not a memory size; write it like 512m or 4g',
    ),
    (
        "dev",
        {"resources.keycloak.cpus": 100},
        "fly-potato:resources.keycloak.cpus = 100 is not a CPU share between 0.05 and 64",
    ),
    (
        "prod",
        {"images.postgres": "postgis/postgis:15-3.4"},
        'fly-potato:images.postgres = "postgis/postgis:15-3.4" is not pinned by digest; prod needs '
        "REPOSITORY@sha256:<64 hex> or a local image id sha256:<64 hex> (R-SEC-3)",
    ),
    (
        "dev",
        {"images.keycloak": None},
        "fly-potato:images.keycloak is required; set it with `pulumi config set --path images.keycloak REPOSITORY:TAG`",
    ),
    (
        "prod",
        {"egress": [{"service": "alertmanager", "purpose": "smtp", "port": 25}]},
        "fly-potato:egress[0] = smtp on 25/tcp is outside the egress allow-list; smtp may use 465, 587/tcp (R-NET-5)",
    ),
    (
        "prod",
        {"egress": [{"service": "backnd", "purpose": "dns", "port": 53, "protocol": "udp"}]},
        'fly-potato:egress[0].service = "backnd" is not a service of the platform; did you mean backend?',
    ),
    (
        "prod",
        {"datalens.allow_list": ["0.0.0.0/0"], "host_ports.datalens": 15433},
        'fly-potato:datalens.allow_list[0] = "0.0.0.0/0" opens Postgres to the whole internet; list DataLens\' '
        "published source ranges instead (R-NET-6)",
    ),
    (
        "prod",
        {"datalens.allow_list": ["203.0.113.0/24"]},
        "fly-potato:host_ports.datalens = 5433 collides with postgres on 127.0.0.1:5433; set public_bind_address "
        "to the server's public IP, or choose another host port",
    ),
    (
        "prod",
        {"features.seed_test_users": True},
        "fly-potato:features.seed_test_users = true is refused in prod; test users exist only in dev stacks",
    ),
    ("dev", {"features.http_redirect": "maybe"}, 'fly-potato:features.http_redirect = "maybe" is not true or false'),
    (
        "dev",
        {"zones.edge.internal": True},
        "fly-potato:zones.edge.internal = true would cut the zone off the host; remove the key (the edge zone exists "
        "to reach outside)",
    ),
    # Values that parse but would weaken a requirement (issue 16).
    (
        "dev",
        {"public_bind_address": "0.0.0.0"},
        'fly-potato:public_bind_address = "0.0.0.0" publishes a dev stack on the network; dev binds loopback only: '
        "remove the key or use 127.0.0.1 (R-NET-3)",
    ),
    (
        "prod",
        {"operator_bind_address": "192.0.2.10"},
        'fly-potato:operator_bind_address = "192.0.2.10" would publish postgres and keycloak on the network; use '
        "127.0.0.1 and reach it over SSH (R-NET-2)",
    ),
    (
        "prod",
        {"keycloak.realm": "master"},
        'fly-potato:keycloak.realm = "master" is Keycloak\'s own admin realm; give the stack its own realm, e.g. '
        "fly-potato-prod (R-AUTH-2, R-AUTH-3)",
    ),
    (
        "prod",
        {"zones.data.subnet": "8.8.8.0/24"},
        'fly-potato:zones.data.subnet = "8.8.8.0/24" is not a private (RFC 1918) block; pg_hba and Keycloak trust '
        "it: use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16, such as 10.231.40.0/24",
    ),
    (
        "prod",
        {"egress": [{"service": "postgres", "purpose": "object_storage", "port": 443}]},
        'fly-potato:egress[0].service = "postgres" must never leave the host; egress is for alertmanager '
        "(dns|ntp|smtp), backup (dns|ntp|object_storage), keycloak (dns|idp|ntp|smtp), oauth2_proxy (dns|idp|ntp) "
        "(R-NET-5)",
    ),
    (
        "prod",
        {"cors_origins": ["http://app.flypotato.example.com"]},
        'fly-potato:cors_origins[0] = "http://app.flypotato.example.com" is plain http; prod trusts https:// '
        "origins only, e.g. https://datalens.yandex.ru (R-APP-2)",
    ),
    (
        "prod",
        {"datalens.embed_origins": ["https://localhost"]},
        'fly-potato:datalens.embed_origins[0] = "https://localhost" is not a public origin (any visitor\'s own '
        "machine would match); list the real https:// origin (R-APP-3)",
    ),
    (
        "prod",
        {"datalens.allow_list": ["0.0.0.0/1"], "host_ports.datalens": 15433},
        'fly-potato:datalens.allow_list[0] = "0.0.0.0/1" is wider than a /16; list DataLens\' published source '
        "ranges instead (R-NET-6)",
    ),
    (
        "prod",
        {"zones.app.internal": False},
        "fly-potato:zones.app.internal = false would let the app zone reach outside the host; remove the key "
        "(prod's inner zones are internal) (R-NET-4, R-NET-5)",
    ),
    (
        "prod",
        {"monitoring.docker_socket": "/etc"},
        'fly-potato:monitoring.docker_socket = "/etc" is not the Docker daemon\'s socket; use /var/run/docker.sock '
        "(or /run/docker.sock): no other host path is mounted into a container (R-SEC-2)",
    ),
    (
        "prod",
        {"edge.csp_extra": {"script-src": ["'unsafe-inline'"]}},
        "fly-potato:edge.csp_extra.script-src[0] = \"'unsafe-inline'\" lets any host, inline code or eval in; list "
        "exact origins such as https://sentry.example.com (R-APP-3)",
    ),
    (
        "prod",
        {"operator_endpoints.postgres_host": "203.0.113.9"},
        'fly-potato:operator_endpoints.postgres_host = "203.0.113.9" is not this machine; the provider logs in as '
        "the superuser without TLS: open an SSH tunnel and use localhost (docs/remote-docker-host.md)",
    ),
    (
        "prod",
        {"alerting.smtp_require_tls": False},
        "fly-potato:alerting.smtp_require_tls = false is refused in prod; alert mail and the SMTP password would "
        "travel in clear: remove the key",
    ),
    (
        "prod",
        {"host.egress_rules": False},
        "fly-potato:host.egress_rules = false is refused in prod; the egress zone would reach any address: remove "
        "the key (R-NET-5)",
    ),
    (
        "prod",
        {"host_ports.nginx_https": 8443},
        "fly-potato:host_ports.nginx_https = 8443 on the routable 0.0.0.0 is not 443; prod answers users on 443 "
        "only: remove the key, or bind public_bind_address to 127.0.0.1 behind another proxy (R-NET-1)",
    ),
    (
        "prod",
        {"ports.keycloak_management": 8080},
        "fly-potato:ports.keycloak_management = 8080 is also ports.keycloak of the same container; give each "
        "listener of a service its own port",
    ),
    (
        "dev",
        {"datalens.allow_list": ["not-a-network"]},
        'fly-potato:datalens.allow_list[0] = "not-a-network" is not a CIDR block; write it like 203.0.113.0/24 or '
        "198.51.100.7/32",
    ),
]


@pytest.mark.parametrize(("stack", "overrides", "sentence"), BROKEN, ids=[b[2].split(" ")[0] for b in BROKEN])
def test_broken_config_names_the_key_and_the_fix(stack: str, overrides: dict[str, Any], sentence: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(stack_config(stack, overrides), stack=stack)
    assert caught.value.problems == [sentence]


def test_the_program_stops_before_any_resource_with_the_sentence() -> None:
    graph = evaluate_program("prod", {"ports.postgres": 70000})
    assert graph.resources == []
    assert graph.error == "stack config is invalid:\nfly-potato:ports.postgres = 70000 is not a TCP port (1-65535)"


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(stack_config("dev", {"ports.postgres": 0, "ports.backend": 99999}), stack="dev")
    assert len(caught.value.problems) == 2


def test_prod_accepts_what_the_e2e_tier_deploys() -> None:
    """A prod-profile stack on loopback with local image ids and DNS preflight off (tests/e2e)."""
    local = {f"images.{name}": f"sha256:{'ab' * 32}" for name in stack_config("prod")["images"]}
    overrides = {"public_bind_address": "127.0.0.1", "features.dns_preflight": False, "secrets.rotation_epoch": 2}
    overrides |= {"host_ports.nginx_https": 18443, "host_ports.nginx_http": 18080, **local}
    assert parse_settings(stack_config("prod", overrides), stack="prod").public_bind_address == "127.0.0.1"
    assert parse_settings(stack_config("prod", {"public_bind_address": "0.0.0.0"}), stack="prod")


def test_committed_stacks_parse() -> None:
    dev = parse_settings(stack_config("dev"), stack="dev")
    prod = parse_settings(stack_config("prod"), stack="prod")
    assert (dev.profile.value, prod.profile.value) == ("dev", "prod")
    assert prod.resources["postgres"].memory_mb == 8192, "prod sizing from the manual's table"
    assert dev.resources["postgres"].memory_mb < prod.resources["postgres"].memory_mb


def test_overrides_apply() -> None:
    s = parse_settings(stack_config("dev", {"ports.backend": 8001, "resources.backend.memory": "1g"}), stack="dev")
    assert s.ports["backend"] == 8001
    assert s.resources["backend"].memory_mb == 1024


def test_provider_namespaces_are_left_to_their_providers() -> None:
    config = {f"fly-potato:{k}": v for k, v in stack_config("dev").items()} | {"docker:host": "unix:///x"}
    assert parse_settings(config, stack="dev").stack == "dev"


def test_the_committed_dev_stack_file_carries_no_salt_and_no_secret() -> None:
    """The dev passphrase is generated per checkout (scripts/stack.sh): a committed salt made from one
    checkout's passphrase would make `make up` fail with "incorrect passphrase" in every other one."""
    text = (Path(__file__).resolve().parents[2] / "Pulumi.dev.yaml").read_text()
    assert "encryptionsalt" not in text
    assert "secure:" not in text
