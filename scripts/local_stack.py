"""The dev stack on the local Docker engine without the Pulumi CLI (``scripts/stack.sh`` falls back to this).

When the Pulumi CLI cannot be installed (``scripts/toolchain.sh`` exits 3: no source of it is reachable, see
docs/toolchain.md), ``make up`` still brings the real dev stack up: the program is evaluated under mocks for
stack ``dev`` with the committed ``Pulumi.dev.yaml`` (objects ``fly-potato-dev-*``, the real dev ports), the
generated secrets are replaced by real random values kept in ``.secrets/<stack>/generated.json`` (mode
0600, reused by the next run), and ``scripts.apply_graph.GraphApplier`` applies the graph. There is no
Pulumi state: the stack is whatever Docker holds with the stack's labels.

    python -m scripts.local_stack up dev [--recreate]   # no-op when the stack's containers are up
    python -m scripts.local_stack destroy dev [--volumes]
    python -m scripts.local_stack outputs dev           # the stack outputs as JSON, secrets shown

Only ``dev``: prod needs the Pulumi engine and its state (refused).
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from policy.program import ProgramGraph, evaluate_program
from scripts.apply_graph import (
    ROOT,
    ApplyError,
    Docker,
    GraphApplier,
    destroy_stack,
    leftovers,
    realize_secrets,
)

LOCAL_STACKS = ("dev",)


class StackError(RuntimeError):
    """A refusal or failure explained in one sentence (printed without a traceback)."""


def secrets_store(stack: str) -> Path:
    return ROOT / ".secrets" / stack / "generated.json"


def stack_graph(stack: str) -> ProgramGraph:
    """The program's graph for ``stack`` from its committed config, with real generated secrets."""
    if stack not in LOCAL_STACKS:
        raise StackError(
            f"Stack {stack} needs the Pulumi engine and its state (its secrets, its recorded resources); "
            "without the Pulumi CLI only the dev stack can be applied to the local Docker engine."
        )
    graph = evaluate_program(stack)
    if graph.error:
        raise StackError(f"the program fails for stack {stack}: {graph.error}")
    store = secrets_store(stack)
    store.parent.parent.mkdir(mode=0o700, exist_ok=True)
    store.parent.parent.chmod(0o700)  # .secrets/, as scripts/stack.sh keeps it
    return realize_secrets(graph, store)


def plain(value: Any) -> Any:
    """Outputs as ``pulumi stack output --json --show-secrets`` prints them: secret wrappers removed."""
    if isinstance(value, dict):
        if set(value) == {"secret", "value"} and value["secret"] is True:
            return plain(value["value"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def published_ports(graph: ProgramGraph) -> list[tuple[str, str, int]]:
    """(listener, host IP, host port) of every port the stack publishes on this host."""
    return [
        (row["listener"], row["host_ip"] or "0.0.0.0", int(row["host_port"]))
        for row in plain(graph.outputs["port_matrix"])
        if row.get("host_port")
    ]


def taken_ports(graph: ProgramGraph) -> list[str]:
    """One sentence per published port something else already listens on."""
    problems = []
    for listener, host_ip, port in published_ports(graph):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host_ip, port))
            except OSError as error:
                why = "is taken" if error.errno == errno.EADDRINUSE else f"cannot be bound ({error.strerror})"
                problems.append(
                    f"Port {port} on {host_ip} (listener {listener}) {why}: stop what listens there, or set "
                    f"fly-potato:host_ports.{listener} in Pulumi.{graph.stack}.yaml to a free port."
                )
    return problems


def container_states(graph: ProgramGraph, docker: Docker) -> tuple[list[str], list[str]]:
    """(missing containers, long-running containers that are not running) of the graph."""
    present = {c["Names"][0].lstrip("/"): c for c in docker.list("containers", {"org.flypotato.stack": graph.stack})}
    missing, stopped = [], []
    for resource in graph.of_type("docker:index/container:Container"):
        name = resource.prop("name")
        if name not in present:
            missing.append(name)
            continue
        long_running = resource.prop("start") is not False and not resource.prop("attach")
        if long_running and resource.prop("mustRun", True) and present[name]["State"] != "running":
            stopped.append(name)
    return missing, stopped


def up(stack: str, recreate: bool, docker: Docker) -> int:
    graph = stack_graph(stack)
    public_url = plain(graph.outputs["public_url"])
    found = leftovers(stack, docker)
    if found["containers"] and not recreate:
        missing, stopped = container_states(graph, docker)
        if not missing and not stopped:
            print(f"Stack {stack} is up (its containers exist; make up RECREATE=1 recreates them): {public_url}")
            return 0
        raise StackError(
            f"Stack {stack} is partly up ({len(missing)} container(s) missing, {len(stopped)} not running: "
            f"{', '.join((missing + stopped)[:4])}{'…' if len(missing + stopped) > 4 else ''}); "
            "run 'make up RECREATE=1' to recreate its containers (volumes are kept) or 'make destroy'."
        )
    if found["containers"] or found["networks"]:
        destroy_stack(stack, docker, log=lambda _line: None, volumes=False)
        print(f"Removed the containers and networks of stack {stack} to recreate them; its volumes are kept.")
    problems = taken_ports(graph)
    if problems:
        raise StackError(" ".join(problems))
    if found["volumes"]:
        print(f"Reusing the {len(found['volumes'])} volume(s) kept from the last run of stack {stack} (its data).")
    applier = GraphApplier(graph, docker=docker)
    started = time.monotonic()
    try:
        applier.apply()
    except ApplyError as error:
        raise StackError(
            f"applying stack {stack} failed: {error}\n"
            "What was created is left for inspection; 'make up RECREATE=1' retries, 'make destroy' removes it."
        ) from error
    print(f"Stack {stack} is up after {time.monotonic() - started:.0f} s: {public_url}")
    return 0


def destroy(stack: str, volumes: bool, docker: Docker) -> int:
    if stack not in LOCAL_STACKS:
        stack_graph(stack)  # refuses with the reason
    counts = destroy_stack(stack, docker, log=lambda _line: None, volumes=volumes)
    kept = leftovers(stack, docker)["volumes"]
    print(
        f"Removed {counts['containers']} containers and {counts['networks']} networks of stack {stack}"
        + (f" and {counts['volumes']} volumes." if volumes else ".")
    )
    if kept:
        print(f"Kept its {len(kept)} volumes (the data); 'make destroy VOLUMES=1' removes them too.")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.local_stack", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["up", "destroy", "outputs"])
    parser.add_argument("stack", nargs="?", default="dev")
    parser.add_argument("--recreate", action="store_true", help="up: recreate the containers (volumes are kept)")
    parser.add_argument("--volumes", action="store_true", help="destroy: remove the volumes (the data) too")
    args = parser.parse_args(argv)
    try:
        if args.action == "outputs":
            if args.stack in LOCAL_STACKS and not secrets_store(args.stack).exists():
                raise StackError(f"Stack {args.stack} has not been brought up here yet: run 'make up' first.")
            print(json.dumps(plain(stack_graph(args.stack).outputs), indent=2))
            return 0
        if args.action == "up":
            return up(args.stack, args.recreate, Docker())
        return destroy(args.stack, args.volumes, Docker())
    except StackError as error:
        print(error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
