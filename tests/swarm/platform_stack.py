"""The real program (``__main__.py``) as a throwaway ``target: swarm`` stack on the lab, through the real CLI and
providers: its config (the committed prod profile, every image from the lab's registry by digest, the operator
endpoints at the lab's SSH tunnel to the manager, CPU limits a lab node can grant), the tunnel, and what is left
on the swarm after it. Used by test_platform_on_swarm.py.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation as auto

from tests.swarm.driver import TOOLCHAIN, labelled, pulumi_env, purge
from tests.swarm.lab import DIGEST_REF, SwarmLab, script
from wire import PROJECT, STACK_LABEL

ROOT = Path(__file__).resolve().parents[2]
MANAGER = "unix:///run/fly-potato-swarm/node1.sock"
DOMAIN = "flypotato.example.com"  # the committed prod domain; clients pin it to an edge node's address
# The tunnel's local ends -> the operator proxy's loopback ports on the manager (prod's operator host ports).
TUNNEL = {"postgres": (25433, 5433), "keycloak": (28080, 8080)}
LAB_NODE_CPUS = 2.0  # what a lab node's dockerd grants a task at most (the machine's cores)


def local_tags() -> dict[str, str]:
    """images.<service> -> the tag `make images` builds (the dev stack file names them)."""
    return dict(yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"][f"{PROJECT}:images"])


def push_platform_images(swarm: SwarmLab) -> dict[str, str]:
    """Every image of the platform in the lab registry: images.<service> -> REGISTRY/REPO@sha256:…."""
    pushed: dict[str, str] = {}
    refs = {}
    for service, tag in local_tags().items():
        if tag not in pushed:
            pushed[tag] = swarm.push(tag)
        refs[service] = pushed[tag]
    assert all(DIGEST_REF.match(ref) for ref in refs.values()), refs
    return refs


def stack_document(refs: dict[str, str]) -> dict[str, Any]:
    """Pulumi.prod.yaml on the lab: target swarm, the registry digests, the tunnel, CPU limits a node can grant."""
    from components.catalog import PROD_RESOURCES

    document = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    config = document["config"]
    config[f"{PROJECT}:target"] = "swarm"
    config[f"{PROJECT}:swarm"] = {
        "docker_host": MANAGER,
        "registry": "198.18.232.1:5000",
        "encrypt_overlays": False,  # the lab's kernel has no ESP
        "replicas": 2,
    }
    config[f"{PROJECT}:images"] = refs
    config[f"{PROJECT}:features"] = {**config.get(f"{PROJECT}:features", {}), "dns_preflight": False}
    config[f"{PROJECT}:operator_endpoints"] = {
        "postgres_host": "127.0.0.1",
        "postgres_port": TUNNEL["postgres"][0],
        "keycloak_url": f"http://127.0.0.1:{TUNNEL['keycloak'][0]}",
    }
    config[f"{PROJECT}:resources"] = {
        name: {"cpus": LAB_NODE_CPUS} for name, r in PROD_RESOURCES.items() if r.cpus > LAB_NODE_CPUS
    }
    return document


def open_tunnel() -> None:
    forwards = [f"{local}:{remote}" for local, remote in TUNNEL.values()]
    opened = script("tunnel", *forwards, timeout=60)
    if opened.returncode != 0:
        pytest.fail(f"scripts/swarm-lab.sh tunnel failed: {opened.stderr.strip()}", pytrace=False)


def volumes_left(swarm: SwarmLab, stack: str) -> list[str]:
    return swarm.manager("volume", "ls", "-q", "--filter", f"label={STACK_LABEL}={stack}").split()


@contextlib.contextmanager
def platform_stack(swarm: SwarmLab, tmp: Path, refs: dict[str, str]) -> Iterator[tuple[auto.Stack, str]]:
    """A new stack of the real program (not yet up) on the lab; destroyed, purged and forgotten on the way out."""
    if not (TOOLCHAIN / "bin/pulumi").exists():
        pytest.fail(f"no Pulumi CLI in {TOOLCHAIN}/bin: run 'make toolchain'", pytrace=False)
    open_tunnel()
    name = f"swp{secrets.token_hex(3)}"
    config_file = ROOT / f"Pulumi.{name}.yaml"
    config_file.write_text(yaml.safe_dump(stack_document(refs), sort_keys=False))
    env = pulumi_env(tmp)
    stack = auto.create_or_select_stack(
        stack_name=name,
        work_dir=str(ROOT),
        opts=auto.LocalWorkspaceOptions(
            env_vars=env, pulumi_command=auto.PulumiCommand(root=str(TOOLCHAIN), skip_version_check=False)
        ),
    )
    try:
        yield stack, name
    finally:
        try:
            unprotect(stack)
            stack.destroy(color="never")
        finally:
            purge(swarm, name)
            for volume in volumes_left(swarm, name):
                swarm.manager("volume", "rm", volume, check=False)
            stack.workspace.remove_stack(name)
            config_file.unlink(missing_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)


def unprotect(stack: auto.Stack) -> None:
    """Prod protects its realm and databases: a throwaway stack lets go of them first (`pulumi state unprotect`)."""
    with contextlib.suppress(auto.CommandError):
        stack._run_pulumi_cmd_sync(["state", "unprotect", "--all", "--yes"])


def assert_platform_gone(swarm: SwarmLab, stack: str, retained: tuple[str, ...] = ()) -> None:
    """Nothing of the stack is left on the swarm but the named volumes prod retains on delete."""
    for kind in ("service", "network", "secret", "config"):
        assert labelled(swarm, kind, stack) == [], f"{kind}s left"
    names = {swarm.manager("volume", "inspect", "-f", "{{.Name}}", v).strip() for v in volumes_left(swarm, stack)}
    assert names == {f"fly-potato-{stack}-{volume}" for volume in retained}, names
    containers = swarm.manager("ps", "-aq", "--filter", f"label={STACK_LABEL}={stack}").split()
    assert containers == [], "containers left on the manager (operator proxy, migration)"
