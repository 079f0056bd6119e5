"""The swarm lab for the whole session: ``scripts/swarm-lab.sh up`` once, ``down`` at the end even on failure.

``FP_SWARM_KEEP=1`` leaves the lab up at the end (another session may be using it, or to look around).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.swarm.lab import BASE_IMAGE, LabUnavailable, SwarmLab, require_host, script


@pytest.fixture(scope="session")
def swarm() -> Iterator[SwarmLab]:
    try:
        require_host()
    except LabUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    lab = SwarmLab()
    try:
        up = script("up", timeout=600)
        if up.returncode != 0:
            pytest.fail(f"scripts/swarm-lab.sh up failed: {up.stderr.strip()[-2000:]}", pytrace=False)
        yield lab
    finally:
        if os.environ.get("FP_SWARM_KEEP") != "1":
            down = script("down", timeout=300)
            assert down.returncode == 0, f"scripts/swarm-lab.sh down failed: {down.stderr.strip()}"


@pytest.fixture(scope="session")
def base_ref(swarm: SwarmLab) -> str:
    """fly-potato/base:bookworm pushed to the lab registry, as REGISTRY/REPO@sha256:DIGEST."""
    return swarm.push(BASE_IMAGE)
