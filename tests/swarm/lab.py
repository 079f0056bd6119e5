"""The three-node swarm lab of ``scripts/swarm-lab.sh``, driven from the tests.

The lab is real: three dockerds in network namespaces fp-swarm-1..3 joined by the host bridge fp-swarm0,
one manager and two workers, and a TLS registry on 198.18.232.1:5000. Without root, Docker or the main
engine's images the tier fails with one sentence, it never skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts/swarm-lab.sh"
NODES = ("node1", "node2", "node3")
HOSTNAME = {"node1": "fp-swarm-1", "node2": "fp-swarm-2", "node3": "fp-swarm-3"}
ADDRESS = {"node1": "198.18.232.11", "node2": "198.18.232.12", "node3": "198.18.232.13"}
REGISTRY = "198.18.232.1:5000"
LAB_DIR = Path("/var/lib/fly-potato-swarm")
RUN_DIR = Path("/run/fly-potato-swarm")
CA = LAB_DIR / "registry/client-certs/ca.crt"
# The smallest local image; its perl serves the node's name on 8080 (and exits on SIGTERM).
BASE_IMAGE = "fly-potato/base:bookworm"
ECHO_SERVER = [
    "perl",
    "-MIO::Socket::INET",
    "-e",
    "$SIG{TERM} = sub { exit 0 };"
    " my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 16, ReuseAddr => 1) or die $!;"
    ' while (my $c = $s->accept) { print $c "$ENV{NODE}\\n"; close $c }',
]
DIGEST_REF = re.compile(r"^198\.18\.232\.1:5000/[a-z0-9./-]+@sha256:[0-9a-f]{64}$")


class LabUnavailable(Exception):
    """The lab cannot be built on this machine (the message says why, in one sentence)."""


def main_engine(*args: str) -> subprocess.CompletedProcess[str]:
    """docker against the main engine, whatever DOCKER_HOST says."""
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, env=env)


def require_host() -> None:
    """Fail (never skip) when this machine cannot run the lab."""
    if os.geteuid() != 0:
        raise LabUnavailable("the swarm lab needs root (network namespaces, a bridge, iptables, dockerd)")
    missing = [c for c in ("docker", "dockerd", "ip", "iptables", "nsenter", "unshare") if not shutil.which(c)]
    if missing:
        raise LabUnavailable(f"missing {', '.join(missing)}: run 'make engine' and scripts/deps/host.sh")
    if main_engine("info").returncode != 0:
        raise LabUnavailable("the main Docker engine does not answer: run 'make engine'")
    if main_engine("image", "inspect", BASE_IMAGE).returncode != 0:
        raise LabUnavailable(f"the main engine has no {BASE_IMAGE}: run 'make images'")


def script(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_HOST"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def wait_for(what: str, predicate: Any, timeout: float = 90, interval: float = 1) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@dataclass
class Task:
    node: str  # hostname, fp-swarm-N
    state: str
    container: str


class SwarmLab:
    """Docker commands against one node of the lab, and services made for one test."""

    def __init__(self) -> None:
        # skopeo's blob-info cache directory: `down` removes it only when the lab created it. A lab left up
        # by an earlier run may already have made it (its marker is in RUN_DIR): then it is the lab's.
        self.had_containers_dir = (
            Path("/var/lib/containers").exists() and not (RUN_DIR / "made-var-lib-containers").exists()
        )

    def socket(self, node: str) -> str:
        return f"unix://{RUN_DIR}/{node}.sock"

    def run(self, node: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": self.socket(node)}
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env)

    def docker(self, node: str, *args: str, check: bool = True, timeout: float = 120) -> str:
        done = self.run(node, *args, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} on {node}: {done.stderr.strip()}")
        return done.stdout

    def manager(self, *args: str, check: bool = True) -> str:
        return self.docker("node1", *args, check=check)

    def inspect(self, node: str, kind: str, name: str) -> Any:
        return json.loads(self.docker(node, kind, "inspect", name))[0]

    def nodes(self) -> list[dict[str, Any]]:
        ids = self.manager("node", "ls", "-q").split()
        return list(json.loads(self.manager("node", "inspect", *ids)))

    def push(self, image: str) -> str:
        done = script("push", image, timeout=600)
        if done.returncode != 0:
            raise AssertionError(f"swarm-lab.sh push {image}: {done.stderr.strip()}")
        return done.stdout.strip().splitlines()[-1]

    def tasks(self, service: str) -> list[Task]:
        """The tasks of a service that should be running, with their node and state."""
        out = self.manager(
            "service",
            "ps",
            service,
            "--no-trunc",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.ID}}",
        )
        found = []
        for task_id in out.split():
            task = json.loads(self.manager("inspect", "--type", "task", task_id))[0]
            node = (
                self.inspect("node1", "node", task["NodeID"])["Description"]["Hostname"] if task.get("NodeID") else ""
            )
            container = (task.get("Status", {}).get("ContainerStatus") or {}).get("ContainerID", "")
            found.append(Task(node=node, state=task["Status"]["State"], container=container))
        return found

    def running(self, service: str, count: int, timeout: float = 120) -> list[Task]:
        def ready() -> list[Task] | None:
            tasks = self.tasks(service)
            running = [t for t in tasks if t.state == "running"]
            return running if len(running) == count and len(tasks) == count else None

        return list(wait_for(f"{count} running task(s) of {service}", ready, timeout=timeout))

    @contextlib.contextmanager
    def service(self, name: str, image: str, *options: str, command: list[str] | None = None) -> Iterator[str]:
        self.manager("service", "rm", name, check=False)
        self.manager(
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--stop-grace-period",
            "2s",
            "--env",
            "NODE={{.Node.Hostname}}",
            *options,
            image,
            *(command or ECHO_SERVER),
        )
        try:
            yield name
        finally:
            self.manager("service", "rm", name, check=False)

    def exec(self, node: str, container: str, *command: str) -> str:
        return self.docker(node, "exec", container, *command, timeout=60)


def node_of(hostname: str) -> str:
    return next(n for n, h in HOSTNAME.items() if h == hostname)


def tcp_read(container_exec: Any, address: str, port: int = 8080) -> str:
    """Read one reply from address:port inside a container (bash's /dev/tcp; the image has no curl)."""
    return str(container_exec("timeout", "5", "bash", "-c", f"exec 3<>/dev/tcp/{address}/{port}; cat <&3")).strip()
