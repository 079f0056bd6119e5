"""components.swarm for real on the lab: a throwaway Pulumi program (tests/swarm/program.py) through the real
engine and docker plugin deploys SwarmZones and two HardenedServices onto the three-node swarm, and the swarm
shows what the components promise: replicas converged and placed, the hardening in the service spec, the
secret file owned by the service's uid with mode 0400, nginx on the edge nodes' own addresses reaching the
backend over the internal overlay, a rotated secret replacing the old one, a no-op preview, and nothing left
after destroy. Times are printed (``-s``). Runs before test_teardown.py (file order). ``make e2e-swarm``.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi import automation as auto

from tests.swarm.driver import (
    PORT,
    Deployment,
    assert_nothing_left,
    labelled,
    program_stack,
    push_images,
    timed,
)
from tests.swarm.lab import ADDRESS, SwarmLab, node_of, wait_for
from tests.swarm.program import BACKEND_PAGE, SECRET_PATH
from wire import SERVICE_LABEL, STACK_LABEL

pytestmark = pytest.mark.e2e
TIMES: dict[str, float] = {}


def _timed(what: str, action: Any) -> Any:
    return timed(TIMES, what, action)


@pytest.fixture(scope="module")
def deployed(swarm: SwarmLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    refs = push_images(swarm, TIMES)
    try:
        with program_stack(swarm, tmp_path_factory.mktemp("swarm-components"), refs) as deployment:
            result = _timed("pulumi up (converged)", lambda: deployment.stack.up(color="never"))
            deployment.services = result.outputs["services"].value
            yield deployment
    finally:
        print(f"\nswarm components timings (s): {json.dumps(TIMES)}")


def _service(swarm: SwarmLab, name: str) -> dict[str, Any]:
    return dict(swarm.inspect("node1", "service", name))


def test_every_service_converges_to_its_replicas_and_is_placed_by_role(swarm: SwarmLab, deployed: Deployment) -> None:
    backend = _timed("backend running", lambda: swarm.running(deployed.services["backend"], 2, timeout=60))
    nginx = _timed("nginx running", lambda: swarm.running(deployed.services["nginx"], 2, timeout=60))
    assert len(backend) == 2
    assert sorted(t.node for t in nginx) == ["fp-swarm-2", "fp-swarm-3"], "one nginx per edge node"
    listing = swarm.manager(
        "service", "ls", "--filter", f"label={STACK_LABEL}={deployed.name}", "--format", "{{.Name}} {{.Replicas}}"
    )
    replicas = dict(line.split(" ", 1) for line in listing.splitlines())
    assert replicas == {
        deployed.services["backend"]: "2/2",
        deployed.services["nginx"]: "2/2 (max 1 per node)",
    }


def test_the_hardening_is_in_the_service_spec(swarm: SwarmLab, deployed: Deployment) -> None:
    for service, uid in (("backend", "10020:10020"), ("nginx", "10040:10040")):
        spec = _service(swarm, deployed.services[service])["Spec"]
        container = spec["TaskTemplate"]["ContainerSpec"]
        assert container["User"] == uid
        assert container["ReadOnly"] is True
        assert container["CapabilityDrop"] == ["ALL"]
        assert container["Healthcheck"]["Test"][0] == "CMD"
        assert container["Labels"][SERVICE_LABEL] == service
        assert spec["Labels"][STACK_LABEL] == deployed.name
        assert spec["TaskTemplate"]["Resources"]["Limits"]["MemoryBytes"] == 64 * 1024 * 1024
        assert spec["TaskTemplate"]["Resources"]["Limits"]["NanoCPUs"] == 250_000_000
        assert spec["EndpointSpec"]["Mode"] == "dnsrr"
        assert spec["UpdateConfig"]["FailureAction"] == "rollback"
        assert spec["Mode"]["Replicated"]["Replicas"] == 2
    nginx = _service(swarm, deployed.services["nginx"])["Spec"]
    assert nginx["UpdateConfig"]["Order"] == "stop-first", "a host port is held by the old task"
    assert nginx["TaskTemplate"]["Placement"]["Constraints"] == ["node.labels.fly-potato.role==edge"]
    assert nginx["EndpointSpec"]["Ports"] == [
        {"Protocol": "tcp", "TargetPort": 8443, "PublishedPort": PORT, "PublishMode": "host"}
    ]
    backend = _service(swarm, deployed.services["backend"])["Spec"]
    assert backend["UpdateConfig"]["Order"] == "start-first"
    assert "Ports" not in backend.get("EndpointSpec", {}), "nothing but nginx is published"


def _nginx_exec(swarm: SwarmLab, deployed: Deployment, *command: str) -> str:
    task = swarm.running(deployed.services["nginx"], 2)[0]
    return swarm.exec(node_of(task.node), task.container, *command).strip()


def test_the_secret_and_the_config_are_the_services_own_files(swarm: SwarmLab, deployed: Deployment) -> None:
    assert _nginx_exec(swarm, deployed, "stat", "-c", "%u:%g %a", SECRET_PATH) == "10040:10040 400"
    assert _nginx_exec(swarm, deployed, "cat", SECRET_PATH) == "first-token"
    assert _nginx_exec(swarm, deployed, "stat", "-c", "%u:%g %a", "/etc/fly-potato/nginx.conf") == "10040:10040 440"
    assert "Read-only file system" in _nginx_exec(swarm, deployed, "sh", "-c", "touch /x 2>&1 || true")


def _get(address: str, path: str) -> str:
    with urllib.request.urlopen(f"http://{address}:{PORT}{path}", timeout=5) as response:
        return str(response.read().decode())


def test_nginx_answers_on_each_edge_node_and_reaches_the_backend_over_the_overlay(deployed: Deployment) -> None:
    for node in ("node2", "node3"):
        assert _get(ADDRESS[node], "/").startswith("nginx on ")
        reply = _timed(
            f"/api/ via {node}", lambda n=node: wait_for("the backend via nginx", lambda: _try(ADDRESS[n]), 30)
        )
        assert reply == BACKEND_PAGE
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((ADDRESS["node1"], PORT), timeout=3).close()  # published on edge nodes only


def _try(address: str) -> str | None:
    try:
        return _get(address, "/api/")
    except OSError:
        return None


def test_a_new_secret_is_a_new_swarm_secret_and_the_old_one_goes(swarm: SwarmLab, deployed: Deployment) -> None:
    before = set(labelled(swarm, "secret", deployed.name))
    deployed.stack.set_config("lab:token", auto.ConfigValue("second-token", secret=True))
    result = _timed("pulumi up (secret rotated)", lambda: deployed.stack.up(color="never"))
    assert result.summary.resource_changes is not None and result.summary.resource_changes.get("replace") == 1
    after = set(labelled(swarm, "secret", deployed.name))
    assert len(after) == 1 and after.isdisjoint(before), (before, after)
    swarm.running(deployed.services["nginx"], 2)
    assert _nginx_exec(swarm, deployed, "cat", SECRET_PATH) == "second-token"


def test_a_release_that_fails_its_healthcheck_is_rolled_back_while_the_old_tasks_serve(
    swarm: SwarmLab, deployed: Deployment
) -> None:
    backend = deployed.services["backend"]
    deployed.stack.set_config("lab:backend_port", auto.ConfigValue("8001"))
    served: list[str | None] = []
    started = time.monotonic()
    try:
        deployed.stack.up(color="never", on_output=lambda _: served.append(_try(ADDRESS["node2"])))
        failed = ""
    except auto.CommandError as error:
        failed = str(error)
    TIMES["pulumi up (failing release, rolled back)"] = round(time.monotonic() - started, 1)
    service = _service(swarm, backend)
    state = service.get("UpdateStatus", {}).get("State")
    why = [line.strip() for line in failed.splitlines() if "rollback" in line.lower() or "error:" in line][:3]
    print(f"\nfailing release: up {'failed' if failed else 'succeeded'}, update state {state}: {why}")
    assert state in {"rollback_completed", "rollback_started"}, state
    assert "8000" in service["Spec"]["TaskTemplate"]["ContainerSpec"]["Command"], "the old release is back"
    assert served and all(reply == BACKEND_PAGE for reply in served), "the old tasks served during the update"
    swarm.running(backend, 2)
    # No refresh: a refreshed service reads back placement.platforms that the program does not set, and the
    # next preview would show it as an update.
    deployed.stack.remove_config("lab:backend_port")
    deployed.stack.up(color="never")
    assert _try(ADDRESS["node3"]) == BACKEND_PAGE


def test_a_second_preview_changes_nothing(deployed: Deployment) -> None:
    result = _timed("pulumi preview (no-op)", lambda: deployed.stack.preview(color="never", diff=True))
    changes = {op: n for op, n in result.change_summary.items() if op != "same" and n}
    assert changes == {}, result.stdout[-3000:]


def test_destroy_leaves_nothing_on_the_swarm(swarm: SwarmLab, deployed: Deployment) -> None:
    _timed("pulumi destroy", lambda: deployed.stack.destroy(color="never"))
    deployed.destroyed = True
    assert_nothing_left(swarm, deployed.name)
