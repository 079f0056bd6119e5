"""The whole platform on the lab's three-node swarm: the real program (``target: swarm``) through the real engine
and providers, the Postgres and Keycloak providers reaching the manager's loopback through the lab's SSH tunnel
(tests/swarm/platform_stack.py).

Every service converges to its replicas, placed by role; ``/health/ready`` answers through nginx on both edge
nodes; a user logs in through oauth2-proxy and Keycloak; Postgres and Keycloak are not reachable on any node's
address; a second preview changes nothing. Then a node is lost under load: a client that does what a load
balancer in front of the edge nodes does (a refused connection is tried once on the other edge node) asks
``/health/ready`` at 20 req/s while the edge worker running a backend task is drained, then its dockerd stopped
(``scripts/swarm-lab.sh stop-node``). No request may fail. The worker comes back, the backend is rebalanced onto
it, and destroy leaves nothing. The figures (convergence, requests sent/failed/retried, the longest gap,
``docker node ps`` before, during and after) are printed (``-s``) and written to platform-on-swarm.json in the
test's temp folder. ``make e2e-swarm``; runs before test_teardown.py (file order).
"""

from __future__ import annotations

import contextlib
import html
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pytest
import requests
import urllib3.util.connection
from pulumi import automation as auto

from tests.swarm.driver import timed
from tests.swarm.lab import ADDRESS, HOSTNAME, SwarmLab, node_of, script, wait_for
from tests.swarm.platform_stack import DOMAIN, TUNNEL, assert_platform_gone, platform_stack, push_platform_images

pytestmark = pytest.mark.e2e
EDGES = ("node2", "node3")
RATE = 20  # requests per second
LIMIT = 120.0  # seconds of traffic at most
READY = "/health/ready"
FIGURES: dict[str, Any] = {"times (s)": {}, "node ps": {}}
TIMES: dict[str, float] = FIGURES["times (s)"]


@dataclass
class Live:
    stack: auto.Stack
    name: str
    outputs: dict[str, Any]
    services: dict[str, str]
    destroyed: bool = False


@dataclass
class Traffic:
    sent: int = 0
    failed: int = 0
    retried: int = 0  # refused by one edge node, answered by the other
    longest_gap: float = 0.0  # seconds between two successful answers
    errors: list[str] = field(default_factory=list)


@dataclass
class Lost:
    node: str = ""
    stopped: bool = False


LOST = Lost()


