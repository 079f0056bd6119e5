"""Stack config is validated before any resource exists; each bad value gives one sentence naming the
key and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.settings import SettingsError, parse_settings
from policy.program import evaluate_program, stack_config

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
        {"egress": [{"service": "backend", "purpose": "smtp", "port": 25}]},
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
