"""The swarm lab for real: three Ready nodes (1 manager, 2 workers) with their placement labels, a TLS
registry the nodes pull from by digest, an overlay network carrying traffic between tasks on two nodes,
host-mode publishing on the edge nodes, a drained node's tasks moving elsewhere, and the operator tunnel
(OpenSSH to the manager, forwarding to its loopback only). ``make e2e-swarm``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import socket
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.swarm.lab import (
    ADDRESS,
    CA,
    DIGEST_REF,
    HOSTNAME,
    LAB_DIR,
    NODES,
    REGISTRY,
    RUN_DIR,
    SwarmLab,
    main_engine,
    node_of,
    script,
    tcp_read,
    wait_for,
)

pytestmark = pytest.mark.e2e
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def _read(address: str, port: int = 8080) -> str:
    with socket.create_connection((address, port), timeout=5) as conn:
        return conn.makefile().read().strip()


# -- nodes -----------------------------------------------------------------------------------------


def test_three_nodes_ready_one_manager_two_workers(swarm: SwarmLab) -> None:
    nodes = {n["Description"]["Hostname"]: n for n in swarm.nodes()}
    assert sorted(nodes) == sorted(HOSTNAME.values())
    assert {h: n["Status"]["State"] for h, n in nodes.items()} == dict.fromkeys(HOSTNAME.values(), "ready")
    assert {h: n["Spec"]["Role"] for h, n in nodes.items()} == {
        "fp-swarm-1": "manager",
        "fp-swarm-2": "worker",
        "fp-swarm-3": "worker",
    }
    assert nodes["fp-swarm-1"]["ManagerStatus"]["Leader"] is True
    assert nodes["fp-swarm-1"]["ManagerStatus"]["Addr"] == "198.18.232.11:2377"
    assert {h: n["Status"]["Addr"] for h, n in nodes.items()} == {HOSTNAME[k]: a for k, a in ADDRESS.items()}


def test_nodes_are_labelled_for_placement(swarm: SwarmLab) -> None:
    labels = {n["Description"]["Hostname"]: n["Spec"]["Labels"] for n in swarm.nodes()}
    assert labels == {
        "fp-swarm-1": {"fly-potato.role": "data"},
        "fp-swarm-2": {"fly-potato.role": "edge"},
        "fp-swarm-3": {"fly-potato.role": "edge"},
    }


def test_each_node_is_an_engine_of_its_own_in_its_own_namespace(swarm: SwarmLab) -> None:
    main_id = json.loads(main_engine("info", "--format", "{{json .ID}}").stdout)
    infos = {node: json.loads(swarm.docker(node, "info", "--format", "{{json .}}")) for node in NODES}
    assert {node: info["Name"] for node, info in infos.items()} == HOSTNAME
    assert len({info["ID"] for info in infos.values()} | {main_id}) == 4
    host_net = os.readlink("/proc/self/ns/net")
    for node in NODES:
        pid = Path(f"/run/fly-potato-swarm/{node}.pid").read_text().strip()
        daemon_net = os.readlink(f"/proc/{pid}/ns/net")
        assert daemon_net != host_net, f"{node}'s dockerd runs in the host's network namespace"
        assert os.stat(f"/var/run/netns/{HOSTNAME[node]}").st_ino == os.stat(f"/proc/{pid}/ns/net").st_ino
        assert infos[node]["Swarm"]["NodeAddr"] == ADDRESS[node]


def test_up_again_leaves_a_healthy_lab_alone(swarm: SwarmLab) -> None:
    before = sorted(n["ID"] for n in swarm.nodes())
    sshd = (RUN_DIR / "sshd.pid").read_text()
    again = script("up", timeout=120)
    assert again.returncode == 0, again.stderr
    assert "already up" in again.stderr
    assert sorted(n["ID"] for n in swarm.nodes()) == before
    assert (RUN_DIR / "sshd.pid").read_text() == sshd


# -- registry --------------------------------------------------------------------------------------


def test_registry_speaks_tls_with_the_lab_ca_only(swarm: SwarmLab) -> None:
    lab_ca = ssl.create_default_context(cafile=str(CA))
    with urllib.request.urlopen(f"https://{REGISTRY}/v2/", context=lab_ca, timeout=10) as response:
        assert response.status == 200
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"https://{REGISTRY}/v2/", context=ssl.create_default_context(), timeout=10)
    assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)
    # No node treats it as an insecure (plain HTTP or unverified) registry: they trust the lab CA.
    for node in NODES:
        registry_config = json.loads(swarm.docker(node, "info", "--format", "{{json .RegistryConfig}}"))
        assert (
            REGISTRY not in (registry_config.get("IndexConfigs") or {})
            or registry_config["IndexConfigs"][REGISTRY]["Secure"]
        )
        assert not any(c.startswith("198.18.232.") for c in registry_config.get("InsecureRegistryCIDRs") or [])


def test_push_prints_a_digest_the_registry_serves(swarm: SwarmLab, base_ref: str) -> None:
    assert DIGEST_REF.match(base_ref), base_ref
    repository, digest = base_ref.removeprefix(f"{REGISTRY}/").split("@")
    request = urllib.request.Request(
        f"https://{REGISTRY}/v2/{repository}/manifests/{digest}", headers={"Accept": MANIFEST_V2}
    )
    lab_ca = ssl.create_default_context(cafile=str(CA))
    with urllib.request.urlopen(request, context=lab_ca, timeout=10) as response:  # noqa: S310
        body = response.read()
        assert response.headers["Docker-Content-Digest"] == digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    assert json.loads(body)["mediaType"] == MANIFEST_V2


def test_worker_pulls_by_digest_from_the_registry(swarm: SwarmLab, base_ref: str) -> None:
    swarm.docker("node3", "pull", "--quiet", base_ref, timeout=300)
    image = swarm.inspect("node3", "image", base_ref)
    assert base_ref in image["RepoDigests"]
    # The pull went to the registry: a digest it does not hold is refused by it, on either worker.
    unknown = f"{base_ref.split('@')[0]}@sha256:{'0' * 64}"
    for node in ("node2", "node3"):
        refused = swarm.run(node, "pull", unknown, timeout=60)
        assert refused.returncode != 0
        assert "manifest unknown" in refused.stderr or "not found" in refused.stderr, refused.stderr


# -- services ----------------------------------------------------------------------------------------


def test_overlay_carries_traffic_between_tasks_on_two_nodes(swarm: SwarmLab, base_ref: str) -> None:
    swarm.manager("network", "rm", "lab-overlay", check=False)
    swarm.manager("network", "create", "--driver", "overlay", "--attachable", "lab-overlay")
    try:
        with swarm.service(
            "lab-echo",
            base_ref,
            "--network",
            "lab-overlay",
            "--endpoint-mode",
            "dnsrr",  # this kernel has no IPVS for service VIPs (scripts/swarm-lab.sh status)
            "--replicas",
            "2",
            "--replicas-max-per-node",
            "1",
            "--constraint",
            "node.labels.fly-potato.role==edge",
        ) as service:
            tasks = swarm.running(service, 2)
            assert sorted(t.node for t in tasks) == ["fp-swarm-2", "fp-swarm-3"]
            spec = swarm.inspect("node1", "service", service)["Spec"]["TaskTemplate"]["ContainerSpec"]
            assert spec["Image"] == base_ref
            here = next(t for t in tasks if t.node == "fp-swarm-2")

            def run(*command: str) -> str:
                return swarm.exec("node2", here.container, *command)

            def both_addresses() -> list[str] | None:
                found = swarm.run("node2", "exec", here.container, "getent", "hosts", f"tasks.{service}")
                addresses = found.stdout.split()[::2]
                return addresses if len(addresses) == 2 else None

            addresses = wait_for("both tasks in the service's DNS", both_addresses)
            replies = sorted(tcp_read(run, address) for address in addresses)
            assert replies == ["fp-swarm-2", "fp-swarm-3"], "a task on fp-swarm-2 reaches the one on fp-swarm-3"
    finally:
        wait_for(
            "lab-overlay removed",
            lambda: swarm.manager("network", "rm", "lab-overlay", check=False) or None,
            timeout=30,
        )


def test_edge_nodes_publish_in_host_mode(swarm: SwarmLab, base_ref: str) -> None:
    with swarm.service(
        "lab-edge",
        base_ref,
        "--mode",
        "global",
        "--constraint",
        "node.labels.fly-potato.role==edge",
        "--publish",
        "mode=host,target=8080,published=18080",
    ) as service:
        swarm.running(service, 2)
        assert _read(ADDRESS["node2"], 18080) == "fp-swarm-2"
        assert _read(ADDRESS["node3"], 18080) == "fp-swarm-3"
        with pytest.raises(ConnectionRefusedError):
            _read(ADDRESS["node1"], 18080)  # the data node publishes nothing


def test_drained_node_hands_its_tasks_to_another(swarm: SwarmLab, base_ref: str) -> None:
    with swarm.service(
        "lab-drain",
        base_ref,
        "--replicas",
        "2",
        "--constraint",
        "node.labels.fly-potato.role==edge",
    ) as service:
        tasks = swarm.running(service, 2)
        assert sorted(t.node for t in tasks) == ["fp-swarm-2", "fp-swarm-3"]  # spread over the edge nodes
        swarm.manager("node", "update", "--availability", "drain", "fp-swarm-3")
        try:
            moved = wait_for(
                "both tasks running on fp-swarm-2",
                lambda: (lambda ts: ts if [t.node for t in ts] == ["fp-swarm-2"] * 2 else None)(
                    [t for t in swarm.tasks(service) if t.state == "running"]
                ),
            )
            assert len(moved) == 2
            assert (
                swarm.docker(
                    node_of("fp-swarm-3"), "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}"
                )
                == ""
            )
        finally:
            swarm.manager("node", "update", "--availability", "active", "fp-swarm-3")


def test_ingress_publishing_is_refused_where_the_kernel_has_no_ipvs(swarm: SwarmLab, base_ref: str) -> None:
    status = script("status", timeout=60)
    networks = swarm.manager("network", "ls", "--format", "{{.Name}}").split()
    if "ipvs=no" not in status.stdout:
        assert "ingress" in networks  # the routing mesh is there where the kernel can carry it
        return
    assert "ingress" not in networks
    refused = swarm.run(
        "node1", "service", "create", "--detach", "--name", "lab-ingress", "--publish", "18081:8080", base_ref
    )
    assert refused.returncode != 0
    assert "no ingress network is present" in refused.stderr, refused.stderr


# -- operator tunnel ---------------------------------------------------------------------------------

MANAGER_NETNS = "/var/run/netns/fp-swarm-1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int, netns: str | None = None) -> str:
    """`ss` lines of TCP listeners on that port, in the host's namespace or in netns."""
    command = ["ss", "-Hltnp", f"sport = :{port}"]
    if netns:
        command = ["nsenter", f"--net={netns}", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=10, check=True).stdout.strip()


