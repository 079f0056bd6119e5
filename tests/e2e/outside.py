"""A client outside the Docker host: a network namespace joined to the host by a veth pair.

The prod profile publishes nginx on a routable address. On a test machine that address is the host end
of a veth pair (``198.18.231.1``, from the benchmarking block 198.18.0.0/15, never routed anywhere); the
other end lives in a namespace of its own, so a connection from there arrives as from another machine:
it reaches only what is published on the routable address, never what is bound to loopback.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.engine import EngineUnavailable

NAMESPACE = "fp-e2e-outside"
HOST_LINK, PEER_LINK = "fp-e2e-h", "fp-e2e-n"
NETWORK = ipaddress.ip_network("198.18.231.0/30")
HOST_ADDRESS, PEER_ADDRESS = (str(a) for a in NETWORK.hosts())


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@dataclass
class Outside:
    """The namespace; ``connects`` and ``run`` act from inside it."""

    namespace: str = NAMESPACE

    @property
    def netns(self) -> str:
        return f"/var/run/netns/{self.namespace}"

    @classmethod
    def create(cls) -> Outside:
        cls.remove()
        for route in json.loads(_ip("-j", "route", "show", "table", "all").stdout or "[]"):
            try:
                taken = ipaddress.ip_network(route.get("dst", ""), strict=False)
            except ValueError:  # "default", "multicast", …
                continue
            if taken.version == 4 and taken.overlaps(NETWORK):
                raise EngineUnavailable(
                    f"the host already routes {taken}, which overlaps the test block {NETWORK}; the prod-profile "
                    "tier needs that block free"
                )
        try:
            _ip("netns", "add", NAMESPACE)
            _ip("link", "add", HOST_LINK, "type", "veth", "peer", "name", PEER_LINK, "netns", NAMESPACE)
            _ip("addr", "add", f"{HOST_ADDRESS}/{NETWORK.prefixlen}", "dev", HOST_LINK)
            _ip("link", "set", HOST_LINK, "up")
            _ip("-n", NAMESPACE, "addr", "add", f"{PEER_ADDRESS}/{NETWORK.prefixlen}", "dev", PEER_LINK)
            _ip("-n", NAMESPACE, "link", "set", PEER_LINK, "up")
            _ip("-n", NAMESPACE, "link", "set", "lo", "up")
        except subprocess.CalledProcessError as error:
            cls.remove()
            raise EngineUnavailable(
                f"cannot create the outside network namespace ({error.stderr.strip()}); the prod-profile tier runs "
                "as root on a host with veth support"
            ) from error
        return cls()

    @staticmethod
    def remove() -> None:
        _ip("link", "del", HOST_LINK, check=False)
        _ip("netns", "del", NAMESPACE, check=False)

    def run(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A command in the namespace (``nsenter`` keeps the host's /sys, unlike ``ip netns exec``)."""
        return subprocess.run(
            ["nsenter", f"--net={self.netns}", *command], capture_output=True, text=True, timeout=timeout
        )

    def connects(self, address: str, port: int) -> bool:
        probe = (
            "import socket,sys\n"
            "try:\n"
            f"    socket.create_connection(({address!r}, {port}), timeout=3).close()\n"
            "except OSError:\n"
            "    sys.exit(1)\n"
        )
        return self.run("python3", "-c", probe, timeout=15).returncode == 0

    def serve(self, port: int) -> subprocess.Popen[bytes]:
        """A TCP listener on the namespace's own address (a host "out there"); the caller terminates it."""
        server = subprocess.Popen(
            ["nsenter", f"--net={self.netns}", "python3", "-m", "http.server", "--bind", PEER_ADDRESS, str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(50):
            if self.connects(PEER_ADDRESS, port):
                return server
            time.sleep(0.2)
        server.terminate()
        raise RuntimeError(f"no listener on {PEER_ADDRESS}:{port} in the outside namespace")

    def exists(self) -> bool:
        return Path(self.netns).exists()
