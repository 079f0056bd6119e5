"""Benchmark of the real engine on a throwaway dev-profile stack (``make bench-e2e``); prints, asserts nothing.

1. ``pulumi up`` from nothing, against the readiness critical path read from Docker's own events: along the
   dependency graph the engine recorded, the longest chain of container start → healthy (or → exit, for a
   one-shot container). Goal: up ≤ 1.3 × the critical path.
2. a no-op ``pulumi up`` (goal ≤ 5 s); 3. ``pulumi preview`` of that dev stack and of a prod-profile stack
   that was never deployed (goals ≤ 5 s). Then everything is destroyed.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from datetime import datetime

from tests.e2e.engine import EngineStack, fit_to_this_host, require_engine

DOCKER_CONTAINER = "docker:index/container:Container"


class DockerEvents:
    """Container events streamed while the ``up`` runs (the daemon keeps only its last ~1000 events, and the
    healthchecks' exec events alone outnumber that during an ``up``)."""

    def __enter__(self) -> DockerEvents:
        self.sink = tempfile.TemporaryFile("w+")  # a file, not a pipe: nothing read until the end
        self.process = subprocess.Popen(
            ["docker", "events", "--filter", "type=container", "--format", "{{json .}}"], stdout=self.sink
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.sink.seek(0)
        self.events = [json.loads(line) for line in self.sink if line.strip()]
        self.sink.close()


def readiness(events: list[dict[str, object]]) -> dict[str, float]:
    """Seconds from each container's start to its first healthy report (or its exit, for a one-shot)."""
    started: dict[str, float] = {}
    ready: dict[str, float] = {}
    for event in events:
        name = str(event["Actor"]["Attributes"].get("name"))  # type: ignore[index]
        at = int(event["timeNano"]) / 1e9  # type: ignore[call-overload]
        action = str(event["Action"])
        if action == "start":
            started[name] = at
            ready.pop(name, None)
        elif name in started and name not in ready and (action == "health_status: healthy" or action == "die"):
            ready[name] = at - started[name]
    return ready


def critical_path(stack: EngineStack, durations: dict[str, float]) -> tuple[float, list[str]]:
    """The longest chain of container readiness along the recorded dependencies (a component dependency
    means all of its resources)."""
    graph = stack.graph()
    by_urn = {r.urn: r for r in graph.resources}
    children: dict[str, list[str]] = {}
    for r in graph.resources:
        children.setdefault(r.parent, []).append(r.urn)

    def custom_under(urn: str) -> list[str]:
        found, todo = [], [urn]
        while todo:
            current = todo.pop()
            if by_urn[current].custom:
                found.append(current)
            todo.extend(children.get(current, []))
        return found

    def direct(urn: str) -> set[str]:
        """What a resource waits for: its own and its ancestors' dependencies (a child registers only once
        its parent component's dependencies are done), and its provider's."""
        named: set[str] = set()
        current = by_urn.get(urn)
        while current is not None:
            named |= set(current.dependencies) | {u for deps in current.property_dependencies.values() for u in deps}
            if current.provider:  # "URN::ID": a provider waits for what it connects to (e.g. postgres)
                named.add(current.provider.rsplit("::", 1)[0])
            current = by_urn.get(current.parent)
        return {c for d in named if d in by_urn for c in custom_under(d)} - {urn}

    memo: dict[str, tuple[float, list[str]]] = {}

    def longest(urn: str) -> tuple[float, list[str]]:
        if urn not in memo:
            best = max((longest(d) for d in direct(urn)), key=lambda item: item[0], default=(0.0, []))
            r = by_urn[urn]
            own = durations.get(r.prop("name"), 0.0) if r.type == DOCKER_CONTAINER else 0.0
            memo[urn] = (best[0] + own, [*best[1], r.prop("name")] if own else best[1])
        return memo[urn]

    return max((longest(r.urn) for r in graph.resources if r.custom), key=lambda item: item[0], default=(0.0, []))


def timed(label: str, action: object) -> float:
    started = time.monotonic()
    action()  # type: ignore[operator]
    seconds = time.monotonic() - started
    print(f"{label:<40} {seconds:7.1f} s", flush=True)
    return seconds


def main() -> int:
    require_engine()
    print(
        f"bench-e2e: {datetime.now():%Y-%m-%d %H:%M}, throwaway stacks bench (dev profile), bench-prod (prod profile)"
    )
    dev = EngineStack("bench")
    prod = EngineStack(
        "bench-prod",
        base="prod",
        ports={},
        # the prod sizing capped at this host's CPUs, as the e2e tier does: the preflight refuses more
        overrides={"features.dns_preflight": False, **fit_to_this_host()},
    )
    try:
        with DockerEvents() as stream:
            up = timed("pulumi up from nothing (without its preview)", lambda: dev.up(gated=False))
        path, chain = critical_path(dev, readiness(stream.events))
        print(f"{'readiness critical path (Docker events)':<40} {path:7.1f} s  ({' -> '.join(chain)})")
        print(f"{'up / critical path':<40} {up / path if path else float('nan'):7.2f}   (goal <= 1.3)")
        timed("pulumi up, no changes (without its preview)", lambda: dev.up(gated=False))
        timed("pulumi preview (dev, deployed)", dev.preview)
        timed("pulumi preview (prod, new stack)", prod.preview)
    finally:
        dev.remove()
        prod.remove()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
