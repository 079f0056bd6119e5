"""A Docker host in miniature, built from network namespaces of our own.

``Lab`` creates, with a unique prefix per test session:

* ``host`` — forwards between the others; has a ``DOCKER-USER`` chain jumped to from ``FORWARD`` as
  dockerd sets it up, plus one foreign rule that must survive everything the stack does;
* ``egress`` — a container on the stack's egress zone (its address in the zone's subnet);
* ``data`` — a container on another zone of the stack;
* ``outside`` — a test host beyond the Docker host with two addresses (198.51.100.2 and .3).

Each namespace has its own iptables, so nothing here touches the machine's real DOCKER-USER chain.
Failures to create namespaces raise (the tests fail, they never skip).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

OUTSIDE = "198.51.100.2"
OUTSIDE_OTHER = "198.51.100.3"
OUTSIDE_NET = "198.51.100.0/24"
FOREIGN_RULE = ["-s", "192.0.2.9/32", "-m", "comment", "--comment", "operator rule", "-j", "RETURN"]

SERVER = r"""
import socket, sys, threading
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, _ = s.accept(); c.sendall(b"hello %d\n" % port); c.close()
def udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(512); s.sendto(b"echo " + data, peer)
for spec in sys.argv[1:]:
    proto, port = spec.split("/")
    threading.Thread(target=tcp if proto == "tcp" else udp, args=(int(port),), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""

CLIENT = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
source = sys.argv[4] if len(sys.argv) > 4 else None
try:
    if proto == "tcp":
        s = socket.socket(); s.settimeout(3)
        if source: s.bind((source, 0))
        s.connect((host, port)); data = s.recv(64)
        print("open" if data.startswith(b"hello") else "odd")
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.connect((host, port)); s.send(b"x")
        print("open" if s.recv(64).startswith(b"echo") else "odd")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
except OSError as exc:
    print("error:" + exc.__class__.__name__)
"""


def run(*argv: str, check: bool = True, timeout: float = 30, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kwargs)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result  # type: ignore[no-any-return]


def require_tools() -> None:
    missing = [tool for tool in ("ip", "iptables", "iptables-restore") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not installed; run scripts/deps/host.sh (make deps)")


@dataclass
class Lab:
    egress_subnet: str
    data_subnet: str
    prefix: str = field(default_factory=lambda: f"fpt{os.getpid() % 100000}")
    servers: list[subprocess.Popen[str]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"

    # -- building -------------------------------------------------------------------------------------

    def build(self) -> Lab:
        require_tools()
        for role in ("host", "egress", "data", "outside"):
            run("ip", "netns", "add", self.ns(role))
            self.names.append(self.ns(role))
            self.exec(role, "ip", "link", "set", "lo", "up")
        self._link("egress", self.egress_subnet)
        self._link("data", self.data_subnet)
        self._link("outside", OUTSIDE_NET, host_index=1, peer_index=2, extra=[OUTSIDE_OTHER])
        self.exec("outside", "ip", "route", "add", "10.0.0.0/8", "via", "198.51.100.1")
        self.exec("host", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # What dockerd does at start: DOCKER-USER first in FORWARD.
        self.exec("host", "iptables", "-N", "DOCKER-USER")
        self.exec("host", "iptables", "-A", "FORWARD", "-j", "DOCKER-USER")
        self.exec("host", "iptables", "-A", "DOCKER-USER", *FOREIGN_RULE)
        return self

    def _link(self, role: str, subnet: str, host_index: int = 1, peer_index: int = 2, extra: list[str] = ()) -> None:  # type: ignore[assignment]
        net = ipaddress.ip_network(subnet)
        hosts = list(net.hosts())
        host_if, peer_if = f"{self.prefix}h{role[0]}", f"{self.prefix}{role[0]}"
        run("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if)
        run("ip", "link", "set", host_if, "netns", self.ns("host"))
        run("ip", "link", "set", peer_if, "netns", self.ns(role))
        self.exec("host", "ip", "addr", "add", f"{hosts[host_index - 1]}/{net.prefixlen}", "dev", host_if)
        self.exec("host", "ip", "link", "set", host_if, "up")
        self.exec(role, "ip", "addr", "add", f"{hosts[peer_index - 1]}/{net.prefixlen}", "dev", peer_if)
        for address in extra:
            self.exec(role, "ip", "addr", "add", f"{address}/{net.prefixlen}", "dev", peer_if)
        self.exec(role, "ip", "link", "set", peer_if, "up")
        if role != "outside":
            self.exec(role, "ip", "route", "add", "default", "via", str(hosts[host_index - 1]))

    def address(self, role: str) -> str:
        subnet = {"egress": self.egress_subnet, "data": self.data_subnet, "outside": OUTSIDE_NET}[role]
        return str(list(ipaddress.ip_network(subnet).hosts())[1])

    def teardown(self) -> None:
        for server in self.servers:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
        for name in reversed(self.names):
            run("ip", "netns", "del", name, check=False)
        self.names.clear()

    # -- using ----------------------------------------------------------------------------------------

    def exec(
        self, role: str, *argv: str, check: bool = True, timeout: float = 30, **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.ns(role), *argv, check=check, timeout=timeout, **kwargs)

    def shell(self, role: str, command: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """Run a command string the way pulumi-command's local.Command does (``/bin/bash -c``)."""
        return self.exec(role, "/bin/bash", "-c", command, check=False, timeout=timeout)

    def serve(self, role: str, *specs: str) -> None:
        """Listen in ``role`` on ``tcp/PORT`` and ``udp/PORT`` (echo)."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(role), sys.executable, "-c", SERVER, *specs],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.servers.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"server in {role} did not start: {proc.stderr.read() if proc.stderr else ''}")

    def reach(self, role: str, proto: str, host: str, port: int, source: str | None = None) -> str:
        """``open``, ``refused``, ``timeout`` or ``error:…`` for a client in ``role``."""
        args = [sys.executable, "-c", CLIENT, proto, host, str(port)] + ([source] if source else [])
        return self.exec(role, *args, timeout=15).stdout.strip()

    def rules(self) -> list[str]:
        """The host namespace's filter table as ``iptables -S`` prints it."""
        return self.exec("host", "iptables", "-S").stdout.splitlines()


def wait_for(predicate: object, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


ROOT = Path(__file__).resolve().parents[2]
