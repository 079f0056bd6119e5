"""``scripts/swarm-lab.sh down`` leaves nothing of the lab: no namespace, link, iptables chain, process,
cgroup, mount or directory; the main engine still answers; a second ``down`` is a no-op. Runs after
test_lab.py (file order), on the session's lab.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.swarm.lab import LAB_DIR, RUN_DIR, SwarmLab, main_engine, script

pytestmark = pytest.mark.e2e


def _out(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout


def test_down_removes_everything_the_lab_made(swarm: SwarmLab) -> None:
    assert "fp-swarm-" in _out("ip", "netns", "list")  # the lab was up
    down = script("down", timeout=300)
    assert down.returncode == 0, down.stderr

    assert "fp-swarm" not in _out("ip", "netns", "list")
    assert "fp-swarm" not in _out("ip", "-o", "link", "show")
    assert "FP-SWARM" not in _out("iptables", "-S")
    assert "fp-swarm0" not in _out("iptables", "-S")
    lab_processes = subprocess.run(["pgrep", "-af", "fly-potato-swarm"], capture_output=True, text=True).stdout
    assert lab_processes == "", lab_processes
    assert not LAB_DIR.exists() and not RUN_DIR.exists()
    assert list(Path("/sys/fs/cgroup").glob("*/fly-potato-swarm")) == []
    assert "fly-potato-swarm" not in Path("/proc/self/mountinfo").read_text()
    assert Path("/var/lib/containers").exists() == swarm.had_containers_dir  # skopeo's cache, if the lab made it
    assert main_engine("info").returncode == 0, "the main engine must be untouched"

    again = script("down", timeout=120)
    assert again.returncode == 0, again.stderr
