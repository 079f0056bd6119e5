"""Losing a node on the lab: tests/swarm/program.py deployed through the real engine (tests/swarm/driver.py)
with nginx on both edge nodes and the backend spread one task per node; a client that does what a load
balancer in front of the edge nodes does (a refused connection is tried once on the other edge node) sends
/api/ at 20 req/s while a worker running a backend task is drained, then its dockerd stopped
(``scripts/swarm-lab.sh stop-node``). No API request may fail. The worker then comes back, the backend is
rebalanced onto it, and destroy leaves nothing. The figures (convergence, requests sent, failed, retried, the
longest gap between two answers, ``docker node ps`` before, during and after) are printed (``-s``) and
written to node-loss.json in the test's temp folder. Runs before test_teardown.py (file order).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
from pulumi import automation as auto

from tests.swarm.driver import PORT, Deployment, assert_nothing_left, program_stack, push_images, timed
from tests.swarm.lab import ADDRESS, HOSTNAME, SwarmLab, node_of, script, wait_for
from tests.swarm.program import BACKEND_PAGE

pytestmark = pytest.mark.e2e
EDGES = ("node2", "node3")
RATE = 20  # requests per second
LIMIT = 90.0  # seconds of traffic at most
FIGURES: dict[str, Any] = {"times (s)": {}, "node ps": {}}
TIMES: dict[str, float] = FIGURES["times (s)"]


@dataclass
class Traffic:
    sent: int = 0
    failed: int = 0
    retried: int = 0  # refused by one edge node, answered by the other
    longest_gap: float = 0.0  # seconds between two successful answers
    errors: list[str] = field(default_factory=list)


@dataclass
class Lost:
    node: str = ""  # node1..3
    stopped: bool = False


LOST = Lost()


def _connect(address: str) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection(address, PORT, timeout=1)  # a silent address costs 1 s
    connection.connect()
    assert connection.sock is not None
    connection.sock.settimeout(5)
    return connection


def _ask(connection: http.client.HTTPConnection) -> str:
    try:
        connection.request("GET", "/api/")
        response = connection.getresponse()
        body = response.read().decode()
        return "" if response.status == 200 and body == BACKEND_PAGE else f"{response.status} {body[:80]!r}"
    finally:
        connection.close()


def _client(traffic: Traffic, stop: threading.Event) -> None:
    """One request every 1/RATE s to the edge nodes in turn, until stopped or LIMIT s have passed."""
    started = last_ok = time.monotonic()
    while not stop.is_set() and time.monotonic() - started < LIMIT:
        first, other = (EDGES[0], EDGES[1]) if traffic.sent % 2 == 0 else (EDGES[1], EDGES[0])
        traffic.sent += 1
        problem = ""
        try:
            try:
                connection = _connect(ADDRESS[first])
            except OSError:  # the node's address refuses (no nginx there) or does not answer: the other one
                traffic.retried += 1
                connection = _connect(ADDRESS[other])
            problem = _ask(connection)
        except (OSError, http.client.HTTPException) as error:
            problem = f"{type(error).__name__}: {error}"
        now = time.monotonic()
        if problem:
            traffic.failed += 1
            traffic.errors.append(f"{now - started:.1f}s {problem}")
        else:
            traffic.longest_gap = max(traffic.longest_gap, now - last_ok)
            last_ok = now
        time.sleep(max(0.0, started + traffic.sent / RATE - time.monotonic()))
    traffic.longest_gap = max(traffic.longest_gap, time.monotonic() - last_ok)


def _node_ps(swarm: SwarmLab, moment: str) -> None:
    listing = "\n".join(
        swarm.manager(
            "node", "ps", HOSTNAME[node], "--format", "{{.Node}}\t{{.Name}}\t{{.DesiredState}}\t{{.CurrentState}}"
        ).strip()
        or f"{HOSTNAME[node]}\t(no task)"
        for node in ("node1", "node2", "node3")
    )
    FIGURES["node ps"][moment] = listing
    print(f"\ndocker node ps ({moment}):\n{listing}")


def _placed(swarm: SwarmLab, service: str) -> list[str]:
    return sorted(t.node for t in swarm.tasks(service) if t.state == "running")


@pytest.fixture(scope="module")
def deployed(swarm: SwarmLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    refs = push_images(swarm, TIMES)
    tmp = tmp_path_factory.mktemp("node-loss")
    report = tmp_path_factory.mktemp("node-loss-report") / "node-loss.json"
    extra = {"lab:backend_spread": auto.ConfigValue("true")}
    try:
        with program_stack(swarm, tmp, refs, extra) as deployment:
            result = timed(TIMES, "pulumi up from nothing (converged)", lambda: deployment.stack.up(color="never"))
            deployment.services = result.outputs["services"].value
            try:
                yield deployment
            finally:
                if LOST.stopped:
                    assert script("start-node", LOST.node).returncode == 0
                    LOST.stopped = False
                for node in HOSTNAME.values():
                    swarm.manager("node", "update", "--availability", "active", node, check=False)
    finally:
        report.write_text(json.dumps(FIGURES, indent=1))
        print(f"\nnode loss figures ({report}):\n{report.read_text()}")


def test_the_stack_converges_with_one_nginx_per_edge_node_and_the_backend_on_two_nodes(
    swarm: SwarmLab, deployed: Deployment
) -> None:
    backend = swarm.running(deployed.services["backend"], 2, timeout=60)
    nginx = swarm.running(deployed.services["nginx"], 2, timeout=60)
    _node_ps(swarm, "before")
    assert sorted(t.node for t in nginx) == ["fp-swarm-2", "fp-swarm-3"], "one nginx per edge node"
    assert len({t.node for t in backend}) == 2, "the backend's two tasks on two nodes"
    for node in EDGES:
        assert wait_for("the backend via nginx", lambda n=node: _reply(n), 30) == BACKEND_PAGE


def _reply(node: str) -> str | None:
    try:
        connection = _connect(ADDRESS[node])
        return BACKEND_PAGE if _ask(connection) == "" else None
    except (OSError, http.client.HTTPException):
        return None


def test_losing_a_worker_that_runs_a_backend_task_fails_no_api_request(swarm: SwarmLab, deployed: Deployment) -> None:
    backend, nginx = deployed.services["backend"], deployed.services["nginx"]
    victim = next(node_of(host) for host in _placed(swarm, backend) if host in ("fp-swarm-2", "fp-swarm-3"))
    host = HOSTNAME[victim]
    FIGURES["lost node"] = host
    traffic = Traffic()
    stop = threading.Event()
    client = threading.Thread(target=_client, args=(traffic, stop), daemon=True)
    client.start()
    try:
        time.sleep(5)  # steady traffic first
        started = time.monotonic()
        swarm.manager("node", "update", "--availability", "drain", host)

        def moved() -> bool:
            placed = _placed(swarm, backend)
            return (
                len(placed) == 2
                and host not in placed
                and _placed(swarm, nginx) == [HOSTNAME[e] for e in EDGES if e != victim]
            )

        wait_for(f"the backend and nginx to leave {host}", moved, timeout=60)
        TIMES["drain: backend 2/2 again elsewhere"] = round(time.monotonic() - started, 1)
        _node_ps(swarm, f"during: {host} drained")
        LOST.node, LOST.stopped = victim, True
        stopped = timed(TIMES, "stop-node", lambda: script("stop-node", victim, timeout=120))
        assert stopped.returncode == 0, stopped.stderr
        started = time.monotonic()

        def down() -> bool:
            return bool(swarm.inspect("node1", "node", host)["Status"]["State"] == "down")

        wait_for(f"the manager to see {host} down", down, timeout=60)
        TIMES["stopped until the manager sees the node down"] = round(time.monotonic() - started, 1)
        _node_ps(swarm, f"during: {host} down")
        time.sleep(5)  # traffic with the node down
    finally:
        stop.set()
        client.join(timeout=LIMIT + 30)
    FIGURES["traffic"] = {
        **asdict(traffic),
        "longest_gap": round(traffic.longest_gap, 2),
        "errors": traffic.errors[:20],
    }
    print(f"\ntraffic during the loss of {host}: {json.dumps(FIGURES['traffic'])}")
    assert traffic.sent >= RATE * 20, "traffic ran through the drain and the stop"
    assert traffic.retried > 0, "the lost edge node's address refused, the other answered"
    assert traffic.failed == 0, traffic.errors[:20]
    assert _placed(swarm, backend) and len(set(_placed(swarm, backend))) == 2


def test_the_worker_comes_back_and_the_backend_is_rebalanced_onto_it(swarm: SwarmLab, deployed: Deployment) -> None:
    assert LOST.stopped, "the node loss ran first"
    backend, nginx = deployed.services["backend"], deployed.services["nginx"]
    host = HOSTNAME[LOST.node]
    started = timed(TIMES, "start-node (Ready)", lambda: script("start-node", LOST.node, timeout=180))
    assert started.returncode == 0, started.stderr
    LOST.stopped = False
    swarm.manager("node", "update", "--availability", "active", host)
    timed(
        TIMES,
        "nginx back on both edge nodes",
        lambda: wait_for(
            "nginx on both edge nodes", lambda: _placed(swarm, nginx) == ["fp-swarm-2", "fp-swarm-3"], timeout=90
        ),
    )
    assert host not in _placed(swarm, backend), "the swarm does not move running tasks by itself"
    # A forced rolling update (start-first, one task per node) starts the first new task on the only node
    # without one, the returned worker.
    timed(
        TIMES,
        "service update --force (backend rebalanced)",
        lambda: swarm.docker(
            "node1", "service", "update", "--force", "--detach=false", "--quiet", backend, timeout=180
        ),
    )

    def spread() -> list[str] | None:
        placed = _placed(swarm, backend)
        return placed if len(placed) == 2 else None

    placed = wait_for("the backend on two nodes", spread)
    _node_ps(swarm, "after")
    assert len(set(placed)) == 2 and host in placed, placed
    for node in EDGES:
        assert wait_for("the backend via nginx", lambda n=node: _reply(n), 30) == BACKEND_PAGE


def test_destroy_leaves_nothing_on_the_swarm(swarm: SwarmLab, deployed: Deployment) -> None:
    timed(TIMES, "pulumi destroy", lambda: deployed.stack.destroy(color="never"))
    deployed.destroyed = True
    assert_nothing_left(swarm, deployed.name)
