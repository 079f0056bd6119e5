"""The deployment target (``target: host | swarm``) and the ``swarm`` section: each refusal is one sentence
naming the key and the fix, and ``target: host`` (the default) is what it always was."""

from __future__ import annotations

from typing import Any

import pytest

from components.settings import SettingsError, parse_settings
from policy_plan.program import stack_config

REGISTRY = "198.18.232.1:5000"
DIGEST = "ab" * 32
SOCKET = "unix:///run/fly-potato-swarm/node1.sock"
DEV_UNPUBLISHED = {"publish.nginx_http": "none"}  # R-NET-3: dev on a swarm publishes nothing


def _swarm_prod(**overrides: Any) -> dict[str, Any]:
    """prod on swarm with every image pulled from the registry by digest."""
    images = {
        f"images.{name}": f"{REGISTRY}/fly-potato/{name}@sha256:{DIGEST}" for name in stack_config("prod")["images"]
    }
    return {"target": "swarm", "swarm.docker_host": SOCKET, "swarm.registry": REGISTRY, **images, **overrides}


BROKEN: list[tuple[str, dict[str, Any], str]] = [
    ("dev", {"target": "cloud"}, "fly-potato:target = \"cloud\" must be one of 'host' or 'swarm'"),
    (
        "dev",
        {"target": "swarm", **DEV_UNPUBLISHED},
        "fly-potato:swarm.docker_host is required when target = swarm; set it to the manager's Docker API with "
        "`pulumi config set --path swarm.docker_host unix:///var/run/docker.sock` (or ssh://user@manager)",
    ),
    (
        "dev",
        {"target": "swarm", "swarm.docker_host": "node1:2375", **DEV_UNPUBLISHED},
        'fly-potato:swarm.docker_host = "node1:2375" is not a Docker API address; write '
        "unix:///var/run/docker.sock, tcp://HOST:2376 or ssh://USER@HOST",
    ),
    (
        "dev",
        {"swarm.registry": "https://registry.example.com"},
        'fly-potato:swarm.registry = "https://registry.example.com" is not a registry HOST[:PORT]; write it like '
        "registry.example.com:5000, without a scheme",
    ),
    ("dev", {"swarm.replica": 3}, "fly-potato:swarm.replica is not a known setting; did you mean replicas?"),
    ("dev", {"swarm.replicas": 0}, "fly-potato:swarm.replicas = 0 is out of range (ge 1)"),
    (
        "prod",
        _swarm_prod(**{"swarm.replicas": 1}),
        "fly-potato:swarm.replicas = 1 leaves prod's stateless services one task each; set it to 2 or more "
        "(the swarm target exists to scale out)",
    ),
    (
        "prod",
        {k: v for k, v in _swarm_prod().items() if k != "swarm.registry"},
        "fly-potato:swarm.registry is required in prod when target = swarm; set it to the registry the nodes "
        "pull from with "
        "`pulumi config set --path swarm.registry registry.example.com:5000`",
    ),
    (
        "prod",
        _swarm_prod(**{"images.nginx": f"sha256:{DIGEST}"}),
        f'fly-potato:images.nginx = "sha256:{DIGEST}" is not pulled from swarm.registry by digest; push it and '
        f"write {REGISTRY}/REPOSITORY@sha256:<64 hex> (R-SEC-3)",
    ),
    (
        "prod",
        _swarm_prod(**{"images.backend": f"docker.io/fly-potato/backend@sha256:{DIGEST}"}),
        f'fly-potato:images.backend = "docker.io/fly-potato/backend@sha256:{DIGEST}" is not pulled from '
        f"swarm.registry by digest; push it and write {REGISTRY}/REPOSITORY@sha256:<64 hex> (R-SEC-3)",
    ),
    (
        "prod",
        _swarm_prod(**{"images.postgres": "198.18.232.1:5000/fly-potato/postgis:15"}),
        'fly-potato:images.postgres = "198.18.232.1:5000/fly-potato/postgis:15" is not pinned by digest; prod needs '
        "REPOSITORY@sha256:<64 hex> or a local image id sha256:<64 hex> (R-SEC-3)",
    ),
]


@pytest.mark.parametrize(
    ("stack", "overrides", "sentence"), BROKEN, ids=[b[2].split(" ")[0] + str(i) for i, b in enumerate(BROKEN)]
)
def test_a_bad_swarm_setting_names_the_key_and_the_fix(stack: str, overrides: dict[str, Any], sentence: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(stack_config(stack, overrides), stack=stack)
    assert caught.value.problems == [sentence]


def test_host_is_the_default_target_and_the_committed_stacks_stay_on_it() -> None:
    for stack in ("dev", "prod"):
        settings = parse_settings(stack_config(stack), stack=stack)
        assert settings.raw.target == "host"
        assert settings.raw.swarm.encrypt_overlays is True
        assert settings.raw.swarm.replicas == 2


def test_a_swarm_section_is_ignored_on_the_host_target() -> None:
    settings = parse_settings(stack_config("prod", {"swarm.replicas": 1}), stack="prod")
    assert settings.raw.target == "host"


def test_prod_on_swarm_with_registry_digests_is_accepted() -> None:
    settings = parse_settings(stack_config("prod", _swarm_prod(**{"swarm.replicas": 3})), stack="prod")
    swarm = settings.raw.swarm
    assert (settings.raw.target, swarm.docker_host, swarm.registry, swarm.replicas) == ("swarm", SOCKET, REGISTRY, 3)
    assert swarm.constraint(swarm.data_role) == "node.labels.fly-potato.role==data"
    assert swarm.constraint(swarm.edge_role) == "node.labels.fly-potato.role==edge"


def test_dev_on_swarm_takes_one_replica_tags_and_no_registry() -> None:
    overrides = {"target": "swarm", "swarm.docker_host": "ssh://deploy@manager", "swarm.replicas": 1}
    overrides |= {"swarm.encrypt_overlays": False, **DEV_UNPUBLISHED}
    settings = parse_settings(stack_config("dev", overrides), stack="dev")
    assert settings.raw.swarm.replicas == 1
    assert settings.raw.swarm.encrypt_overlays is False


@pytest.mark.parametrize("listener", ["nginx_http", "nginx_https"])
def test_dev_on_swarm_may_not_publish_nginx_on_the_nodes_addresses(listener: str) -> None:
    overrides = {"target": "swarm", "swarm.docker_host": SOCKET, f"publish.{listener}": "public"}
    if listener == "nginx_https":
        overrides |= DEV_UNPUBLISHED
    with pytest.raises(SettingsError) as caught:
        parse_settings(stack_config("dev", overrides), stack="dev")
    assert caught.value.problems == [
        f"fly-potato:publish.{listener} = public on target = swarm would publish nginx on every address of the edge "
        f"nodes, and dev binds 127.0.0.1 only (R-NET-3); set publish.{listener} to none (come in through the SSH "
        "tunnel) or deploy dev with target = host"
    ]
