"""The Pulumi stack driver of the swarm tier: tests/swarm/program.py in a temp project (file backend, the real
CLI and docker plugin of the toolchain) deployed onto the lab through the manager's socket, and what is left
on the swarm after it. Used by test_components_on_swarm.py and test_node_loss.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from tests.swarm.lab import DIGEST_REF, SwarmLab, wait_for
from wire import STACK_LABEL

ROOT = Path(__file__).resolve().parents[2]
MANAGER = "unix:///run/fly-potato-swarm/node1.sock"
PORT = 28443
TOOLCHAIN = Path(os.environ.get("FLY_POTATO_TOOLCHAIN", Path.home() / ".cache/fly-potato/toolchain"))
IMAGES = {"nginx": "fly-potato/nginx:1.22.1", "python": "fly-potato/python:3.11"}


@dataclass
class Deployment:
    stack: auto.Stack
    name: str
    services: dict[str, str] = field(default_factory=dict)
    destroyed: bool = False


def timed(times: dict[str, float], what: str, action: Any) -> Any:
    started = time.monotonic()
    result = action()
    times[what] = round(time.monotonic() - started, 1)
    return result


def labelled(swarm: SwarmLab, kind: str, stack: str) -> list[str]:
    return swarm.manager(kind, "ls", "-q", "--filter", f"label={STACK_LABEL}={stack}").split()


def purge(swarm: SwarmLab, stack: str) -> None:
    """What a failed run left on the swarm (its state is gone with its temp folder)."""
    for kind in ("service", "secret", "config", "network"):  # a network goes once its tasks are gone

        def gone(kind: str = kind) -> bool:
            objects = labelled(swarm, kind, stack)
            if objects:
                swarm.manager(kind, "rm", *objects, check=False)
            return not labelled(swarm, kind, stack)

        wait_for(f"the stack's {kind}s to go", gone, timeout=60, interval=2)


def assert_nothing_left(swarm: SwarmLab, stack: str) -> None:
    for kind in ("service", "network", "secret", "config"):
        assert labelled(swarm, kind, stack) == [], f"{kind}s left"
    names = swarm.manager("network", "ls", "--format", "{{.Name}}").split()
    assert not [n for n in names if stack in n]


def push_images(swarm: SwarmLab, times: dict[str, float]) -> dict[str, str]:
    """The program's images in the lab registry, as REGISTRY/REPO@sha256:DIGEST (a re-push is quick)."""
    refs = {key: timed(times, f"push {image}", lambda i=image: swarm.push(i)) for key, image in IMAGES.items()}
    assert all(DIGEST_REF.match(ref) for ref in refs.values()), refs
    return refs


def pulumi_env(tmp: Path) -> dict[str, str]:
    """The CLI's environment for a throwaway stack: a file backend in ``tmp/state``, a random passphrase, the
    project's toolchain, no plugin downloads."""
    (tmp / "state").mkdir()
    return {
        "PULUMI_BACKEND_URL": f"file://{tmp / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": secrets.token_urlsafe(24),
        "PULUMI_HOME": os.environ.get("PULUMI_HOME", str(TOOLCHAIN / "pulumi-home")),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
        "PATH": f"{TOOLCHAIN / 'bin'}:{os.environ['PATH']}",
    }


def _program_dir(tmp: Path) -> Path:
    work = tmp / "program"
    work.mkdir()
    (work / "Pulumi.yaml").write_text(
        "name: fp-swarm-components\n"
        "runtime:\n  name: python\n  options:\n"
        f"    toolchain: pip\n    virtualenv: {ROOT / '.venv'}\n"
    )
    (work / "__main__.py").write_text("from tests.swarm.program import main\n\nmain()\n")
    return work


@contextlib.contextmanager
def program_stack(
    swarm: SwarmLab, tmp: Path, refs: Mapping[str, str], extra: Mapping[str, auto.ConfigValue] | None = None
) -> Iterator[Deployment]:
    """A new stack of tests/swarm/program.py (not yet up); destroyed, purged and removed on the way out."""
    if not (TOOLCHAIN / "bin/pulumi").exists():
        pytest.fail(f"no Pulumi CLI in {TOOLCHAIN}/bin: run 'make toolchain'", pytrace=False)
    name = f"swarm{secrets.token_hex(3)}"
    env = {**pulumi_env(tmp), "PYTHONPATH": str(ROOT)}
    stack = auto.create_or_select_stack(
        stack_name=name,
        work_dir=str(_program_dir(tmp)),
        opts=auto.LocalWorkspaceOptions(
            env_vars=env, pulumi_command=auto.PulumiCommand(root=str(TOOLCHAIN), skip_version_check=False)
        ),
    )
    stack.set_all_config(
        {
            "lab:docker_host": auto.ConfigValue(MANAGER),
            "lab:nginx_image": auto.ConfigValue(refs["nginx"]),
            "lab:python_image": auto.ConfigValue(refs["python"]),
            "lab:port": auto.ConfigValue(str(PORT)),
            "lab:token": auto.ConfigValue("first-token", secret=True),
            **(extra or {}),
        }
    )
    deployment = Deployment(stack, name)
    try:
        yield deployment
    finally:
        try:
            if not deployment.destroyed:
                stack.destroy(color="never")
        finally:
            purge(swarm, name)
            stack.workspace.remove_stack(name)
            shutil.rmtree(tmp, ignore_errors=True)
