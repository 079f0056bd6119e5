"""Every container carries the R-SEC-2 hardening of HardenedContainer; no secret in plain env (R-SEC-1)."""

from __future__ import annotations

import pytest

from components.catalog import SERVICES
from policy_plan.program import ProgramGraph, is_secret


def test_every_service_of_the_catalog_has_a_container(graph: ProgramGraph) -> None:
    assert set(graph.containers()) == set(SERVICES)


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_container_is_hardened(graph: ProgramGraph, service: str) -> None:
    c = graph.containers()[service]
    uid = c.prop("user").split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, "non-root numeric user"
    assert c.prop("privileged") is False
    assert "no-new-privileges:true" in c.prop("securityOpts")
    assert c.prop("capabilities")["drops"] == ["ALL"]
    assert set(c.prop("capabilities").get("adds") or []) <= {"NET_BIND_SERVICE"}
    assert c.prop("readOnly") is True
    assert "/tmp" in c.prop("tmpfs")
    user_ids = c.prop("user").split(":")
    for options in c.prop("tmpfs").values():
        assert f"uid={user_ids[0]},gid={user_ids[1]}" in options, "scratch space owned by the service user"
    assert c.prop("memory") > 0 and c.prop("memorySwap") == c.prop("memory")
    assert float(c.prop("cpus")) > 0
    nproc = [u for u in c.prop("ulimits") if u["name"] == "nproc"]
    assert nproc and nproc[0]["hard"] >= 16, "PID limit via RLIMIT_NPROC"
    assert c.prop("logDriver") == "json-file" and c.prop("logOpts") == {"max-size": "10m", "max-file": "5"}
    labels = {item["label"]: item["value"] for item in c.prop("labels")}
    assert labels["org.flypotato.service"] == service
    assert labels["org.flypotato.stack"] == graph.stack
    assert labels["org.flypotato.zones"]
    if SERVICES[service].one_shot:
        assert c.prop("restart") == "no" and not c.prop("healthcheck")
    else:
        assert c.prop("restart") == "unless-stopped"
        assert c.prop("healthcheck")["tests"][0] == "CMD"
        assert c.prop("wait") is True, "dependents wait for a healthy container"
    # The only binds: the restart exporter's Docker API socket and node_exporter's /proc and /sys, read-only;
    # never source code.
    allowed = {
        "container_exporter": {("/var/run/docker.sock", "/var/run/docker.sock")},
        "node_exporter": {("/proc", "/host/proc"), ("/sys", "/host/sys")},
    }.get(service, set())
    for mount in c.prop("mounts") or []:
        if mount["type"] != "volume":
            assert mount["type"] == "bind" and (mount["source"], mount["target"]) in allowed, "no bind mounts"
            assert mount["readOnly"] is True, "host paths are read-only"


def test_each_service_runs_as_its_own_uid(graph: ProgramGraph) -> None:
    uids: dict[str, str] = {}
    for service, container in graph.containers().items():
        uids.setdefault(container.prop("user").split(":")[0], service)
    # migration runs the backend image as the backend's user; every other service is alone.
    assert len(uids) == len(SERVICES) - 1


SECRETISH = {"PASSWORD", "SECRET", "TOKEN", "KEY", "PASS"}


def test_no_secret_in_plain_environment(graph: ProgramGraph) -> None:
    for service, container in graph.containers().items():
        envs = container.inputs.get("envs") or []
        assert not is_secret(envs), f"{service}: a secret reached the environment"
        for entry in envs:
            assert not is_secret(entry), f"{service}: {entry}"
            name, _, value = entry.partition("=")
            if SECRETISH & set(name.split("_")):
                assert name.endswith("_FILE"), f"{service}: {name} must point at a file"
            assert "Mock" not in value, f"{service}: generated secret in plain env {name}"


def test_secret_files_stay_secret(graph: ProgramGraph) -> None:
    for service, container in graph.containers().items():
        uploads = container.inputs.get("uploads")
        files = container.prop("uploads") or []
        if any("/secrets/" in f["file"] for f in files):
            assert is_secret(uploads), f"{service}: secret files must be Pulumi secrets"


def test_containers_free_their_name_and_port_before_replacement(graph: ProgramGraph) -> None:
    for container in graph.containers().values():
        assert container.options["delete_before_replace"] is True
