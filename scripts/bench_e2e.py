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
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.engine import EngineStack, require_engine

DOCKER_CONTAINER = "docker:index/container:Container"


def docker_events(since: float, until: float) -> list[dict[str, object]]:
    out = subprocess.run(
        [
            "docker",
            "events",
            "--since",
            f"{since:.3f}",
            "--until",
            f"{until:.3f}",
            "--filter",
            "type=container",
            "--format",
            "{{json .}}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


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
    graph = stack.graph()
    containers = {r.urn: r.prop("name") for r in graph.of_type(DOCKER_CONTAINER)}
    memo: dict[str, tuple[float, list[str]]] = {}

    def longest(urn: str) -> tuple[float, list[str]]:
        if urn not in memo:
            before = [longest(d) for d in graph.ancestors_and_dependencies(urn) if d in containers and d != urn]
            best = max(before, key=lambda item: item[0], default=(0.0, []))
            own = durations.get(containers[urn], 0.0)
            memo[urn] = (best[0] + own, [*best[1], containers[urn]] if own else best[1])
        return memo[urn]

    return max((longest(urn) for urn in containers), key=lambda item: item[0], default=(0.0, []))


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
        overrides={"features.dns_preflight": False, "public_bind_address": "127.0.0.1"},
    )
    try:
        since = time.time()
        up = timed("pulumi up from nothing", dev.up)
        path, chain = critical_path(dev, readiness(docker_events(since, time.time())))
        print(f"{'readiness critical path (Docker events)':<40} {path:7.1f} s  ({' -> '.join(chain)})")
        print(f"{'up / critical path':<40} {up / path if path else float('nan'):7.2f}   (goal <= 1.3)")
        timed("pulumi up, no changes", dev.up)
        timed("pulumi preview (dev, deployed)", dev.preview)
        timed("pulumi preview (prod, new stack)", prod.preview)
    finally:
        dev.remove()
        prod.remove()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
