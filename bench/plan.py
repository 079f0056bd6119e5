"""Time the offline prod plan (`make bench-plan`): wall time of `python -m policy_plan --stack prod` as
CI runs it, and the part spent in the policies. Goals: under 2 s and under 200 ms. Prints figures only."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RUNS = 5


def main() -> int:
    walls, cpus = [], []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "policy_plan", "--stack", "prod", "--json"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)

    from policy import plan  # imported here so the subprocess timings above include imports

    totals, policies, resources = [], [], 0
    for _ in range(RUNS):
        graph, result, total = plan.run("prod", {})
        assert result is not None, graph.error
        totals.append(total)
        policies.append(result.policy_seconds)
        resources = len(graph.resources)
    print(f"offline prod plan, {resources} resources")
    print(
        f"  wall time, fresh process (python -m policy_plan --stack prod): "
        f"median {statistics.median(walls):.2f} s, best {min(walls):.2f} s   (goal < 2 s)"
    )
    print(
        f"  CPU time of that process: median {statistics.median(cpus):.2f} s "
        f"(wall exceeds it when the machine is busy: load average {os.getloadavg()[0]:.1f})"
    )
    print(f"  in process, program + policies: median {statistics.median(totals) * 1000:.0f} ms")
    print(
        f"  in policies: median {statistics.median(policies) * 1000:.0f} ms, best {min(policies) * 1000:.0f} ms"
        "   (goal < 200 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