@contextlib.contextmanager
def _manager_loopback_server(tmp_path: Path, port: int) -> Iterator[str]:
    """python's http.server on 127.0.0.1:port inside the manager's network namespace, serving one token."""
    token = f"manager loopback {port}"
    (tmp_path / "token").write_text(token)
    serve = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(tmp_path), str(port)]
    server = subprocess.Popen(
        ["nsenter", f"--net={MANAGER_NETNS}", *serve],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"http.server on the manager's 127.0.0.1:{port}", lambda: _listening(port, MANAGER_NETNS), timeout=20)
        yield token
    finally:
        server.terminate()
        server.wait(timeout=10)


def _tunnel_pids() -> set[int]:
    directory = RUN_DIR / "tunnels"
    return {int(f.name) for f in directory.iterdir()} if directory.is_dir() else set()


def _get(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/token", timeout=5) as response:
        return str(response.read().decode())


def _operator_ssh(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    options = script("ssh-config", timeout=30)
    assert options.returncode == 0, options.stderr
    command = ["ssh", "-F", "/dev/null", *args, *shlex.split(options.stdout)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_sshd_listens_on_the_managers_address_only(swarm: SwarmLab) -> None:
    pid = int((RUN_DIR / "sshd.pid").read_text())
    assert os.stat(MANAGER_NETNS).st_ino == os.stat(f"/proc/{pid}/ns/net").st_ino
    listeners = _listening(22, MANAGER_NETNS).splitlines()
    assert len(listeners) == 1 and " 198.18.232.11:22 " in listeners[0], listeners
    assert '"sshd"' not in subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    key = LAB_DIR / "ssh/operator_ed25519"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    options = script("ssh-config").stdout.split()
    assert options[-1] == "root@198.18.232.11"
    assert str(key) in options and "StrictHostKeyChecking=yes" in options
    assert "sshd: root@198.18.232.11:22" in script("status").stdout


def test_tunnel_reaches_the_managers_loopback_only(swarm: SwarmLab, tmp_path: Path) -> None:
    remote, local = 18765, _free_port()
    with _manager_loopback_server(tmp_path, remote) as token:
        try:
            opened = script("tunnel", f"{local}:{remote}", timeout=60)
            assert opened.returncode == 0 and opened.stdout == "" and opened.stderr == "", opened
            assert _get(local) == token
            pids = _tunnel_pids()
            assert len(pids) == 1
            again = script("tunnel", f"{local}:{remote}", timeout=60)  # the same tunnel: a no-op
            assert again.returncode == 0 and again.stdout == "" and again.stderr == "", again
            assert _tunnel_pids() == pids
            assert _get(local) == token
            # The listener is on the manager's loopback: its own address does not answer on that port.
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((ADDRESS["node1"], remote), timeout=5).close()
        finally:
            assert script("untunnel").returncode == 0


def test_tunnel_key_opens_no_shell_and_forwards_to_the_managers_loopback_only(swarm: SwarmLab) -> None:
    shell = _operator_ssh("true")
    assert shell.returncode != 0, shell
    # A target off the manager's loopback that the manager itself reaches: its own sshd, a worker's swarm port.
    forwards = {_free_port(): "198.18.232.11:22", _free_port(): "198.18.232.12:2377"}
    options = shlex.split(script("ssh-config").stdout)
    local_forwards = [arg for port, target in forwards.items() for arg in ("-L", f"127.0.0.1:{port}:{target}")]
    client = subprocess.Popen(
        ["ssh", "-F", "/dev/null", "-N", "-o", "ExitOnForwardFailure=yes", *local_forwards, *options],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for port in forwards:
            wait_for(f"ssh listening on 127.0.0.1:{port}", lambda p=port: _listening(p), timeout=20, interval=0.2)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                conn.settimeout(5)
                assert conn.recv(64) == b"", f"the forward to {forwards[port]} was let through"
    finally:
        client.terminate()
        _, err = client.communicate(timeout=10)
    assert err.count("administratively prohibited") == len(forwards), err


def test_untunnel_closes_the_local_port(swarm: SwarmLab, tmp_path: Path) -> None:
    remote, local = 18766, _free_port()
    with _manager_loopback_server(tmp_path, remote) as token:
        try:
            assert script("tunnel", f"{local}:{remote}", timeout=60).returncode == 0
            assert _get(local) == token
            pids = _tunnel_pids()
        finally:
            done = script("untunnel")
        assert done.returncode == 0 and done.stdout == "", done
        assert _tunnel_pids() == set()
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", local), timeout=5).close()