@pytest.fixture(scope="module")
def live(swarm: SwarmLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    refs = timed(TIMES, "push the five images", lambda: push_platform_images(swarm))
    report = tmp_path_factory.mktemp("platform-on-swarm-report") / "platform-on-swarm.json"
    try:
        with platform_stack(swarm, tmp_path_factory.mktemp("platform-on-swarm"), refs) as (stack, name):
            result = timed(TIMES, "pulumi up from nothing (converged)", lambda: stack.up(color="never"))
            outputs = {key: value.value for key, value in result.outputs.items()}
            deployment = Live(stack, name, outputs, outputs["swarm_services"])
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
        print(f"\nplatform on swarm figures ({report}):\n{report.read_text()}")


# -- what runs where -------------------------------------------------------------------------------------------


def _placed(swarm: SwarmLab, service: str) -> list[str]:
    return sorted(t.node for t in swarm.tasks(service) if t.state == "running")


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


def test_every_service_converges_to_its_replicas_placed_by_role(swarm: SwarmLab, live: Live) -> None:
    services = live.services
    expected = {"postgres": 1, "keycloak": 1, "oauth2_proxy": 2, "backend": 2, "nginx": 2}
    for key, count in expected.items():
        swarm.running(services[key], count, timeout=120)
    _node_ps(swarm, "before")
    assert _placed(swarm, services["postgres"]) == ["fp-swarm-1"], "postgres on the data node, with its volume"
    assert _placed(swarm, services["nginx"]) == ["fp-swarm-2", "fp-swarm-3"], "one nginx per edge node"
    assert len(set(_placed(swarm, services["backend"]))) == 2, "the backend's two tasks on two nodes"
    proxy = swarm.inspect("node1", "container", f"fly-potato-{live.name}-operator-proxy")
    assert proxy["State"]["Health"]["Status"] == "healthy"
    bindings = proxy["HostConfig"]["PortBindings"]
    assert {b["HostIp"] for rows in bindings.values() for b in rows} == {"127.0.0.1"}, bindings


# -- the users' path ---------------------------------------------------------------------------------------------


def _edge_get(node: str, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection(ADDRESS[node], 80, timeout=5)
    try:
        connection.request("GET", path, headers={"Host": DOMAIN})
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def test_ready_and_the_api_answer_through_nginx_on_both_edge_nodes(live: Live) -> None:
    for node in EDGES:
        status, body = wait_for(
            f"{READY} via {node}", lambda n=node: (lambda a: a if a[0] == 200 else None)(_edge_get(n, READY)), 60
        )
        assert json.loads(body)["status"] == "ready"
        assert _edge_get(node, "/api/regions")[0] == 401, "the API wants a login"


@contextlib.contextmanager
def _resolving(domain: str, address: str) -> Iterator[None]:
    """``domain`` resolves to ``address`` for requests made inside (the test's own DNS, no resolver touched)."""
    original = urllib3.util.connection.create_connection

    def create_connection(target: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        host, port = target
        return original((address if host == domain else host, port), *args, **kwargs)

    urllib3.util.connection.create_connection = create_connection  # type: ignore[assignment]
    try:
        yield
    finally:
        urllib3.util.connection.create_connection = original  # type: ignore[assignment]


def test_a_user_logs_in_through_oauth2_proxy_and_keycloak_on_the_swarm(live: Live) -> None:
    password = live.outputs["keycloak_test_users"]["analyst"]
    base = f"http://{DOMAIN}"
    with _resolving(DOMAIN, ADDRESS["node3"]):
        browser = requests.Session()
        page = browser.get(f"{base}/oauth2/start", params={"rd": "/api/regions"}, timeout=30)
        assert "/sso/realms/" in page.url and page.status_code == 200, (page.url, page.status_code)
        action = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', page.text)
        assert action, page.text[:300]
        for cookie in browser.cookies:
            cookie.secure = False  # plain http in dev; a browser would keep them for this host too
        landed = browser.post(
            html.unescape(action.group(1)), data={"username": "analyst", "password": password}, timeout=30
        )
    assert landed.status_code == 200, (landed.url, landed.text[:300])
    assert landed.url == f"{base}/api/regions"
    assert isinstance(landed.json(), list)


def test_postgres_and_keycloak_are_reached_only_through_the_tunnel(live: Live) -> None:
    for node in ("node1", "node2", "node3"):
        for port in (5433, 8080):
            with pytest.raises(OSError), socket.create_connection((ADDRESS[node], port), timeout=3):
                pass
    with socket.create_connection(("127.0.0.1", TUNNEL["postgres"][0]), timeout=5):
        pass
    realm = requests.get(f"http://127.0.0.1:{TUNNEL['keycloak'][0]}/sso/realms/master", timeout=10)
    assert realm.status_code == 200 and realm.json()["realm"] == "master"


def test_a_second_preview_changes_nothing(live: Live) -> None:
    preview = timed(TIMES, "pulumi preview (no change)", lambda: live.stack.preview(color="never"))
    changes = {op: n for op, n in preview.change_summary.items() if op != "same" and n}
    assert changes == {}, preview.stdout[-3000:]


# -- a node lost under load --------------------------------------------------------------------------------------


def _ask(address: str) -> str:
    """'' when /health/ready answers 200 ready; the problem otherwise. A refused connection raises."""
    connection = http.client.HTTPConnection(address, 80, timeout=1)  # a silent address costs 1 s
    connection.connect()
    assert connection.sock is not None
    connection.sock.settimeout(5)
    try:
        connection.request("GET", READY, headers={"Host": DOMAIN})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        return "" if response.status == 200 and '"ready"' in body else f"{response.status} {body[:80]!r}"
    finally:
        connection.close()


def _client(traffic: Traffic, stop: threading.Event) -> None:
    """One request every 1/RATE s to the edge nodes in turn, until stopped or LIMIT s have passed."""
    started = last_ok = time.monotonic()
    while not stop.is_set() and time.monotonic() - started < LIMIT:
        first, other = (EDGES[0], EDGES[1]) if traffic.sent % 2 == 0 else (EDGES[1], EDGES[0])
        traffic.sent += 1
        try:
            try:
                problem = _ask(ADDRESS[first])
            except OSError:  # no nginx there any more, or the node is gone: the other edge node
                traffic.retried += 1
                problem = _ask(ADDRESS[other])
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


def test_losing_a_worker_that_runs_a_backend_task_fails_no_request(swarm: SwarmLab, live: Live) -> None:
    backend, nginx = live.services["backend"], live.services["nginx"]
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

        wait_for(f"the backend and nginx to leave {host}", moved, timeout=120)
        TIMES["drain: backend 2/2 again elsewhere"] = round(time.monotonic() - started, 1)
        _node_ps(swarm, f"during: {host} drained")
        LOST.node, LOST.stopped = victim, True
        stopped = timed(TIMES, "stop-node", lambda: script("stop-node", victim, timeout=120))
        assert stopped.returncode == 0, stopped.stderr
        started = time.monotonic()
        wait_for(
            f"the manager to see {host} down",
            lambda: swarm.inspect("node1", "node", host)["Status"]["State"] == "down",
            timeout=60,
        )
        TIMES["stopped until the manager sees the node down"] = round(time.monotonic() - started, 1)
        _node_ps(swarm, f"during: {host} down")
        time.sleep(5)  # traffic with the node down
    finally:
        stop.set()
        client.join(timeout=LIMIT + 30)
    FIGURES["traffic"] = {**asdict(traffic), "longest_gap": round(traffic.longest_gap, 2), "errors": traffic.errors[:20]}
    print(f"\ntraffic during the loss of {host}: {json.dumps(FIGURES['traffic'])}")
    assert traffic.sent >= RATE * 20, "traffic ran through the drain and the stop"
    assert traffic.retried > 0, "the lost edge node's address refused, the other answered"
    assert traffic.failed == 0, traffic.errors[:20]


def test_the_worker_comes_back_and_the_backend_is_rebalanced_onto_it(swarm: SwarmLab, live: Live) -> None:
    assert LOST.stopped, "the node loss ran first"
    backend, nginx = live.services["backend"], live.services["nginx"]
    host = HOSTNAME[LOST.node]
    started = timed(TIMES, "start-node (Ready)", lambda: script("start-node", LOST.node, timeout=180))
    assert started.returncode == 0, started.stderr
    LOST.stopped = False
    swarm.manager("node", "update", "--availability", "active", host)
    timed(
        TIMES,
        "nginx back on both edge nodes",
        lambda: wait_for(
            "nginx on both edge nodes", lambda: _placed(swarm, nginx) == ["fp-swarm-2", "fp-swarm-3"], timeout=120
        ),
    )
    assert host not in _placed(swarm, backend), "the swarm does not move running tasks by itself"
    # A forced rolling update (start-first) places the new tasks by spreading them: the first goes to a node
    # without one of the service's tasks, the returned worker.
    timed(
        TIMES,
        "service update --force (backend rebalanced)",
        lambda: swarm.docker("node1", "service", "update", "--force", "--detach=false", "--quiet", backend, timeout=300),
    )
    placed = wait_for("the backend on two nodes", lambda: (lambda p: p if len(p) == 2 else None)(_placed(swarm, backend)))
    _node_ps(swarm, "after")
    assert host in placed and len(set(placed)) == 2, placed
    for node in EDGES:
        assert wait_for(f"{READY} via {node}", lambda n=node: _edge_get(n, READY)[0] == 200 or None, 60)


def test_destroy_leaves_nothing_on_the_swarm(swarm: SwarmLab, live: Live) -> None:
    timed(TIMES, "pulumi destroy", lambda: live.stack.destroy(color="never"))
    live.destroyed = True
    assert_platform_gone(swarm, live.name)
